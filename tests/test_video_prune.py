"""Pruning video re-ID nets (CAIE on STE-NVAN): the trunk-scoped channel groups, their resource
impact against physical removal, save / load by path, TorchScript / ONNX export with the
pruning in the sidecar, and the tracking module's loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedfr.pruning.counting import count_resources
from fedfr.pruning.global_pruning import GlobalConfig
from fedfr.pruning.groups import PrunableNet
from fedfr.pruning.impact import resource_impacts
from fedfr.pruning.io import save_pruned
from fedfr.pruning.pipeline import run
from fedfr.pruning.task import FineTuneSchedule
from fedfr.pruning.video import VideoReidTask, block_local_ignored, pruned_video_spec, trunk_scope
from fedfr.reid.video.training import (
    VideoTrainConfig,
    build_video_net,
    config_mapping,
    load_video_model,
    save_video_model,
    train_video,
)
from tests.video_fixtures import colour_tracklets

TINY = {"model": "ste_nvan", "height": 32, "width": 16, "p": 4, "k": 2, "lr": 3e-3,
        "clip_len": 4, "model_kwargs": {"stripes": 4}}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return colour_tracklets(tmp_path_factory.mktemp("colour"))


def test_groups_are_block_local_and_impact_is_exact():
    cfg = VideoTrainConfig.from_mapping(TINY)
    torch.manual_seed(0)
    net = build_video_net(cfg).eval()
    x = torch.randn(1, 4, 3, 32, 16)
    scope = trunk_scope(net, cfg)
    kept = block_local_ignored(net, scope)
    assert "backbone.stem.0" in kept and "backbone.stages.2.conv2" in kept  # trunk output
    pnet = PrunableNet(net, x, kept, scope=scope)
    groups = pnet.groups()
    assert [g.root for g in groups] == [f"backbone.stages.{i}.conv1" for i in range(3)]
    for convention in ("eq5.7", "full"):
        res = count_resources(net, x, convention)
        impacts = resource_impacts(pnet, groups, res)
        for g in groups:  # STE-NVAN: stage 0 on 4 frames, 1 on 2, 2 on 1 (temporal pooling)
            probe = copy.deepcopy(net)
            p2 = PrunableNet(probe, x, kept, scope=trunk_scope(probe, cfg))
            p2.remove(next(h for h in p2.groups() if h.root == g.root), [0])
            after = count_resources(probe, x, convention)
            assert impacts[g.index]["flops"] * res.flops == pytest.approx(
                res.flops - after.flops, rel=1e-9), (convention, g.root)
            assert impacts[g.index]["params"] * res.params == pytest.approx(
                res.params - after.params, rel=1e-9)
            probe(x)  # the pruned net still runs


def test_prune_load_and_onnx_equality(split, tmp_path: Path):
    """Fast path: CAIE on an untrained tiny STE-NVAN, saved, loaded by path, exported to ONNX
    and run by onnxruntime and by the tracking module's loader."""
    pytest.importorskip("onnxruntime")
    from fedfr.pruning.global_pruning import prune_global
    from fedfr.reid.models.video.export import export_video_model, load_exported_video_model
    from fedfr.tracking.embedders import load_video_embedder

    cfg = VideoTrainConfig.from_mapping(TINY)
    torch.manual_seed(0)
    net = build_video_net(cfg)
    task = VideoReidTask(net, split, cfg)
    res = prune_global(net, task, {"flops": 0.85}, "caie", GlobalConfig(per_step=24, n_batches=1),
                       ignored=block_local_ignored(net, task.prune_scope), progress=False)
    assert res.satisfied and res.remaining()["flops"] <= 0.85
    path = tmp_path / "pruned_model.pt"
    save_pruned(path, net, pruned_video_spec(net), {"train_config": config_mapping(cfg)})
    loaded, _ = load_video_model(path)
    clips = torch.randn(3, 4, 3, 32, 16)
    torch.testing.assert_close(loaded.embed(clips), net.eval().embed(clips), atol=1e-5, rtol=0)
    paths = export_video_model(loaded, tmp_path / "export", ("onnx",), meta={"pruned": True})
    ort = load_exported_video_model(paths["sidecar"], backend="onnx")
    torch.testing.assert_close(ort(clips), net.embed(clips), atol=1e-4, rtol=0)
    crops = np.random.default_rng(0).integers(0, 255, (2, 3, 20, 10, 3), dtype=np.uint8)
    a = load_video_embedder(paths["sidecar"]).embed_clips(crops)
    np.testing.assert_allclose(a, load_video_embedder(path).embed_clips(crops), atol=1e-4)
    # fedfr track --embedder PATH picks the video loader for both files, the image one otherwise
    from fedfr.tracking.embedders import VideoModelEmbedder, build_embedder, is_video_model_file

    assert isinstance(build_embedder(str(path)), VideoModelEmbedder)
    assert isinstance(build_embedder(str(paths["sidecar"])), VideoModelEmbedder)
    np.testing.assert_allclose(build_embedder(str(path)).embed_clips(crops), a, atol=1e-4)
    torch.save({"state_dict": {}}, tmp_path / "image.pt")
    assert not is_video_model_file(tmp_path / "image.pt")


@pytest.mark.slow
def test_caie_prunes_ste_nvan_then_saves_loads_and_exports(split, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    cfg = VideoTrainConfig.from_mapping(TINY)
    net, clf, _ = train_video(split, cfg, epochs=2)
    attention_before = {k: v.shape for k, v in net.state_dict().items()
                        if k.startswith(("attention.", "neck."))}
    task = VideoReidTask(net, split, cfg, classifier=clf)
    kept = block_local_ignored(net, task.prune_scope)
    net, rep = run(net, task, "caie", {"flops": 0.8},
                   FineTuneSchedule(epochs=1, lr=1e-3, milestones=()),
                   GlobalConfig(per_step=16, n_batches=1), ignored=kept,
                   measure_latency_ms=False, progress=False)
    assert rep["satisfied"] and rep["flops"]["remaining_pct"] <= 80.0
    assert set(rep["metrics_after"]) >= {"R1", "mAP"} and rep["metric"] == "mAP"
    after = net.state_dict()
    assert {k: after[k].shape for k in attention_before} == attention_before
    assert rep["channels_after"]["backbone.stages.0.conv2"] == 48  # block boundary kept
    assert sum(rep["channels_after"][f"backbone.stages.{i}.conv1"] for i in range(3)) < 336

    path = tmp_path / "pruned_model.pt"
    save_pruned(path, net, pruned_video_spec(net), {"train_config": config_mapping(cfg)})
    loaded, rec = load_video_model(path)
    clips = torch.randn(3, 4, 3, 32, 16)
    torch.testing.assert_close(loaded.embed(clips), net.embed(clips), atol=1e-5, rtol=0)

    from fedfr.reid.models.video.export import export_video_model, load_exported_video_model
    paths = export_video_model(loaded, tmp_path / "export", meta={"pruned": rep["flops"]})
    side = json.loads(paths["sidecar"].read_text())
    assert side["meta"]["pruned"]["remaining_pct"] == rep["flops"]["remaining_pct"]
    assert side["input"]["clip_len"] == 4 and (side["input"]["height"],
                                               side["input"]["width"]) == (32, 16)
    ort = load_exported_video_model(paths["sidecar"], backend="onnx")
    torch.testing.assert_close(ort(clips), net.embed(clips), atol=1e-4, rtol=0)

    from fedfr.tracking.embedders import load_video_embedder
    crops = np.random.default_rng(0).integers(0, 255, (2, 6, 20, 10, 3), dtype=np.uint8)
    a = load_video_embedder(paths["sidecar"], backend="onnx").embed_clips(crops)
    b = load_video_embedder(path).embed_clips(crops)
    assert a.shape == (2, net.feature_dim)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_checkpoint_round_trip_and_errors(tmp_path: Path):
    from fedfr.errors import DataFormatError

    cfg = VideoTrainConfig.from_mapping(TINY)
    net = build_video_net(cfg).eval()
    path = save_video_model(tmp_path / "m.pt", net, cfg)
    loaded, rec = load_video_model(path)
    assert VideoTrainConfig.from_mapping(rec["train_config"]) == cfg
    clips = torch.randn(2, 4, 3, 32, 16)
    torch.testing.assert_close(loaded.embed(clips), net.embed(clips))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(DataFormatError, match="bad.pt"):
        load_video_model(tmp_path / "bad.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError, match="not a video re-ID model"):
        load_video_model(tmp_path / "other.pt")


@pytest.mark.slow
def test_prune_command_on_a_video_model(tmp_path: Path, shared_cache: Path, capsys):
    """``fedfr prune --video`` end to end on synthetic tracklets, with export."""
    pytest.importorskip("onnxruntime")
    from fedfr.cli import main
    from fedfr.reid.data.tracklets import synthetic_tracklets

    cfg = VideoTrainConfig.from_mapping({**TINY, "height": 64, "width": 32,
                                         "model_kwargs": {"stripes": 8}})
    split = synthetic_tracklets("synth-mars", shared_cache, num_ids=8)
    net, _, _ = train_video(split, cfg, epochs=1)
    model = save_video_model(tmp_path / "ste.pt", net, cfg)
    out = tmp_path / "pruned"
    args = ["prune", "--video", str(model), "--video-data", "synth-mars", "--video-root",
            str(shared_cache), "--num-ids", "8", "--flops", "0.8", "--epochs", "1",
            "--per-step", "16", "--batches", "1", "--export", "onnx", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["satisfied"] and report["metric"] == "mAP"
    side = json.loads((out / "export" / "ste_nvan.json").read_text())
    assert side["meta"]["pruned"]["flops"]["remaining_pct"] <= 80
    loaded, rec = load_video_model(out / "pruned_model.pt")
    assert rec["meta"]["train_config"]["model"] == "ste_nvan"
    assert main(["prune", *args[1:7], "--method", "l1", "--flops", "0.5", "--out",
                 str(tmp_path / "x")]) == 2
    assert "not supported for video nets" in capsys.readouterr().err
