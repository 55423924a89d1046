"""IJB-C protocols end to end on a tiny tree in the real meta-file formats (ORL faces as JPEG)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ijbc_fixtures import orl_face, write_ijbc
from sklearn.metrics import roc_curve

from fedfr.errors import DataFormatError
from fedfr.face.evaluation.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from fedfr.face.evaluation.cache import FeatureCache
from fedfr.face.evaluation.ijbc import (
    evaluate_ijbc,
    identify_insightface,
    identify_open_set,
    image_features,
    process_image_features,
    read_ijbc_meta,
    template_features,
)
from fedfr.face.evaluation.metrics import tar_at_far
from fedfr.face.models import get_model


def test_similarity_transform_recovers_known_map():
    rng = np.random.default_rng(0)
    ang, scale, t = 0.3, 1.7, np.array([12.0, -5.0])
    r = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    src = rng.uniform(0, 100, size=(5, 2))
    dst = src @ (scale * r).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.zeros((5, 2)), dst)


def test_align_moves_landmarks_onto_the_template():
    # a black image with a white dot at each landmark: after alignment the dots sit on the
    # template points (within a pixel), whatever the rotation / scale / offset of the input
    ang, scale = 0.25, 1.4
    r = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    pts = (ARCFACE_TEMPLATE - 56) @ (scale * r).T + np.array([110.0, 95.0])
    img = np.zeros((220, 200, 3), np.uint8)
    for x, y in pts:
        img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    out = align_face(img, pts).astype(float).sum(axis=2)
    assert out.shape == (112, 112)
    for x, y in ARCFACE_TEMPLATE:
        xi, yi = int(round(x)), int(round(y))
        win = out[yi - 3:yi + 4, xi - 3:xi + 4]
        wy, wx = np.unravel_index(np.argmax(win), win.shape)
        assert abs(wy - 3) <= 1 and abs(wx - 3) <= 1
        # centre of mass within a pixel
        yy, xx = np.mgrid[-3:4, -3:4]
        assert abs((win * xx).sum() / win.sum()) < 1.0 and abs((win * yy).sum() / win.sum()) < 1.0


def test_align_of_a_pasted_face_returns_the_face():
    face = orl_face(1, 1)
    canvas = np.zeros((150, 150, 3), np.uint8)
    canvas[20:132, 30:142] = face
    out = align_face(canvas, ARCFACE_TEMPLATE + np.array([30, 20]))
    assert np.abs(out.astype(int) - face.astype(int)).mean() < 2.0


def _pool_brute(feats, templates, medias):
    out = {}
    for t in np.unique(templates):
        acc = 0
        for m in np.unique(medias[templates == t]):
            acc = acc + feats[(templates == t) & (medias == m)].mean(axis=0)
        out[int(t)] = acc / np.linalg.norm(acc)
    return out


@pytest.fixture(scope="module")
def ijbc_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijbc")
    info = write_ijbc(root, subjects=6)
    return root, info


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return get_model("small_cnn", embedding_size=16, input_size=32)


def test_ijbc_end_to_end_matches_brute_force(ijbc_tree, model, tmp_path):
    root, info = ijbc_tree
    cache = FeatureCache(tmp_path / "cache")
    res = evaluate_ijbc(model, root, cache=cache, fars=(1e-2, 0.1, 0.5), nearest_roc=True)
    assert cache.misses == 1
    meta = read_ijbc_meta(root)
    assert len(meta.images) == sum(len(v) for v in info["templates"].values())
    raw = image_features(model, meta, cache)  # second call: from the cache
    assert cache.hits == 1
    feats = process_image_features(raw, meta.scores)
    pooled = _pool_brute(feats, meta.templates, meta.medias)
    tids, tf = template_features(feats, meta.templates, meta.medias)
    for t, f in zip(tids, tf, strict=True):
        np.testing.assert_allclose(f, pooled[int(t)], atol=1e-5)
    # pair scores in file order
    want = np.array([pooled[a] @ pooled[b] for a, b, _ in info["pairs"]])
    np.testing.assert_allclose(res.scores, want, atol=1e-5)
    lab = np.array([c for *_, c in info["pairs"]], bool)
    tars = tar_at_far(want[lab], want[~lab], (1e-2, 0.1, 0.5))
    assert res.verification["tar@1e-01"] == pytest.approx(tars[0.1])
    assert res.verification["tar@5e-01"] == pytest.approx(tars[0.5])
    assert math.isnan(res.verification["tar@1e-02"])  # 60 impostors: 1e-2 * 60 < 1
    assert res.verification["num_genuine"] == lab.sum()
    fpr, tpr, _ = roc_curve(lab, want)
    assert res.verification["tar_roc@1e-01"] == pytest.approx(tpr[np.argmin(np.abs(fpr - 0.1))])
    ident = res.identification
    assert set(ident) == {"insightface-closed-G1+G2", "nist-open-G1", "nist-open-G2",
                          "nist-open-mean"}
    ins = ident["insightface-closed-G1+G2"]
    assert ins["num_probes"] == len(info["probes"]) and ins["num_probes_without_mate"] == 0
    # brute-force rank-1 on the merged gallery (one template per subject)
    gal = info["g1"] + info["g2"]
    hits = 0
    for p in info["probes"]:
        best = max(gal, key=lambda g: pooled[p] @ pooled[g])
        hits += info["subject_of"][best] == info["subject_of"][p]
    assert ins["rank1"] == pytest.approx(hits / len(info["probes"]))
    assert ident["nist-open-G1"]["num_mated"] + ident["nist-open-G1"]["num_nonmated"] == \
        len(info["probes"])


def test_insightface_1n_against_brute_force():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(7, 8)).astype(np.float32)
    gs = np.arange(7) * 10
    p = rng.normal(size=(40, 8)).astype(np.float32)
    ps = rng.integers(0, 7, size=40) * 10
    out = identify_insightface(p, ps, g, gs, fpirs=(0.05, 0.2, 1.0), ranks=(1, 3), chunk_size=7)
    s = p @ g.T
    mate = s[np.arange(40), ps // 10]
    neg = np.sort(s[np.arange(7)[None, :] != (ps // 10)[:, None]])[::-1]
    for f in (0.05, 0.2, 1.0):
        th = neg[math.ceil(40 * f) - 1]
        assert out[f"tpir@{f:.0e}"] == pytest.approx(np.mean(mate > th))
    rank = (s > mate[:, None]).sum(axis=1)
    assert out["rank1"] == pytest.approx(np.mean(rank < 1))
    assert out["rank3"] == pytest.approx(np.mean(rank < 3))


def test_open_set_1n_subject_max_over_templates():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(6, 8)).astype(np.float32)
    gs = np.array([5, 5, 7, 9, 9, 9])  # several templates per subject
    p = rng.normal(size=(50, 8)).astype(np.float32)
    ps = rng.choice([5, 7, 9, 11, 13], size=50)
    out = identify_open_set(p, ps, g, gs, fpirs=(0.1, 0.5), ranks=(1, 2))
    s = p @ g.T
    subj = np.stack([s[:, gs == k].max(axis=1) for k in (5, 7, 9)], axis=1)
    lab = np.array([5, 7, 9])
    mated = np.isin(ps, lab)
    top = lab[np.argmax(subj, axis=1)]
    assert out["rank1"] == pytest.approx(np.mean(top[mated] == ps[mated]))
    non_top = np.sort(subj[~mated].max(axis=1))[::-1]
    k = int(math.floor(0.5 * (~mated).sum()))
    th = non_top[k]
    want = np.mean((top[mated] == ps[mated]) & (subj[mated].max(axis=1) > th))
    assert out["tpir@5e-01"] == pytest.approx(want)


def test_ijbc_bad_input_names_the_problem(ijbc_tree, model, tmp_path):
    root, _ = ijbc_tree
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    (bad / "meta" / "ijbc_template_pair_label.txt").write_text("1 9999 0\n")
    with pytest.raises(DataFormatError, match="template 9999 has no images"):
        read_ijbc_meta(bad)
    (bad / "meta" / "ijbc_template_pair_label.txt").write_text("1 4 0\n2 x 1\n")
    with pytest.raises(DataFormatError, match=r"line 2 \['2', 'x', '1'\]: expected three"):
        read_ijbc_meta(bad)
    (bad / "meta" / "ijbc_template_pair_label.txt").unlink()
    with pytest.raises(DataFormatError, match="ijbc_template_pair_label.txt: missing"):
        read_ijbc_meta(bad)
    shutil.copy(root / "meta" / "ijbc_template_pair_label.txt", bad / "meta")
    (bad / "loose_crop" / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="3.jpg: cannot decode"):
        evaluate_ijbc(model, bad, one_to_n=False)
    res = evaluate_ijbc(model, bad, one_to_n=False, skip_bad_images=True, workers=2)
    assert res.verification["num_images_skipped"] == 1  # its template keeps its other images
    lines = (root / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines()
    (bad / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataFormatError, match="no landmarks for image '1.jpg'"):
        read_ijbc_meta(bad)
