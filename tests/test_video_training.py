"""Video re-ID training engine: config conventions, training on tiny colour-coded tracklets,
test features (RRS clip and all-clips average) and the named evaluation protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.data.rrs import rrs_all_clips
from fedfr.reid.video.training import (
    VideoTrainConfig,
    build_video_classifier,
    build_video_net,
    clip_dataset,
    eval_clips,
    evaluate_video,
    evaluate_video_features,
    extract_tracklet_features,
    train_video,
    train_video_epochs,
)
from tests.video_fixtures import colour_tracklets

TINY = {"model": "baseline", "height": 32, "width": 16, "p": 4, "k": 2, "lr": 3e-3,
        "clip_len": 4}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return colour_tracklets(tmp_path_factory.mktemp("colour"))


def test_config_defaults_and_errors():
    cfg = VideoTrainConfig()
    assert (cfg.height, cfg.width, cfg.clip_len, cfg.p, cfg.k) == (128, 64, 4, 8, 4)
    assert cfg.transform.pad == 0 and cfg.transform.erasing == 0.0
    assert cfg.lr == 1e-4 and cfg.weight_decay == 5e-5 and cfg.lr_factor(50) == pytest.approx(0.1)
    big = VideoTrainConfig.from_mapping({"backbone": "resnet50", "clip-len": 8,
                                         "milestones": [10], "erasing": 0.5})
    assert (big.height, big.width, big.clip_len, big.milestones) == (256, 128, 8, (10,))
    assert big.transform.erasing == 0.5
    with pytest.raises(ConfigError, match="bogus"):
        VideoTrainConfig.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match="protocol"):
        VideoTrainConfig(protocol="mars-nope")
    with pytest.raises(ConfigError, match="test_mode"):
        VideoTrainConfig(test_mode="mean")


def test_training_learns_and_is_seeded(split):
    cfg = VideoTrainConfig.from_mapping(TINY)
    before = evaluate_video(build_video_net(cfg), split, cfg)
    net, clf, stats = train_video(split, cfg, epochs=12, seed=1)
    _, _, again = train_video(split, cfg, epochs=2, seed=1)
    assert again["history"][1]["loss"] == pytest.approx(stats["history"][1]["loss"], rel=1e-5)
    first, last = stats["history"][0], stats["history"][-1]
    assert last["loss"] < 0.7 * first["loss"] and last["accuracy"] >= 0.75
    assert stats["clips"] == 12 * 8 and clf.num_classes == 4
    after = evaluate_video(net, split, cfg)
    assert after["protocol"] == "mars-official" and after["mode"] == "rrs"
    assert after["mAP"] > before["mAP"] + 10  # unseen identities under a camera colour cast


def test_extra_loss_and_label_checks(split):
    cfg = VideoTrainConfig.from_mapping(TINY)
    net = build_video_net(cfg)
    clf = build_video_classifier(net, 4)
    calls = []

    def extra(f, f_bn, y):
        calls.append((tuple(f.shape), tuple(f_bn.shape), tuple(y.shape)))
        return 0.5 + 0.0 * f.sum()

    logged = []
    out = train_video_epochs(net, clf, split.train, cfg, epochs=1, seed=0, extra_loss=extra,
                             log=logged.append)
    assert calls == [((8, net.feature_dim), (8, net.feature_dim), (8,))]  # 4 ids / P = 4
    assert out["extra"] == pytest.approx(0.5) and len(logged) == 1
    with pytest.raises(ValueError, match="labels"):
        train_video_epochs(net, build_video_classifier(net, 3), split.train, cfg, epochs=1)


def test_features_rrs_and_all_clips(split):
    cfg = VideoTrainConfig.from_mapping({**TINY, "test-normalize": True})
    net = build_video_net(cfg).eval()
    tracks = split.test[:3]
    rrs = extract_tracklet_features(net, tracks, cfg, mode="rrs", batch=2)
    allc = extract_tracklet_features(net, tracks, cfg, mode="all", batch=2)
    assert rrs.shape == allc.shape == (3, net.feature_dim) and rrs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(allc, axis=1), 1.0, atol=1e-5)
    # "all" = mean of the all-sampled clips' f_bn, then L2-normalised
    t = tracks[2]
    clips = clip_dataset([t], cfg, "all_sampled")[0][0]
    assert clips.shape[0] == rrs_all_clips(len(t), 4).shape[0] > 1
    mean = net.embed(eval_clips(clips, cfg)).mean(0)
    np.testing.assert_allclose(allc[2], torch.nn.functional.normalize(mean, dim=0).numpy(),
                               atol=1e-5)
    assert not np.allclose(rrs[2], allc[2])


def test_evaluation_protocols(split):
    cfg = VideoTrainConfig.from_mapping(TINY)
    onehot = np.eye(16, dtype=np.float32)[[t.pid for t in split.test]]
    res = evaluate_video_features(onehot, split, cfg, protocol="mars-bot")
    assert res["protocol"] == "mars-bot" and res["R1"] == 100.0 and res["mAP"] == 100.0
    qg = np.concatenate([np.eye(16, dtype=np.float32)[[t.pid for t in part]]
                         for part in (split.query, split.gallery)])
    res = evaluate_video_features(qg, (split.query, split.gallery), cfg,
                                  protocol="query-gallery")
    assert res["protocol"] == "query-gallery" and res["mAP"] == 100.0
    with pytest.raises(ConfigError, match="MARS-layout"):
        evaluate_video_features(qg, (split.query, split.gallery), cfg)
    with pytest.raises(ValueError, match="rows"):
        evaluate_video_features(onehot[:-1], split, cfg)
    assert isinstance(split.root, Path)


def test_table21_helpers(tmp_path: Path):
    from benchmarks.video_table21 import geometry_kwargs, main, ordering_checks, paper_cost
    from fedfr.errors import DataFormatError

    assert geometry_kwargs("ste_nvan", "small_reid", 128) == {"stripes": 16}
    assert geometry_kwargs("ste_nvan", "small_reid", 64) == {"stripes": 8}
    assert geometry_kwargs("cf_aan", "small_reid", 64) == {"scales": 3}
    assert geometry_kwargs("nvan", "resnet50", 256) == {}
    with pytest.raises(ConfigError, match="height 48"):
        geometry_kwargs("ste_nvan", "small_reid", 48)
    ste = paper_cost("ste_nvan")  # ResNet-50 on 'meta', beside Appendix H's analytic GMAC
    assert ste["resnet50_gmac"] == pytest.approx(ste["appendix_h_gmac"], rel=0.01)
    assert ste["thesis_gflops"] == 16.5 and ste["paper_T"] == 8
    costs = {"ste_nvan": ste, "nvan": {"resnet50_gmac": 63.56},
             "baseline": {"resnet50_gmac": 32.43}}
    summary = [{"model": n, "R1_mean": r, "mAP_mean": r} for n, r in
               (("nvan", 50.0), ("ste_nvan", 40.0), ("baseline", 45.0))]
    checks = ordering_checks(summary, costs, "mars-official")
    assert "holds" in checks[0] and "nvan > baseline > ste_nvan" in checks[1]
    with pytest.raises(DataFormatError, match="no_such"):
        main(["--paper", "mars", "--data-root", str(tmp_path / "no_such"),
              "--out", str(tmp_path / "out")])


def test_loader_workers_give_the_same_batches(split):
    from fedfr.reid.video.training import _clip_batches

    cfg = VideoTrainConfig.from_mapping(TINY)
    ds = clip_dataset(split.train, cfg, "train", seed=3)
    ds.set_epoch(2)
    batches = [[0, 1, 2], [5, 4]]
    here = [x for _, x in _clip_batches(ds, batches, 0)]
    there = [x for _, x in _clip_batches(ds, batches, 1)]
    assert all(torch.equal(a, b) for a, b in zip(here, there, strict=True))
