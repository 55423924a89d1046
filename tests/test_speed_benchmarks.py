"""Smoke tests of the speed benchmarks (the measurements themselves live in benchmarks/)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import memory, mining, overhead
from benchmarks.procmon import measure, role_of
from benchmarks.speed_common import TINY_WORKLOAD

#: a parent that starts a detached grandchild (own session) and exits at once; the grandchild
#: holds ~60 MB and burns CPU, so only a tree-wide monitor sees it
DETACHED = textwrap.dedent("""
    import subprocess, sys
    child = '''
    import time
    block = bytearray(60 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    time.sleep(0.5)
    '''
    subprocess.Popen([sys.executable, '-c', child], start_new_session=True)
""")


def test_procmon_follows_detached_descendants() -> None:
    m = measure([sys.executable, "-c", DETACHED], interval=0.05)
    assert m.returncode == 0
    assert m.cpu_s >= 0.25  # the grandchild's CPU time was collected after it was re-parented
    assert max(p.peak_bytes for p in m.procs.values()) >= 60 * 2**20
    assert m.tree_peak_bytes >= 60 * 2**20
    assert m.wall_s < 30 and m.leftover == []
    assert len(m.procs) >= 2


def test_roles_by_command_line() -> None:
    assert role_of("/v/bin/python /v/bin/flwr-simulation --runtime-api-address x") == "driver"
    assert role_of("ray::ClientAppActor.run") == "actor"
    assert role_of("/v/ray/core/src/ray/raylet/raylet --x default_worker.py") == "ray"
    assert role_of("/v/bin/python /v/bin/flower-superlink --insecure") == "flower"


def test_mining_benchmark_smoke(tmp_path: Path, shared_cache: Path) -> None:
    tiny = {k: v for k, v in TINY_WORKLOAD.items() if k != "min-train-nodes"}
    res = mining.run(tmp_path, [1, 3], 1, shared_cache, overrides={**tiny, "num-clients": 3})
    assert [r["clients"] for r in res["rows"]] == [1, 3]
    assert all(r["identical_sets"] for r in res["rows"])
    assert res["rows"][1]["computed"] == 1  # one public embedding for three clients
    saved = json.loads((tmp_path / "mining.json").read_text())
    assert saved["rows"][0]["cached"]["mining_s"]["median"] > 0
    assert "| 3 |" in (tmp_path / "mining.md").read_text()


@pytest.mark.slow
def test_overhead_benchmark_smoke(tmp_path: Path, shared_cache: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    micro = {**TINY_WORKLOAD, "num-clients": 2, "num-server-rounds": 1}
    monkeypatch.setitem(overhead.CONFIGS, "micro", micro)
    res = overhead.run(tmp_path, ["micro"], 1, 1, shared_cache)
    s = res["summary"]["micro"]
    assert s["max_abs_model_difference"] == 0.0  # (a) and (b) trained the same model
    assert s["ratio"]["wall"]["median"] > 0 and s["flwr"]["cpu_s"]["median"] > 0
    run = res["runs"]["micro"][0]
    assert run["flwr"]["roles"]["driver"]["processes"] == 1
    assert run["flwr"]["roles"]["actor"]["peak_bytes"] > 0
    assert run["flwr"]["leftover_processes"] == 0
    assert run["flwr_cold"]["phases"]["SuperLink"] is not None  # the cold run started one
    assert run["flwr"]["phases"]["SuperLink"] is None  # the kept deployment was reused
    assert run["flwr"]["phases"]["first reply"] > run["flwr"]["phases"]["loop start"]
    assert (tmp_path / "overhead.md").exists()
    from server.simulate import superlink_pids
    assert superlink_pids(tmp_path / "work-overhead" / "flwr-home") == []  # stopped when done


@pytest.mark.slow
def test_memory_benchmark_smoke(tmp_path: Path, shared_cache: Path) -> None:
    res = memory.run(tmp_path, [2, 3], 1, 1, shared_cache)
    assert [r["clients"] for r in res["rows"]] == [2, 3]
    assert all(r["driver"]["median"] > 0 and r["actor"]["median"] > 0 for r in res["rows"])
    assert set(res["bytes_per_client"]) == set(memory.ROLES)


# --- the optimised code paths that are not about results -----------------------------------
class _Reply:
    def __init__(self, mid: str) -> None:
        self.metadata = type("Meta", (), {"reply_to_message_id": mid, "src_node_id": 1})()


class _SlowGrid:
    """Replies become available at given delays after the push (a fake SuperLink)."""

    def __init__(self, delays: list[float]) -> None:
        self.delays, self.pulls = delays, 0

    def push_messages(self, messages):
        import time
        self.t0 = time.monotonic()
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, ids):
        import time
        self.pulls += 1
        now = time.monotonic() - self.t0
        return [_Reply(m) for m in ids if now >= self.delays[int(m[1:])]]


def test_replies_stream_as_they_arrive_without_flowers_3_s_sleep() -> None:
    import time

    from server.messaging import CountingStream, stream_replies

    grid = _SlowGrid([0.0, 0.3, 0.6])
    t0 = time.monotonic()
    stream = CountingStream(stream_replies(grid, [None] * 3, timeout=10))
    got = [r.metadata.reply_to_message_id for r in stream]
    elapsed = time.monotonic() - t0
    assert got == ["m0", "m1", "m2"] and stream.count == 3
    assert elapsed < 1.5  # Flower's send_and_receive would return after >= 3 s
    # a reply that never comes: stop at the timeout with what arrived
    grid = _SlowGrid([0.0, 99.0])
    t0 = time.monotonic()
    got = list(stream_replies(grid, [None] * 2, timeout=0.4))
    assert len(got) == 1 and time.monotonic() - t0 < 1.5


def test_staged_app_holds_the_sources_only(tmp_path: Path) -> None:
    from server.simulate import stage_app

    app = tmp_path / "app"
    (app / ".venv" / "lib").mkdir(parents=True)
    (app / ".venv" / "lib" / "big.py").write_text("x = 1\n")
    (app / "pkg" / "__pycache__").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"0")
    (app / "cache").mkdir()
    (app / "cache" / "data.pt").write_bytes(b"0")
    (app / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    staged = stage_app(app, tmp_path / "staged")
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == ["pkg/__init__.py", "pyproject.toml"]
