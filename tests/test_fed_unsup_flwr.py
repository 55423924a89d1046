"""``semi-reid`` and ``unsup-reid`` through ``flwr run`` (``python -m server.simulate``: Ray
simulation, a local SuperLink, 2 SuperNodes), on tiny synthetic camera domains. Slow."""

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


@pytest.mark.parametrize("task,over", [
    ("semi-reid", {"semi-ratio": "1/3", "semi-init-rounds": 1}),
    ("unsup-reid", {"unsup-rho": 0.05}),
])
def test_few_label_task_runs_through_flwr_run(tmp_path: Path, task: str, over: dict) -> None:
    conf = {"task": task, "reid-clients": "synth-market,synth-duke", "reid-unseen": "synth-viper",
            "reid-synthetic-ids": 12, "reid-height": 32, "reid-width": 16,
            "num-server-rounds": 2, "pretrain-epochs": 1, "local-epochs": 1, "batch-size": 8,
            "reid-instances": 2, "min-train-nodes": 2, "num-clients": 0, "strategy": "fedavg",
            "contrastive": False, "dfc": False, "final-eval-models": "global,local",
            "output-dir": str(tmp_path / "out"), "cache-dir": str(tmp_path / "cache"), **over}
    home = tmp_path / "flwr-home"
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2", "--flwr-home",
           str(home), "--run-config", format_run_config(conf)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["task"] == task and report["config"]["num-clients"] == 2
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["aggregated"] and r["num-replies"] == 2 for r in report["rounds"])
    for model in ("global", "local"):
        assert math.isfinite(report["final"]["personalized_by_model"][model]["mAP"])
    assert superlink_pids(home) == []
