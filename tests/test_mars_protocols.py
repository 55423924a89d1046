"""The MARS evaluation protocols on a hand-built test set (expected values worked by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.mars import (
    PROTOCOLS,
    evaluate_mars,
    evaluate_mars_split,
    protocol_masks,
    protocol_rows,
)

# (pid, camera, 1-d feature); squared Euclidean distances
TEST = [(1, 0, 0.0), (1, 1, 3.0), (1, 0, 0.5), (2, 1, 10.0), (2, 2, 10.4), (0, 2, 1.0),
        (-1, 1, 2.0), (3, 2, 10.2), (1, 2, 4.0), (4, 0, 20.0), (4, 1, 20.5), (0, 0, 0.8)]
QUERY = [0, 3, 9, 10]
PIDS = np.array([t[0] for t in TEST])
CAMS = np.array([t[1] for t in TEST])
FEAT = np.array([[t[2]] for t in TEST], np.float64)
AMBI = [None] * 7 + [2] + [None] * 4  # row 7 also shows person 2 (cleaned label)


def run(name, **kw):
    return evaluate_mars(FEAT, PIDS, CAMS, QUERY, name, **kw)


def test_official_keeps_queries_and_distractors_trapezoid_ap():
    r = run("mars-official")
    assert r.protocol == "mars-official" and r.num_gallery == 12 and r.num_query == 4
    assert r.rank.num_valid == 4
    assert r.rank.ap_convention == "trapezoid"
    assert r.rank.mAP == pytest.approx(61 / 96)
    assert r.rank.map_by_convention["noninterp"] == pytest.approx(35 / 48)
    assert list(r.rank.cmc[:3]) == pytest.approx([0.5, 0.75, 1.0])
    assert r.summary()["protocol"] == "mars-official"


def test_bot_drops_queries_from_gallery():
    r = run("mars-bot")
    assert r.num_gallery == 7 and r.rank.num_valid == 2 and r.rank.num_invalid == 2
    assert r.rank.ap_convention == "noninterp"
    assert r.rank.mAP == pytest.approx(11 / 24)
    assert list(r.rank.cmc[:3]) == pytest.approx([0.0, 0.5, 1.0])


def test_cfaan_drops_distractors():
    r = run("mars-cfaan")
    assert r.num_gallery == 5
    assert r.rank.mAP == pytest.approx(0.75) and r.rank.rank(1) == pytest.approx(0.5)


def test_cleaned_protocols_ambiguous_match_and_same_camera_distractor():
    r = run("mars-clean", ambis=AMBI)
    assert r.rank.mAP == pytest.approx(19 / 24) and r.rank.rank(1) == pytest.approx(0.5)
    c = run("mars-clean-cfaan", ambis=AMBI)
    assert c.rank.mAP == pytest.approx(1.0) and c.rank.rank(1) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="cleaned labels"):
        run("mars-clean")


def test_masks_ambi_to_ambi_and_rows():
    q, g = protocol_rows("mars-bot", PIDS, QUERY)
    assert q.tolist() == QUERY and g.tolist() == [1, 2, 4, 5, 7, 8, 11]
    q, g = protocol_rows("mars-cfaan", PIDS, QUERY)
    assert g.tolist() == [1, 2, 4, 7, 8]
    pids, cams = np.array([5, 6, 7]), np.array([0, 1, 1])
    match, junk = protocol_masks("mars-clean", np.array([0]), np.array([1, 2]), pids, cams,
                                 ambis=[9, 9, None])
    assert match.tolist() == [[True, False]] and not junk.any()


def test_unknown_protocol():
    with pytest.raises(ConfigError, match="unknown MARS protocol"):
        run("mars-nope")
    assert set(PROTOCOLS) == {"mars-official", "mars-bot", "mars-cfaan", "mars-clean",
                              "mars-clean-cfaan"}


def test_split_form_on_written_mars(tmp_path):
    from fedfr.reid.data.video import get_video_dataset
    from fedfr.reid.data.video.fixtures import write_mars

    test = [(p, c + 1, 2) for p, c, _ in TEST]
    clean = [(p, a or 0) for (p, _, _), a in zip(TEST, AMBI, strict=True)]
    write_mars(tmp_path, [(1, 1, 2)], test, QUERY, clean=clean)
    split = get_video_dataset("mars", tmp_path, clean=True)
    res = evaluate_mars_split(FEAT, split)
    assert set(res) == set(PROTOCOLS)
    assert res["mars-official"].rank.mAP == pytest.approx(61 / 96)
    assert res["mars-clean"].rank.mAP == pytest.approx(19 / 24)


def test_evaluate_masks_equals_evaluate_rank_on_the_standard_rule():
    import torch

    from fedfr.reid.evaluation.rank import evaluate_masks, evaluate_rank

    rng = np.random.default_rng(5)
    d = torch.as_tensor(rng.integers(0, 6, (40, 70)).astype(np.float64))  # many ties
    qp, gp = rng.integers(0, 8, 40), rng.integers(-1, 8, 70)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 70)
    same = qp[:, None] == gp[None, :]
    junk = (same & (qc[:, None] == gc[None, :])) | (gp[None, :] == -1)
    for ap in ("noninterp", "trapezoid"):
        a = evaluate_rank(d, qp, gp, qc, gc, ap=ap, chunk=7)
        b = evaluate_masks(d, torch.as_tensor(same & ~junk), torch.as_tensor(junk), ap=ap,
                           chunk=11)
        assert a.mAP == pytest.approx(b.mAP) and np.allclose(a.cmc, b.cmc)
        assert a.num_valid == b.num_valid and a.mINP == pytest.approx(b.mINP)
