"""Each experiment script runs end to end on a tiny preset and writes its tables, plots, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from server.inprocess import format_run_config
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def tiny_run_config(cache: Path, **extra) -> str:
    return format_run_config({**TINY, "cache-dir": str(cache), **extra})


def _check_common(out: Path) -> None:
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["embedding-size"] == TINY["embedding-size"]
    assert json.loads((out / "split.json").read_text())["digest"]


@pytest.mark.slow
def test_personalization_tables(tmp_path: Path, shared_cache: Path) -> None:
    from benchmarks import personalization

    out = tmp_path / "pers"
    personalization.main(["--out", str(out), "--personalize-epochs", "1",
                          "--run-config", tiny_run_config(shared_cache)])
    t72 = pd.read_csv(out / "table7_2.csv")
    assert list(t72["Modules"]) == ["Fine-tune", "KD", "CosFace", "BCE"]
    t73 = pd.read_csv(out / "table7_3.csv")
    assert len(t73) == 3
    values = t72.drop(columns=["Method", "Modules"]).to_numpy()
    assert values.size and all(0 <= v <= 100 for v in values.ravel() if not math.isnan(v))
    assert "| Yu et al. 2020 | KD |" in (out / "table7_2.md").read_text()
    _check_common(out)


def test_hn_sweep(tmp_path: Path, shared_cache: Path) -> None:
    from benchmarks import hn_sweep

    out = tmp_path / "sweep"
    hn_sweep.main(["--out", str(out), "--thresholds=-1,0.6",
                   "--run-config", tiny_run_config(shared_cache)])
    frame = pd.read_csv(out / "hn_sweep.csv")
    assert list(frame["t_HN"]) == ["-1 (all D_g)", "0.6", "pre-trained (no federation)"]
    steps = list(frame["steps / epoch"])
    assert steps[0] > steps[1] > 0  # all of D_g takes more steps than a strict threshold
    assert (out / "hn_sweep.png").stat().st_size > 1000
    _check_common(out)


@pytest.mark.slow
def test_ids_per_client(tmp_path: Path, shared_cache: Path) -> None:
    from benchmarks import ids_per_client

    out = tmp_path / "ids"
    ids_per_client.main(["--out", str(out), "--ids", "2,1", "--run-config",
                         tiny_run_config(shared_cache, **{"num-public-ids": 12,
                                                          "num-generic-ids": 6})])
    frame = pd.read_csv(out / "fig7_4.csv")
    assert list(frame["method"]) == ["Pre-trained", "Central", "FedFace", "FedFR"]
    assert list(frame.columns[1:]) == ["2 IDs/client", "1 IDs/client"]
    # one public set, one pre-trained model: the pre-trained row is the same in both scenarios
    assert frame.iloc[0, 1] == pytest.approx(frame.iloc[0, 2])
    assert (out / "fig7_4.png").exists() and (out / "split-k1.json").exists()
    assert "class proxies" in (out / "ids_per_client.md").read_text()
    _check_common(out)


@pytest.mark.slow
def test_ablation_writes_roc_plots(tmp_path: Path, shared_cache: Path) -> None:
    from benchmarks import ablation

    out = tmp_path / "abl"
    ablation.main(["--out", str(out), "--rows", "fedavg,fedfr", "--run-config",
                   tiny_run_config(shared_cache)])
    frame = pd.read_csv(out / "ablation.csv")
    assert list(frame["row"]) == ["Pre-trained (public identities)", "FedAvg", "FedFR (+ DFC)",
                                  "Central, all identities"]
    assert (out / "roc-generic.png").exists() and (out / "roc-personalized.png").exists()
    _check_common(out)


@pytest.mark.slow
def test_hn_sweep_over_seeds(tmp_path: Path, shared_cache: Path) -> None:
    from benchmarks import hn_sweep

    out = tmp_path / "sweep-seeds"
    hn_sweep.main(["--out", str(out), "--thresholds=0.6", "--seeds", "0,1",
                   "--run-config", tiny_run_config(shared_cache)])
    assert (out / "seed-0" / "hn_sweep.csv").exists() and (out / "seed-1" / "hn_sweep.csv").exists()
    frame = pd.read_csv(out / "hn_sweep.csv")
    assert any(c.endswith(" sd") for c in frame.columns)
    assert "mean ± sd over 2 seed(s)" in (out / "hn_sweep.md").read_text()
    _check_common(out)


@pytest.mark.slow
def test_personalization_over_seeds_with_intervals_and_reuse(tmp_path: Path,
                                                             shared_cache: Path) -> None:
    from benchmarks import personalization

    out = tmp_path / "pers-seeds"
    args = ["--out", str(out), "--personalize-epochs", "1", "--seeds", "0,1", "--bootstrap",
            "20", "--run-config", tiny_run_config(shared_cache)]
    personalization.main(args)
    t73 = pd.read_csv(out / "table7_3.csv")
    tar = [c for c in t73.columns if c.startswith("P 1:1 TAR") and c[-3:] not in (" sd", " lo",
                                                                                     " hi")][0]
    assert (t73[f"{tar} lo"] <= t73[tar]).all() and (t73[tar] <= t73[f"{tar} hi"]).all()
    assert "Paired differences to 'Theta_g'" in (out / "table7_3.md").read_text()
    assert (out / "diagnostics.md").exists()
    before = (out / "seed-1" / "fedfr" / "final_model.pt").stat().st_mtime_ns
    personalization.main(args + ["--reuse"])  # evaluates the finished runs, trains nothing
    assert (out / "seed-1" / "fedfr" / "final_model.pt").stat().st_mtime_ns == before
    assert pd.read_csv(out / "table7_3.csv")[tar].tolist() == t73[tar].tolist()
