"""fedfr.reid.semi.sgc_dpl: the augmented triplet, the training loop and the outer loop, and
benchmarks/sgc_dpl.py's quick presets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedfr.errors import ConfigError
from fedfr.reid.data.transforms import ReidTransformConfig
from fedfr.reid.models import IdentityClassifier, build_reid_model
from fedfr.reid.semi.clustering import SGAPConfig
from fedfr.reid.semi.pseudo_labels import expanded_targets
from fedfr.reid.semi.sgc_dpl import (
    SGCDPLConfig,
    augmented_triplet_loss,
    centre_per_camera,
    cluster_quality,
    initialise,
    run_sgc_dpl,
    sgc_dpl_iteration,
    train_semi_epochs,
)
from fedfr.reid.training import ReidTrainConfig
from tests.reid_fixtures import write_identity_images


def test_augmented_triplet_uses_twins_as_positives_and_cross_set_negatives():
    f_l = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    y_l = torch.tensor([0, 0, 1, 1])
    u1 = torch.tensor([[0.0, 3.0], [9.0, 9.0]])
    u2 = torch.tensor([[0.0, 3.5], [9.0, 9.0]])
    loss = augmented_triplet_loss(f_l, y_l, u1, u2)
    # anchors: labelled (pos: same id at 1, neg: nearest unlabelled view), unlabelled (pos:
    # twin at 0.5 or 0, neg: nearest labelled image); u1 and u2 of different images are never
    # negatives of each other even though u1[0] and u2[0] are close to each other only
    x = torch.cat([f_l, u1, u2])
    d = torch.cdist(x, x)
    ap = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.5, 0.0])
    an = torch.stack([d[i, 4:].min() for i in range(4)] + [d[i, :4].min() for i in range(4, 8)])
    assert loss.item() == pytest.approx(F.softplus(ap - an).mean().item(), rel=1e-5)
    hinge = augmented_triplet_loss(f_l, y_l, u1, u2, margin=0.3)
    assert hinge.item() == pytest.approx(torch.relu(ap - an + 0.3).mean().item(), rel=1e-5)
    f = f_l.clone().requires_grad_(True)
    augmented_triplet_loss(f, y_l, u1, u2).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


def _cfg(**kw) -> SGCDPLConfig:
    tc = ReidTrainConfig(transform=ReidTransformConfig(height=64, width=32), p=4, k=2,
                         warmup_epochs=0)
    base = dict(train=tc, init_epochs=1, iter_epochs=1, iterations=1, aug_batch=4,
                eval_batch=64)
    return SGCDPLConfig(**{**base, **kw})


def test_training_step_with_soft_targets_and_augmented_triplet(tmp_path):
    recs = write_identity_images(tmp_path / "l", num_ids=4, per_id=4)
    unl = write_identity_images(tmp_path / "u", num_ids=3, per_id=3, seed=1)
    torch.manual_seed(0)
    model = build_reid_model("small_reid")
    clf = IdentityClassifier(model.feature_dim, 4)
    y = np.array([r.pid - 1 for r in recs])
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_semi_epochs(model, clf, recs, expanded_targets(y, 4, torch.zeros(0, 0)), y,
                              _cfg(), epochs=1, unlabelled=unl)
    assert stats["aug"] > 0 and stats["ce"] > 0 and np.isfinite(stats["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="targets"):
        train_semi_epochs(model, clf, recs, torch.zeros(len(recs), 3), y, _cfg(), epochs=1)


def test_config_rejects_unknown_switches():
    with pytest.raises(ConfigError, match="clustering"):
        SGCDPLConfig(clustering="kmeans")
    with pytest.raises(ConfigError, match="labels"):
        SGCDPLConfig(labels="fuzzy")


def test_cluster_quality_purity_and_nmi():
    labels = np.array([0, 0, 0, 1, 1, -1])
    pids = np.array([7, 7, 8, 9, 9, 9])
    q = cluster_quality(labels, pids, np.ones(6, bool))
    assert q["purity"] == pytest.approx(4 / 5)
    assert 0 < q["nmi_reliable"] < 1
    assert cluster_quality(labels, pids, np.array([1, 1, 0, 1, 1, 0], bool))["purity"] == 1.0


def test_outer_loop_logs_fig35_quantities(tmp_path):
    lab = write_identity_images(tmp_path / "l", num_ids=4, per_id=4)
    unl = write_identity_images(tmp_path / "u", num_ids=4, per_id=4, seed=2)
    unl = [type(r)(r.path, r.pid + 100, r.camid) for r in unl]
    q = write_identity_images(tmp_path / "q", num_ids=3, per_id=2, seed=3)
    cfg = _cfg(iterations=2, sgap=SGAPConfig(k=8))
    model, rows = run_sgc_dpl(lab, unl, q[::2], q[1::2], cfg)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        assert r["gt_ids"] == 4 and 1 <= r["clusters"] <= 16
        assert 0 < r["share"] <= 1 and 0 < r["purity"] <= 1 and r["tau"] >= r["tau_l"] > 0
        assert r["search_stop"] in ("match", "stable", "exhausted", "max_steps")
        assert 0 <= r["R1"] <= 1 and 0 <= r["mAP"] <= 1
    assert rows[2]["tau"] > rows[1]["tau"]  # d_t grows


def test_centre_per_camera_removes_each_cameras_mean():
    gen = torch.Generator().manual_seed(0)
    cams = [0, 0, 0, 1, 1, 2]
    shift = torch.tensor([[0.0, 0, 0], [4.0, 0, 0], [0.0, -3, 1]])
    x = torch.randn(6, 3, generator=gen) + shift[torch.tensor(cams)]
    raw = centre_per_camera(x, cams, normalize=False)
    for c in (0, 1, 2):
        m = torch.tensor(cams) == c
        assert torch.allclose(raw[m].mean(0), torch.zeros(3), atol=1e-6)
        assert torch.allclose(raw[m], x[m] - x[m].mean(0))
    unit = centre_per_camera(x, cams, normalize=True)
    assert torch.allclose(unit.norm(dim=1)[:5], torch.ones(5), atol=1e-6)  # 6: alone, zero
    # what is left does not depend on anything the cameras share
    assert torch.allclose(raw, centre_per_camera(x + 7.0, cams, normalize=False), atol=1e-5)


def test_initialise_from_a_backbone_copies_it(tmp_path):
    lab = write_identity_images(tmp_path / "l", num_ids=4, per_id=4)
    q = write_identity_images(tmp_path / "q", num_ids=3, per_id=2, seed=3)
    torch.manual_seed(5)
    backbone = build_reid_model("small_reid")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    start = initialise(lab, [], q[::2], q[1::2], _cfg(init="labelled", init_epochs=0),
                       backbone=backbone)
    assert all(torch.equal(v, before[k]) for k, v in start.model.state_dict().items())
    trained = initialise(lab, [], q[::2], q[1::2], _cfg(init="labelled"), backbone=backbone)
    assert start.model is not backbone and trained.model is not backbone
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in trained.model.state_dict().items())


def test_one_iteration_expands_the_classifier_and_counts_what_it_trained_on(tmp_path):
    lab = write_identity_images(tmp_path / "l", num_ids=4, per_id=4)
    unl = write_identity_images(tmp_path / "u", num_ids=4, per_id=4, seed=2)
    unl = [type(r)(r.path, r.pid + 100, r.camid) for r in unl]
    q = write_identity_images(tmp_path / "q", num_ids=3, per_id=2, seed=3)
    for centre in (False, True):
        cfg = _cfg(init="labelled", sgap=SGAPConfig(k=8), normalize=True,
                   centre_cameras=centre)
        start = initialise(lab, unl, q[::2], q[1::2], cfg)
        res = sgc_dpl_iteration(start.model, start.classifier, lab, unl, cfg, 1,
                                generator=torch.Generator().manual_seed(0))
        assert res.classifier.num_classes == 4 + res.row["clusters"]
        assert res.num_examples == len(lab) + res.row["reliable"]
        assert res.row["iteration"] == 1 and np.isfinite(res.row["loss"])
    # the oracle diagnostics: true identities (x camera) as the clusters, purity 1
    for oracle, count in (("oracle", 4), ("oracle-camera", len({(r.pid, r.camid) for r in unl}))):
        cfg = _cfg(init="labelled", clustering=oracle, progressive=False)
        start = initialise(lab, unl, q[::2], q[1::2], cfg)
        res = sgc_dpl_iteration(start.model, start.classifier, lab, unl, cfg, 1,
                                generator=torch.Generator().manual_seed(0))
        assert res.row["clusters"] == count and res.row["purity"] == 1.0
        assert res.row["share"] == 1.0
    from fedfr.reid.semi.sgc_dpl import cluster_unlabelled

    with pytest.raises(ConfigError, match="needs X\\^u's records"):
        cluster_unlabelled(torch.zeros(2, 3), np.zeros(2), torch.zeros(3, 3),
                           _cfg(clustering="oracle"))


def test_ap_scale_benchmark_quick(tmp_path):
    from benchmarks.sgc_dpl import main

    assert main(["scale", "--quick", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "sgc_dpl_ap_scale_quick.json").read_text())["result"]
    ph = rep["phases"]
    assert ph["ours_dense"]["ari_vs_sklearn"] > 0.97 and ph["ours_knn"]["ari_vs_sklearn"] > 0.9
    for name in ("sklearn_dense", "ours_dense", "ours_knn"):
        assert ph[name]["wall_s"] > 0 and ph[name]["peak_rss_mb"] > 0
    md = (tmp_path / "sgc_dpl_ap_scale_quick.md").read_text()
    assert "python -m benchmarks.sgc_dpl scale --quick" in md and "ARI vs sklearn" in md


@pytest.mark.slow
def test_tables_benchmark_quick(tmp_path):
    from benchmarks.sgc_dpl import main

    cache = tmp_path / "init-cache"
    assert main(["tables", "--quick", "--rows", "labelled,ours", "--table34",
                 "--out", str(tmp_path), "--init-cache", str(cache)]) == 0
    assert len(list(cache.glob("init-*.pt"))) == 2  # labelled and augmented
    assert len(list(cache.glob("source-*.pt"))) == 1  # the pre-trained backbone
    again = tmp_path / "again"
    assert main(["tables", "--quick", "--rows", "labelled", "--out", str(again),
                 "--init-cache", str(cache)]) == 0
    first = (tmp_path / "table32.csv").read_text().splitlines()[1].split(",")[:5]
    assert (again / "table32.csv").read_text().splitlines()[1].split(",")[:5] == first
    md = (tmp_path / "table32.md").read_text()
    assert "Ours: Init + SG-AP + P.L., soft" in md and "{X^l,Y^l}" in md
    # the pre-trained row is the backbone itself: every trained row starts from it
    assert main(["tables", "--quick", "--rows", "pretrained", "--out", str(tmp_path / "p"),
                 "--init-cache", str(cache)]) == 0
    assert "pre-trained backbone, no fine-tuning" in (tmp_path / "p" / "table32.md").read_text()
    # one report over several runs (one process per seed or row)
    assert main(["merge", str(tmp_path), str(tmp_path / "p"), "--out",
                 str(tmp_path / "all")]) == 0
    merged = (tmp_path / "all" / "table32.md").read_text()
    assert "pre-trained backbone" in merged and "Ours: Init + SG-AP" in merged
    assert len((tmp_path / "all" / "table32.csv").read_text().splitlines()) == 1 + 3
    with pytest.raises(ConfigError, match="no table32.csv"):
        main(["merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    its = (tmp_path / "iterations.csv").read_text().splitlines()
    assert len(its) == 1 + 1 + 3  # labelled: iteration 0; ours: 0, 1, 2
    assert (tmp_path / "fig35_1of3.png").stat().st_size > 0
    assert (tmp_path / "table34.md").read_text().count("| 1/3 |") == 3
    assert (tmp_path / "manifests" / "synth-market-1of3-seed0.json").is_file()


def test_paper_preset_reads_market_through_the_registry(tmp_path):
    from benchmarks.sgc_dpl import PRESETS, _load, build_config
    from fedfr.reid.data.fixtures import write_market
    from fedfr.reid.semi.splits import make_semi_split

    train = [(p, c) for p in range(1, 13) for c in (1, 2)]
    write_market(tmp_path, train, [(20, 1)], [(20, 2), (21, 1)])
    split = _load(PRESETS["paper"], tmp_path)
    assert split.num_train_pids == 12
    assert len(make_semi_split(split, "1/3", 0).labelled_pids) == 4
    cfg = build_config(PRESETS["paper"], {}, seed=0)
    assert cfg.model == "resnet50" and cfg.train.optimizer == "sgd" and cfg.train.lr == 0.01
    assert cfg.iterations == 8 and cfg.iter_epochs == 200 and cfg.sgap.k is None
    assert cfg.train.transform.height == 256 and cfg.tau_step == 1.0
