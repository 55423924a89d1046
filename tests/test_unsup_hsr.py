"""HSR's loop: config switches (Table 4.2), part features, one real iteration on tiny images,
and the benchmark's quick presets (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.data.records import ReidSplit
from fedfr.reid.data.transforms import ReidTransformConfig
from fedfr.reid.models import build_reid_model
from fedfr.reid.unsup.features import extract_part_features, uint8_dataset
from fedfr.reid.unsup.hsr import (
    ABLATIONS,
    HSRConfig,
    cluster_centroids,
    label_quality,
    run_hsr,
)
from tests.reid_fixtures import write_identity_images

TC = ReidTransformConfig(height=32, width=16, pad=2)


def test_ablation_switches_and_engine_config():
    cfg = HSRConfig()
    assert (cfg.iterations, cfg.epochs, cfg.lr, cfg.p, cfg.k, cfg.icm_k, cfg.pbh_std) == (
        30, 10, 0.005, 8, 4, 10, 3.0)
    rows = {name: (c.use_ce, c.use_trip, c.use_icm, c.use_pbh)
            for name in ABLATIONS for c in [cfg.ablation(name)]}
    assert rows == {"baseline": (True, True, False, False),
                    "baseline+pbh": (True, True, False, True),
                    "baseline+icm": (True, True, True, False),
                    "hsr": (True, True, True, True)}
    tr = cfg.train_config()
    assert tr.optimizer == "sgd" and tr.lr == 0.005 and tr.triplet == "none"
    assert tr.warmup_epochs == 0 and tr.milestones == ()
    assert HSRConfig(triplet="batch_hard").train_config().triplet == "soft"
    assert HSRConfig(use_ce=False).train_config().ce_weight == 0.0
    with pytest.raises(ConfigError, match="unknown key"):
        HSRConfig.from_mapping({"icm-kk": 3})
    assert HSRConfig.from_mapping({"icm-k": 5, "height": 64}).transform.height == 64
    with pytest.raises(ConfigError, match="ablation"):
        cfg.ablation("nope")
    with pytest.raises(ConfigError, match="triplet"):
        HSRConfig(triplet="hinge")


def test_cluster_centroids_ignore_outliers():
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    c = cluster_centroids(f, np.array([0, 0, 1, -1]), 3)
    assert torch.allclose(c, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert HSRConfig(classifier_init="centroids").classifier_init == "centroids"
    with pytest.raises(ConfigError, match="classifier_init"):
        HSRConfig(classifier_init="zeros")


def test_part_features_split_the_map(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=3, per_id=2, height=32, width=16)
    torch.manual_seed(0)
    net = build_reid_model("small_reid")
    ds = uint8_dataset(recs, TC)
    pf = extract_part_features(net, ds, TC, feature="before", normalize=False, batch_size=4)
    assert pf.global_.shape == (6, 192) and pf.upper.shape == (6, 192)
    # the 4-row map splits 2 / 2: the global pooled feature is the mean of the two halves
    torch.testing.assert_close(pf.global_, (pf.upper + pf.lower) / 2, atol=1e-5, rtol=1e-5)
    from fedfr.reid.data.transforms import eval_batch
    x = eval_batch(torch.stack([ds[i][0] for i in range(6)]), TC)
    after = extract_part_features(net, ds, TC, normalize=True)
    torch.testing.assert_close(after.global_, net.embed(x, normalize=True), atol=1e-5,
                               rtol=1e-5)
    assert pf.camids.tolist() == [0, 1] * 3


def test_label_quality():
    q = label_quality(torch.tensor([1, 1, 2, 2, 3]), np.array([0, 0, 1, 1, -1]))
    assert q["v_measure"] == pytest.approx(1.0) and q["clustered_share"] == pytest.approx(0.8)


def test_one_hsr_iteration_trains_and_logs(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=12, per_id=6, height=32, width=16)
    split = ReidSplit("tiny", tmp_path, recs, recs[::6], [r for i, r in enumerate(recs)
                                                          if i % 6])
    torch.manual_seed(0)
    net = build_reid_model("small_reid")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = HSRConfig(transform=TC, iterations=1, epochs=1, p=4, k=4, k1=6, k2=3, rho=0.08,
                    icm_k=3, batch_size=64, pbh_std=0.5)
    run = run_hsr(net, split, cfg)
    (row,) = run.history
    for key in ("clusters", "outliers", "eps", "dbscan_v_measure", "dbscan_nmi",
                "pbh_v_measure", "pbh_lambda", "icm_pairs", "icm_pair_precision",
                "icm_rank_precision", "icm_hard_positive_share", "eval_R1", "eval_mAP"):
        assert key in row, key
    assert row["clusters"] >= 4 and run.eps == row["eps"]
    assert row["train"]["steps"] > 0 and row["train"]["extra"] > 0  # L_trip + L_ICM ran
    changed = any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert changed


@pytest.mark.slow
def test_benchmark_quick_table_and_scale(tmp_path):
    from benchmarks.hsr import main

    out = tmp_path / "out"
    assert main(["--quick", "--out", str(out), "--cache", str(tmp_path / "data")]) == 0
    rep = json.loads((out / "hsr_quick.json").read_text())
    settings = {r["setting"] for r in rep["result"]["results"]}
    assert settings == {"direct", *ABLATIONS}
    assert (out / "hsr_quick_vmeasure.png").stat().st_size > 0
    md = (out / "hsr_quick.md").read_text()
    assert "| baseline+icm | x | x | x |  |" in md and "Table 4.1 layout" in md
    assert main(["--scale", "--quick", "--out", str(out)]) == 0
    sc = json.loads((out / "hsr_scale_quick.json").read_text())["result"]
    assert sc["check"]["same_labels"] and sc["check"]["max_abs_diff_kept_pairs"] < 1e-5
    assert sc["phases"]["duke"]["peak_rss_mb"] > 0


def test_rows_are_reproducible_and_pbh_off_equals_no_split(tmp_path):
    """Same seed, same data: a rerun gives the same numbers, and a PBH row that splits nothing
    equals the row without PBH (the classifier init is seeded, not drawn from the global RNG)."""
    recs = write_identity_images(tmp_path, num_ids=8, per_id=4, height=32, width=16)
    split = ReidSplit("tiny", tmp_path, recs, recs[::4], [r for i, r in enumerate(recs) if i % 4])
    cfg = HSRConfig(transform=TC, iterations=1, epochs=1, p=4, k=4, k1=4, k2=2, rho=0.1,
                    icm_k=2, batch_size=64, pbh_std=50.0, use_icm=False)
    out = []
    for use_pbh in (False, True):
        torch.manual_seed(0)
        net = build_reid_model("small_reid")
        torch.manual_seed(123 + use_pbh)  # the global RNG must not matter
        (row,) = run_hsr(net, split, HSRConfig(**{**cfg.__dict__, "use_pbh": use_pbh})).history
        out.append((row["train"]["loss"], row["eval_mAP"]))
    assert out[0] == out[1]
