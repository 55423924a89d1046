"""``fedfr prune`` end to end: a torchvision ResNet and the federated face model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedfr.cli import main
from fedfr.face.models import get_model
from fedfr.pruning.io import load_pruned

ORL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "orl"


def test_prune_torchvision_resnet_without_data(tmp_path):
    out = tmp_path / "r18"
    rc = main(["prune", "--torchvision", "resnet18", "--num-classes", "10", "--input-size", "32",
               "--method", "l1", "--flops", "0.5", "--params", "0.6", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["satisfied"]
    assert report["flops"]["remaining_pct"] <= 50 and report["params"]["remaining_pct"] <= 60
    assert report["latency_before"]["cpu_ms"] > 0 and report["latency_after"]["cpu_ms"] > 0
    assert report["model_mib"]["after"] < 0.6 * report["model_mib"]["before"]
    assert report["channels_after"]["layer1.0.conv1"] < 64
    model, _ = load_pruned(out / "pruned_model.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert "Channels per layer" in (out / "report.md").read_text()


def test_prune_needs_a_constraint_and_data(tmp_path, capsys):
    assert main(["prune", "--torchvision", "resnet18", "--out", str(tmp_path)]) == 2
    assert "--flops" in capsys.readouterr().err
    assert main(["prune", "--torchvision", "resnet18", "--method", "caie", "--flops", "0.5",
                 "--out", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err


@pytest.mark.skipif(not ORL.is_dir(), reason="shared ORL faces not available")
def test_prune_face_model_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_model("small_cnn", 32, 32)
    ckpt = tmp_path / "final_model.pt"  # the federation's layout: backbone.* keys
    torch.save({f"backbone.{k}": v for k, v in model.state_dict().items()}, ckpt)
    run_config = (f"dataset='folder' data-root='{ORL}' image-size=32 embedding-size=32 "
                  f"num-public-ids=16 ids-per-client=4 train-per-id=6 test-per-id=4 "
                  f"num-generic-ids=8 num-clients=4 cache-dir='{tmp_path / 'cache'}'")
    out = tmp_path / "face"
    rc = main(["prune", "--checkpoint", str(ckpt), "--run-config", run_config,
               "--method", "caie", "--flops", "0.75", "--batches", "2", "--per-step", "40",
               "--epochs", "1", "--batch-size", "32", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["satisfied"] and report["flops"]["remaining_pct"] <= 75
    assert report["metric"].startswith(("tar@", "rank1"))
    assert report["metric_before"] is not None and report["metric_after"] is not None
    pruned, rec = load_pruned(out / "pruned_model.pt")
    assert rec["spec"]["kind"] == "fedfr"
    assert pruned(torch.zeros(2, 3, 32, 32)).shape == (2, 32)
