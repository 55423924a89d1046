"""Clients side by side: the plan (actors x threads), push-order folding, equal final models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from server.inprocess import InProcessGrid, run_inprocess
from server.messaging import in_push_order
from server.simulate import parallel_settings, plan_parallel


def _msg(mid: str):
    return SimpleNamespace(metadata=SimpleNamespace(_message_id=mid))


def _reply(mid: str):
    return SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid))


def test_replies_are_folded_in_push_order_and_late_ones_follow(monkeypatch) -> None:
    sent = [_msg(f"m{i}") for i in range(4)]
    arrived = [_reply(m) for m in ("m2", "m0", "x", "m3", "m1")]
    got = [r.metadata.reply_to_message_id for r in in_push_order(sent, arrived)]
    assert got == ["m0", "x", "m1", "m2", "m3"]  # unknown ids pass through at once
    missing = [_reply(m) for m in ("m3", "m1")]  # m0 and m2 never come: held, then in order
    assert [r.metadata.reply_to_message_id for r in in_push_order(sent, missing)] == ["m1", "m3"]
    monkeypatch.setenv("FEDFR_REPLY_ORDER", "arrival")
    got = [r.metadata.reply_to_message_id for r in in_push_order(sent, arrived)]
    assert got == ["m2", "m0", "x", "m3", "m1"]


def test_the_plan_gives_small_models_one_thread_per_actor() -> None:
    assert plan_parallel(2, 4, "small_cnn") == (2, 1)
    assert plan_parallel(16, 40, "small_cnn") == (16, 1)
    assert plan_parallel(16, 3, "small_cnn") == (3, 1)  # never more actors than clients
    assert plan_parallel(16, 40, "iresnet50") == (4, 4)
    assert plan_parallel(2, 40, "iresnet50") == (1, 2)
    assert plan_parallel(8, 40, "small_cnn", threads=2) == (4, 2)
    fed, env, (actors, threads) = parallel_settings("auto", "num-clients=0", 3, {})
    assert f"client-resources-num-cpus={threads}" in fed
    assert f"init-args-num-cpus={actors * threads}" in fed and env["FEDFR_NUM_THREADS"] == "1"
    assert parallel_settings("off", "", 3, {}) == ("", {}, (0, 0))
    assert parallel_settings("auto", "", 3, {"FEDFR_NUM_THREADS": "1"})[1] == {}


class ReversedGrid(InProcessGrid):
    """Runs the clients last to first and hands replies back last first: the arrival order of
    parallel actors, at its most different from the sequential one."""

    def push_messages(self, messages):
        messages = list(messages)
        ids = list(reversed(super().push_messages(list(reversed(messages)))))
        return ids

    def pull_messages(self, message_ids):
        return list(reversed(list(super().pull_messages(message_ids))))


def _final(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final_model.pt", weights_only=True)


@pytest.mark.slow  # three federations: ~20 s on 2 quiet cores
def test_any_arrival_order_gives_the_sequential_model(tiny_config: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from clients.app import app as client_app
    from fedfr.config import resolve
    from server.federation import run_federation

    conf = {**tiny_config, "num-server-rounds": 2, "num-clients": 3}
    run_inprocess({**conf, "output-dir": str(tmp_path / "seq")})
    seq = _final(tmp_path / "seq")
    finals = {}
    for order in ("push", "arrival"):
        with monkeypatch.context() as m:
            if order == "arrival":
                m.setenv("FEDFR_REPLY_ORDER", "arrival")
            cfg = resolve({**conf, "output-dir": str(tmp_path / order)})
            run_federation(ReversedGrid(client_app, 3, cfg.to_dict()), cfg)
        finals[order] = _final(tmp_path / order)
    assert all(torch.equal(finals["push"][k], seq[k]) for k in seq)  # bit for bit
    # folded in arrival order: the float sum's order changes, nothing else (bounded)
    for k, v in seq.items():
        if v.is_floating_point():
            scale = float(v.abs().max()) + 1e-12
            assert float((finals["arrival"][k] - v).abs().max()) <= 1e-5 * scale, k


@pytest.mark.slow
def test_plain_loop_with_workers_equals_the_sequential_loop(tiny_config: dict,
                                                            tmp_path: Path) -> None:
    from benchmarks.plain_loop import run_plain

    conf = {**tiny_config, "num-server-rounds": 2, "num-clients": 3}
    a = run_plain({**conf, "output-dir": str(tmp_path / "a")}, tmp_path / "a", workers=1)
    b = run_plain({**conf, "output-dir": str(tmp_path / "b")}, tmp_path / "b", workers=2)
    ma, mb = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert json.dumps(a["final"], sort_keys=True) == json.dumps(b["final"], sort_keys=True)


@pytest.mark.slow
def test_flwr_run_with_parallel_actors_equals_the_sequential_run(tiny_config: dict,
                                                                 tmp_path: Path) -> None:
    from server.inprocess import format_run_config
    from server.simulate import ROOT, superlink_pids

    finals = []
    for mode in ("off", "2"):
        out = tmp_path / f"out-{mode}"
        conf = {**tiny_config, "num-clients": 0, "output-dir": str(out)}
        home = tmp_path / f"home-{mode}"
        cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "3", "--parallel",
               mode, "--flwr-home", str(home), "--run-config", format_run_config(conf)]
        # the same torch threads per client in both modes (--parallel sets 1 per actor unless
        # FEDFR_NUM_THREADS is given): intra-op threads change the order of float sums
        env = {**os.environ, "FEDFR_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert superlink_pids(home) == []
        finals.append(_final(out))
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
