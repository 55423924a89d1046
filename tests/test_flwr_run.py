"""`flwr run` end to end (Ray simulation engine, local SuperLink). Slow: `make test-slow`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from server.inprocess import format_run_config
from server.simulate import superlink_pids

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_flwr_run_simulation_writes_the_report_and_stops_its_superlink(
        tiny_config: dict, tmp_path: Path) -> None:
    home = tmp_path / "flwr-home"
    conf = {**tiny_config, "num-clients": 0}  # one client per SuperNode
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2", "--flwr-home",
           str(home), "--run-config", format_run_config(conf)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((Path(tiny_config["output-dir"]) / "report.json").read_text())
    assert report["config"]["num-clients"] == 2
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["num-replies"] == 2 for r in report["rounds"])
    assert math.isfinite(report["final"]["personalized"]["rank1"])
    assert "G 1:1" in proc.stdout  # the results table was printed
    assert superlink_pids(home) == []  # nothing left running


def test_flwr_run_that_fails_exits_non_zero_and_prints_no_stale_table(
        tiny_config: dict, tmp_path: Path) -> None:
    """flwr exits 0 when the ServerApp raised; server.simulate reads the run's status.json."""
    out = Path(tiny_config["output-dir"])
    out.mkdir(parents=True)
    (out / "results.md").write_text("| an older run's table |\n")
    empty = tmp_path / "no-faces"
    empty.mkdir()  # exists (passes the pre-flight check), holds no identity folders
    conf = {**tiny_config, "num-clients": 0, "dataset": "folder", "data-root": str(empty)}
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2", "--flwr-home",
           str(tmp_path / "flwr-home"), "--run-config", format_run_config(conf)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"run failed: {empty}: no identity folders" in proc.stderr
    assert not (out / "results.md").exists()
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
