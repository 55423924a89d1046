"""The issue's model chain at a tiny size: a re-ID federation (task='reid', 1 round) ->
CAIE pruning of its final_model.pt -> ``fedfr track --embedder CKPT`` (unpruned and pruned) on
a few frames of the synthetic 3-camera scene -> result files and evaluation table written."""

from __future__ import annotations

import pytest
import torch

from fedfr.cli import main as fedfr_main
from fedfr.tracking.embedders import ReidModelEmbedder, load_reid_model
from fedfr.tracking.scene import SceneSpec, write_scene

TINY = {"task": "reid", "num-clients": 2, "reid-clients": "synth-market,synth-duke",
        "reid-unseen": "synth-viper", "reid-synthetic-ids": 20, "batch-size": 16,
        "reid-height": 32, "reid-width": 16, "num-server-rounds": 1, "local-epochs": 1,
        "pretrain-epochs": 1, "strategy": "fedavg"}


@pytest.mark.slow
def test_federated_reid_model_pruned_and_tracked(tmp_path, monkeypatch):
    from fedfr.config import format_run_config
    from server.inprocess import run_inprocess

    monkeypatch.setenv("FEDFR_HOME", str(tmp_path / "home"))
    run_dir = tmp_path / "fed"
    run_inprocess({**TINY, "output-dir": str(run_dir)})
    ckpt = run_dir / "final_model.pt"
    assert ckpt.is_file()

    prune_dir = tmp_path / "pruned"
    run_config = format_run_config({k: v for k, v in TINY.items()})
    assert fedfr_main(["prune", "--checkpoint", str(ckpt), "--run-config", run_config, "--method",
                       "caie", "--flops", "0.6", "--per-step", "16", "--batches", "2",
                       "--epochs", "1", "--batch-size", "16", "--out", str(prune_dir)]) == 0
    pruned_path = prune_dir / "pruned_model.pt"
    assert (prune_dir / "report.json").is_file()

    unpruned = load_reid_model(ckpt, "small_reid")
    pruned = load_reid_model(pruned_path)
    n_un = sum(p.numel() for p in unpruned.parameters())
    n_pr = sum(p.numel() for p in pruned.parameters())
    assert n_pr < 0.8 * n_un  # really narrower, rebuilt at its pruned widths
    emb = ReidModelEmbedder.from_path(pruned_path)
    assert emb.size == (32, 16)  # the run's input, stored in the file
    with torch.no_grad():
        assert torch.isfinite(pruned(torch.zeros(2, 3, 32, 16))[1]).all()

    scene = tmp_path / "scene"
    write_scene(SceneSpec(setup="disjoint", frames=12, frame_rate=10.0, width=320,
                          height=240), scene)
    for name, spec in (("fed", [str(ckpt), "--reid-name", "small_reid", "--crop-size",
                                "32x16"]),
                       ("pruned", [str(pruned_path)])):
        out = tmp_path / f"track-{name}"
        assert fedfr_main(["track", "--scene", str(scene), "--embedder", *spec,
                           "--out", str(out)]) == 0
        for cam in ("c001", "c002", "c003"):
            assert (out / f"{cam}.txt").is_file()
            assert (out / "motion-only" / f"{cam}.txt").is_file()
        table = (out / "evaluation.csv").read_text().splitlines()
        assert table[0].startswith("method,camera")
        assert any(line.startswith("gallery,multi-camera") for line in table)
