"""A two-node Ray cluster on this machine (a head and a worker node, ``ray start``) runs the
tracking pipeline (cameras pinned to nodes) and a small ``flwr run`` simulation
(docs/deployment.md, section 5). Slow: about two minutes on 2 cores.

The cluster lives in its own temp dir (so it never writes /tmp/ray/ray_current_cluster, and no
other ``ray.init()`` on the machine finds it) and is stopped by the process ids this test
started (never ``ray stop``, which stops every Ray on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.test_tracking_ray import CAMS, _inputs, _texts, scene  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli), "start", "--block", "--node-ip-address", "127.0.0.1",
           "--dashboard-agent-listen-port", str(_free_port()), *args]
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=ROOT)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each ``ray start --block`` we started (it stops its node's processes), then
    SIGKILL what is left of their process groups."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_for_nodes(ray, address: str, n: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, log_to_driver=False)
            break
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    while sum(x["Alive"] for x in ray.nodes()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ray cluster at {address}: fewer than {n} nodes alive")
        time.sleep(1)


def test_two_node_ray_cluster_runs_tracking_and_a_flwr_simulation(
        scene, tiny_config, tmp_path):  # noqa: F811
    ray = pytest.importorskip("ray")
    from ray._private.state import jobs

    from fedfr.tracking.embedders import ColourHistogramEmbedder
    from fedfr.tracking.pipeline import run_tracking
    from fedfr.tracking.ray_pipeline import RayOptions, run_tracking_ray
    from server.inprocess import format_run_config

    temp = tempfile.mkdtemp(prefix="rtk", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start_node(
            ["--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
             "--ray-client-server-port", str(_free_port()), "--temp-dir", temp,
             "--resources", json.dumps({"camera:c001": 1, "camera:c002": 1})],
            tmp_path / "head.log"))
        time.sleep(5)
        procs.append(_start_node(
            ["--address", address, "--num-cpus", "1",
             "--resources", json.dumps({"camera:c003": 1})], tmp_path / "worker.log"))
        _wait_for_nodes(ray, address, 2)
        assert ray.cluster_resources()["CPU"] == 2
        ray.shutdown()

        # 1. tracking: cameras pinned to the nodes that hold their custom resource
        sources, det, _, cfg = _inputs(scene)
        run_tracking(sources, det, ColourHistogramEmbedder(), tmp_path / "thr", cfg)
        sources, det, _, cfg = _inputs(scene)
        res = run_tracking_ray(sources, det, ColourHistogramEmbedder(), tmp_path / "ray", cfg,
                               options=RayOptions(address=address, pin_cameras=True))
        assert not ray.is_initialized()  # disconnected again
        assert res.nodes["c001"] == res.nodes["c002"] != res.nodes["c003"]
        assert _texts(tmp_path / "ray") == _texts(tmp_path / "thr")

        # 2. a small flwr run whose Ray backend joins the cluster (RAY_ADDRESS)
        conf = {**tiny_config, "num-clients": 0}
        cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2",
               "--flwr-home", str(tmp_path / "flwr-home"),
               "--federation-config", "client-resources-num-cpus=1",
               "--run-config", format_run_config(conf)]
        env = {**os.environ, "RAY_ADDRESS": address}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        report = json.loads((Path(tiny_config["output-dir"]) / "report.json").read_text())
        assert [r["num-replies"] for r in report["rounds"]] == [2, 2]
        ray.init(address=address, log_to_driver=False)
        entry = [j["Entrypoint"] for j in jobs()]
        ray.shutdown()
        assert any("flower-simulation" in e or "flwr-simulation" in e for e in entry), entry
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)
