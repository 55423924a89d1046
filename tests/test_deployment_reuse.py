"""A local Flower deployment kept between runs (server.simulate --keep) and stopped after."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server import simulate


def _fake_superlink(home: Path) -> subprocess.Popen:
    """A process whose command line looks like the local SuperLink of ``home`` (no server)."""
    code = "import time; time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code, "flower-superlink", "--log-file",
                             str(home / "local-superlink" / "superlink.log")],
                            start_new_session=True)


def _wait_seen(home: Path, pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if simulate.superlink_pids(home) == [pid]:
            return True
        time.sleep(0.05)
    return False


def _wait_gone(home: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not simulate.superlink_pids(home):
            return True
        time.sleep(0.1)
    return False


def test_a_kept_deployment_is_reused_only_when_it_answers_with_the_same_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(simulate, "start_superlink", lambda *a, **k: 0)  # no real server
    state, reused = simulate.ensure_deployment(home)
    assert not reused and json.loads((home / "deployment.json").read_text()) == state
    proc = _fake_superlink(home)
    try:
        assert _wait_seen(home, proc.pid)
        monkeypatch.setattr(simulate, "superlink_healthy", lambda port: True)
        again, reused = simulate.ensure_deployment(home)
        assert reused and again == state  # same ports: flwr run finds the running SuperLink
        monkeypatch.setenv("FEDFR_NUM_THREADS", "7")  # the kept processes inherited another env
        fresh, reused = simulate.ensure_deployment(home)
        assert not reused and fresh["env"] != state["env"]
        assert _wait_gone(home)  # the stale one was stopped
    finally:
        proc.kill()
        proc.wait()


def test_an_unhealthy_leftover_is_stopped_and_stop_forgets_the_ports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(simulate, "start_superlink", lambda *a, **k: 0)
    simulate.ensure_deployment(home)
    proc = _fake_superlink(home)
    try:
        assert _wait_seen(home, proc.pid)
        _, reused = simulate.ensure_deployment(home)  # nothing answers /health
        assert not reused and _wait_gone(home)
        simulate.stop_deployment(home)
        assert not (home / "deployment.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_ray_is_trimmed_unless_switched_off(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    env = simulate.deployment_env(tmp_path, tmp_path, 1, 2)
    assert all(env[k] == v for k, v in simulate.RAY_TRIM_ENV.items())
    monkeypatch.setenv("FEDFR_TRIM_RAY", "0")
    for k in simulate.RAY_TRIM_ENV:
        monkeypatch.delenv(k, raising=False)
    env = simulate.deployment_env(tmp_path, tmp_path, 1, 2)
    assert not any(k in env for k in simulate.RAY_TRIM_ENV)


def test_simulate_does_not_import_torch() -> None:
    """server.simulate waits for flwr run; the config check (torch) runs in a child process."""
    code = "import sys, server.simulate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(simulate.ROOT), check=True).stdout.strip()
    assert out == "False"


@pytest.mark.slow
def test_two_runs_share_one_deployment_and_stop_leaves_nothing(tiny_config: dict,
                                                               tmp_path: Path) -> None:
    from server.inprocess import format_run_config

    home = tmp_path / "flwr-home"
    conf = {**tiny_config, "num-clients": 0, "num-server-rounds": 1}
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2", "--flwr-home",
           str(home), "--keep", "--run-config", format_run_config(conf)]
    try:
        first = subprocess.run(cmd, cwd=simulate.ROOT, capture_output=True, text=True,
                               timeout=900)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        pids = simulate.superlink_pids(home)
        assert pids  # kept
        second = subprocess.run(cmd, cwd=simulate.ROOT, capture_output=True, text=True,
                                timeout=900)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "(deployment reused)" in second.stdout
        assert simulate.superlink_pids(home) == pids  # the same SuperLink served both
    finally:
        subprocess.run([sys.executable, "-m", "server.simulate", "--stop", "--flwr-home",
                        str(home)], cwd=simulate.ROOT, timeout=120)
    assert simulate.superlink_pids(home) == []


def test_stop_kills_what_ran_under_the_superlink_in_other_sessions(tmp_path: Path) -> None:
    """flwr-simulation runs in its own session and Ray below it: stopping the SuperLink's group
    alone left them running after an interrupted run."""
    home = tmp_path / "home"
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "time.sleep(60)")
    parent = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
              f"{stubborn!r}], start_new_session=True); print(p.pid, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent, "flower-superlink", "--log-file",
                             str(home / "local-superlink" / "superlink.log")],
                            start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        simulate.stop_superlinks(home, timeout=1.0)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while simulate._alive({child}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not simulate._alive({child})
    finally:
        proc.kill()
        proc.wait()
