"""``fedfr evaluate ijbc|bin`` end to end: checkpoint in a run's layout, tables, ROC PNG, cache."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from ijbc_fixtures import write_bin, write_ijbc

from fedfr.cli import main
from fedfr.face.models import get_model


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as server/federation.py leaves it: final_model.pt + report.json config."""
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(1)
    model = get_model("small_cnn", embedding_size=16, input_size=32)
    arrays = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    arrays["phi"] = torch.randn(4, 16)
    torch.save(arrays, run / "final_model.pt")
    (run / "report.json").write_text(json.dumps(
        {"config": {"model": "small_cnn", "embedding-size": 16, "image-size": 32}}))
    return run


def test_evaluate_ijbc_command(tmp_path, run_dir):
    root = tmp_path / "IJBC"
    write_ijbc(root, subjects=4)
    out = tmp_path / "eval"
    args = ["evaluate", "ijbc", "--root", str(root), "--checkpoint",
            str(run_dir / "final_model.pt"), "--out", str(out), "--nearest-roc"]
    assert main(args) == 0
    one = pd.read_csv(out / "ijbc_1to1.csv")
    assert {"tar@1e-01", "tar_roc@1e-01", "num_genuine"} <= set(one.columns)
    many = pd.read_csv(out / "ijbc_1toN.csv")
    assert list(many["protocol"]) == ["insightface-closed-G1+G2", "nist-open-G1",
                                      "nist-open-G2", "nist-open-mean"]
    md = (out / "ijbc.md").read_text()
    assert "closed set" in md and "open-set" in md
    assert (out / "ijbc_roc.png").stat().st_size > 1000
    cached = list((out / "feature-cache").glob("*.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert main(args) == 0  # second run: features from the cache, not re-embedded
    assert cached[0].stat().st_mtime_ns == mtime


def test_evaluate_bin_command(tmp_path, run_dir):
    paths = []
    for name in ("lfw", "cfp_fp"):
        write_bin(tmp_path / f"{name}.bin", pairs=20, seed=len(name))
        paths += ["--bin", str(tmp_path / f"{name}.bin")]
    out = tmp_path / "eval"
    assert main(["evaluate", "bin", *paths, "--checkpoint", str(run_dir / "final_model.pt"),
                 "--out", str(out), "--folds", "5"]) == 0
    df = pd.read_csv(out / "bin.csv")
    assert list(df["set"]) == ["lfw", "cfp_fp"]
    assert df["accuracy"].between(0, 1).all()
    assert (out / "bin_roc.png").exists() and "5-fold" in (out / "bin.md").read_text()


def test_evaluate_rejects_wrong_model(tmp_path, run_dir, capsys):
    write_bin(tmp_path / "lfw.bin", pairs=4)
    args = ["evaluate", "bin", "--bin", str(tmp_path / "lfw.bin"), "--checkpoint",
            str(run_dir / "final_model.pt"), "--embedding-size", "32", "--out",
            str(tmp_path / "e")]
    assert main(args) == 2  # a user error: one line, exit status 2
    err = capsys.readouterr().err
    assert "do not fit model" in err and "Traceback" not in err
    assert main(["--debug", *args]) == 2  # --debug adds the traceback
    assert "Traceback" in capsys.readouterr().err
