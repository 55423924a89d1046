"""Flower's deployment runtime on loopback: SuperLink + 3 SuperNodes with TLS and SuperNode
authentication (server/launch.py), as separate processes. Slow (minutes): `make test-slow`.

One federation serves the module; every process it starts is stopped (by process group) in the
fixture's ``finally`` and checked to be gone.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from clients.app import app as client_app
from fedfr.client_state import ClientStateStore
from fedfr.config import format_run_config, resolve
from server.certs import make_node_key
from server.federation import run_federation
from server.inprocess import InProcessGrid
from server.launch import LocalFederation, export_nodes, node_config, prepare_run_config
from server.simulate import free_port

pytestmark = pytest.mark.slow
N = 3
#: simulation vs deployment: final metrics agree to this (absolute, metrics are fractions);
#: aggregation sums in float64, so the reply order cannot change the float32 model
TOLERANCE = 1e-6


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    out.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return out


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path):
    work = tmp_path_factory.mktemp("federation")
    from tests.conftest import TINY

    values = prepare_run_config(
        format_run_config({**TINY, "cache-dir": str(shared_cache)}), N, work)
    dirs = export_nodes(values, work)
    f = LocalFederation(work, N)
    started: list[int] = []
    try:
        f.prepare()
        started.append(f.start_superlink().pid)
        for i in range(N):
            assert f.register(i) > 0
        for i, d in enumerate(dirs):
            nc = node_config(i, N, d, work / "state" / f"node-{i}")
            started.append(f.start_supernode(i, nc).pid)
        f.wait_online(N, timeout=180)
        f.values = values  # type: ignore[attr-defined]
        f.started = started  # type: ignore[attr-defined]
        yield f
    finally:
        pids = started + [p.pid for p in f.procs.values()]
        f.stop()
        assert not [p for p in pids if _alive(p)]
        assert not [p for p in pids if _group_members(p)]  # nor any app they spawned


def _run(fed: LocalFederation, values: dict, timeout: float = 600) -> dict:
    proc = fed.run_app(format_run_config(values))
    rc = proc.popen.wait(timeout=timeout)
    assert rc == 0, proc.output()[-4000:]
    return json.loads((Path(values["output-dir"]) / "report.json").read_text())


def test_unregistered_key_and_missing_ca_are_refused(fed: LocalFederation) -> None:
    make_node_key(fed.keys, "stranger")
    quick = ["--max-retries", "1", "--max-wait-time", "5"]
    unregistered = fed.supernode_cmd(0, "partition-id=0", quick, port=free_port())
    unregistered[unregistered.index(str(fed.keys / "node-0"))] = str(fed.keys / "stranger")
    no_ca = fed.supernode_cmd(0, "partition-id=0", quick, port=free_port())
    k = no_ca.index("--root-certificates")
    del no_ca[k:k + 2]
    for name, cmd, why in (("stranger", unregistered, "Failed to activate SuperNode"),
                           ("no-ca", no_ca, "CERTIFICATE_VERIFY_FAILED")):
        proc = fed._start(name, cmd)
        assert proc.popen.wait(timeout=120) != 0, name
        assert why in proc.output(), proc.output()[-2000:]
    # the CLI without the CA certificate cannot reach the SuperLink either
    cfg = fed.flwr_home / "config.toml"
    cfg.write_text(cfg.read_text() + f'\n[superlink.no-ca]\naddress = "{fed.address}"\n')
    res = fed.flwr("supernode", "list", "no-ca", "--format", "json")
    assert '"success": true' not in res.stdout
    online = [n for n in fed.list_nodes() if n["status"] == "online"]
    assert len(online) == N  # only the three registered nodes


def test_secured_federation_matches_the_simulation(fed: LocalFederation, tmp_path: Path) -> None:
    values = {**fed.values, "output-dir": str(tmp_path / "deploy")}  # type: ignore[attr-defined]
    report = _run(fed, values)
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all((r["nodes-expected"], r["nodes-replied"], r["nodes-failed"]) == (N, N, 0)
               for r in report["rounds"])
    assert (tmp_path / "deploy" / "results.md").exists()
    # the same config and seed in simulation (in-process, whole dataset, no Flower runtime)
    cfg = resolve({**values, "output-dir": str(tmp_path / "sim")})
    sim = run_federation(InProcessGrid(client_app, N, cfg.to_dict()), cfg)
    for section in ("generic", "personalized"):
        for key, want in sim["final"][section].items():
            got = report["final"][section][key]
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), (section, key)
            else:
                assert abs(got - want) <= TOLERANCE, (section, key, got, want)


def test_node_killed_mid_round_rejoins_and_a_server_restart_resumes(
        fed: LocalFederation, tmp_path: Path) -> None:
    """Round 2: node 2 (SuperNode and its ClientApp) is killed and restarted at once. The round
    ends without it (its reply never comes, or the SuperLink answers "Node Unavailable" once its
    heartbeat lapses) and is aggregated from the other two; the failure is in the report. Flower
    re-admits the node's key when its old session has lapsed (at most 2 x 30 s; the restart is
    retried until then), so it is back by the last round, continuing from its state on disk.
    After round 3 the SuperLink host dies; restarted (same port, certificates, database), the
    same `flwr run` resumes after round 3."""
    out = tmp_path / "kill"
    values = {**fed.values, "output-dir": str(out),  # type: ignore[attr-defined]
              "num-server-rounds": 4, "round-timeout": 60.0}
    before = fed.procs["supernode-2"].output().count("Receiving: train message")
    run = fed.run_app(format_run_config(values))
    assert fed.procs["supernode-2"].wait_for("Receiving: train message", before + 2, 400), \
        run.output()[-3000:]
    fed.kill_supernode(2)
    fed.restart_supernode(2)  # the same key, node-config, data and state directories
    assert run.wait_for(r"round 3/4 done", timeout=600), run.output()[-4000:]
    fed.procs["superlink"].stop(signal.SIGKILL)  # the server host dies, ServerApp included
    run.stop()
    first = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in first["rounds"]] == [1, 2, 3]
    r1, r2, _ = first["rounds"]
    assert (r1["nodes-expected"], r1["nodes-replied"], r1["nodes-failed"]) == (N, N, 0)
    assert (r2["nodes-expected"], r2["nodes-replied"], r2["nodes-failed"]) == (N, N - 1, 1)
    assert r2["aggregated"] and r2["num-replies"] == N - 1
    node2 = r2["failures"][0]["node_id"]
    assert node2 > 1  # attributed to the node, not to the SuperLink that wrote the error reply

    fed.start_superlink()
    fed.wait_online(N, timeout=240)
    report = _run(fed, values)
    assert "resuming experiment" in fed.procs["flwr-run"].output()
    assert report["experiment-id"] == first["experiment-id"]
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3, 4]
    assert report["rounds"][:3] == first["rounds"]
    r4 = report["rounds"][3]
    assert (r4["nodes-expected"], r4["nodes-replied"], r4["nodes-failed"]) == (N, N, 0)
    assert report["failures"]["2"] == r2["failures"]
    store = ClientStateStore(fed.work / "state" / "node-2", report["experiment-id"], 2)
    rounds = sorted(int(p.stem[-4:]) for p in store.folder.glob("state-r*.pt"))
    assert 2 not in rounds and rounds[-1] == 4  # round 2 never finished there; it came back
    assert math.isfinite(report["final"]["personalized"]["rank1"])


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(entry.name) != os.getpid():  # (tmp paths contain "pytest")
                out.append(int(entry.name))
    return out


def test_launcher_stops_everything_on_ctrl_c(tmp_path: Path, shared_cache: Path) -> None:
    """`python -m server.launch` interrupted while the federation runs: it exits with 130 and
    leaves no SuperLink, SuperNode, flwr or app process behind."""
    import subprocess
    import sys
    import time

    from tests.conftest import TINY

    work = tmp_path / "launch"
    conf = format_run_config({**TINY, "cache-dir": str(shared_cache), "num-server-rounds": 5})
    cmd = [sys.executable, "-m", "server.launch", "--num-supernodes", "2", "--work", str(work),
           "--run-config", conf]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            lines.append(line)
            if "configure_train" in line or time.monotonic() > deadline:
                break
        assert any("configure_train" in ln for ln in lines), "".join(lines[-60:])
        assert len(_pids_mentioning(str(work))) >= 3  # SuperLink and SuperNodes are running
        proc.send_signal(signal.SIGINT)  # Ctrl-C (the children are in their own sessions)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, rest[-3000:]
        assert "every started process was stopped" in rest
        for _ in range(20):  # processes signalled by the launcher may take a moment to exit
            left = _pids_mentioning(str(work))
            if not left:
                break
            time.sleep(0.5)
        assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:300] for p in left]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _pids_mentioning(str(work)):  # never leave anything behind, even on failure
            os.kill(pid, signal.SIGKILL)


#: the re-ID workload at a tiny size: 2 synthetic client domains of 4 identities, 32 x 16 images
REID_TINY = {"task": "reid", "reid-clients": "synth-market,synth-duke",
             "reid-unseen": "synth-viper", "reid-synthetic-ids": 4, "reid-height": 32,
             "reid-width": 16, "num-server-rounds": 1, "pretrain-epochs": 1, "local-epochs": 1,
             "batch-size": 8, "reid-instances": 2, "min-train-nodes": 2}


def test_launcher_runs_reid_with_node_local_data(tmp_path: Path) -> None:
    """`python -m server.launch` (what `make federation` runs) with task='reid': TLS and
    SuperNode authentication, each SuperNode given only its own exported folder (its client
    domain and the public set, FedFR's default), the run ends with every node's reply."""
    import subprocess
    import sys

    work = tmp_path / "launch-reid"
    cmd = [sys.executable, "-m", "server.launch", "--num-supernodes", "2", "--work", str(work),
           "--run-config", format_run_config(REID_TINY)]
    try:
        res = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], text=True,
                             capture_output=True, timeout=900, start_new_session=True)
    finally:
        for pid in _pids_mentioning(str(work)):  # never leave anything behind, even on failure
            os.kill(pid, signal.SIGKILL)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    log = res.stderr
    assert "--enable-supernode-auth" in log and "--ssl-certfile" in log  # the secured SuperLink
    report = json.loads((work / "output" / "report.json").read_text())
    assert report["config"]["task"] == "reid"
    [r1] = report["rounds"]
    assert (r1["nodes-expected"], r1["nodes-replied"], r1["nodes-failed"]) == (2, 2, 0)
    final = report["final"]
    assert report["status"]["status"] == "ok" and not report["failures"]["final-evaluation"]
    for name in ("synth-market", "synth-duke"):  # each client evaluated on its own node
        assert 0 <= final["personalized"][f"{name}.mAP"] <= 1, name
    assert 0 <= final["generic"]["synth-viper.mAP"] <= 1
    for i, (own, other) in enumerate((("synth-market", "synth-duke"),
                                      ("synth-duke", "synth-market"))):
        folder = work / "nodes" / f"client-{i:04d}"
        doc = json.loads((folder / "node.json").read_text())
        assert doc["datasets"] == [own, "synth-public"] and doc["partition-id"] == i
        assert doc["split-digest"] == report["split"]["digest"]
        held = sorted(p.name.rsplit("-", 1)[0] for p in (folder / "reid-synthetic").iterdir())
        assert held == sorted(doc["datasets"])  # nothing else was written there during the run
        assert f'data-dir="{folder}"' in log  # SuperNode i was given this folder only
        assert not list(folder.rglob(f"*{other}*"))
    assert "synth-market mAP" in res.stdout and "| 1 | 2 | 2 | 0 |" in res.stdout
