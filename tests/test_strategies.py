"""Server-side aggregation: fedfr.aggregation and the FedFR / FedAvg Flower strategies.

Messages are built directly (no Ray, no SuperLink): configure_train produces the real
instruction messages through a small Grid stub, and replies are ``Message(..., reply_to=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from fedfr.aggregation import WeightedMean, check_update, check_weight, weighted_average
from fedfr.errors import ConfigError
from strategies import FedAvgBaseline, FedFR, get_strategy

NODES = [11, 22, 33]


# ---------------------------------------------------------------------------------------------
# helpers


class StubGrid(Grid):
    """Only get_node_ids is used by configure_train; the rest is never called."""

    def __init__(self, node_ids: list[int]) -> None:
        self._ids = list(node_ids)

    def set_run(self, run):  # noqa: ANN001, ANN201
        raise NotImplementedError

    @property
    def run(self):  # noqa: ANN201
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # noqa
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self._ids)

    def push_messages(self, messages):  # noqa: ANN001, ANN201
        raise NotImplementedError

    def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
        raise NotImplementedError


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instruction messages read the run/node id of the current ServerApp process."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)


def global_arrays(phi: bool = True) -> dict[str, np.ndarray]:
    """A tiny 'backbone' (conv + BN with int64 counter) and optionally phi (K_g=4, d=3)."""
    rng = np.random.default_rng(0)
    out = {
        "backbone.conv.weight": rng.normal(size=(2, 1, 3, 3)).astype(np.float32),
        "backbone.bn.weight": np.ones(2, np.float32),
        "backbone.bn.running_mean": np.zeros(2, np.float32),
        "backbone.bn.num_batches_tracked": np.array(5, dtype=np.int64),
    }
    if phi:
        out["phi"] = rng.normal(size=(4, 3)).astype(np.float32)
    return out


def client_arrays(i: int, phi: bool = True) -> dict[str, np.ndarray]:
    """Client i's update: the global arrays shifted by a client-specific amount."""
    out = {}
    for k, v in global_arrays(phi).items():
        if v.dtype.kind == "f":
            out[k] = (v + 0.5 * (i + 1) + 0.01 * np.arange(v.size).reshape(v.shape)).astype(v.dtype)
        else:
            out[k] = np.asarray(v + 3 * (i + 1), dtype=v.dtype)  # 8, 11, 14 local BN steps
    return out


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def metrics(n: int, hn: int = 0, steps: int = 1, **extra: object) -> MetricRecord:
    values = {"num-examples": n, "num-hard-negatives": hn, "num-steps": steps}
    values.update(extra)
    return MetricRecord(values)


def configure(strategy: FedFR, phi: bool = True, server_round: int = 1) -> dict[int, Message]:
    msgs = strategy.configure_train(
        server_round, to_record(global_arrays(phi)), ConfigRecord({"lr": 0.1}), StubGrid(NODES)
    )
    return {m.metadata.dst_node_id: m for m in msgs}


def reply(instruction: Message, arrays: dict[str, np.ndarray], mr: MetricRecord) -> Message:
    content = RecordDict({"arrays": to_record(arrays), "metrics": mr})
    return Message(content, reply_to=instruction)


COUNTS = {11: 10, 22: 30, 33: 60}  # N_l per node


def good_replies(sent: dict[int, Message], phi: bool = True) -> list[Message]:
    return [
        reply(sent[node], client_arrays(i, phi), metrics(COUNTS[node], hn=i + 1, steps=4))
        for i, node in enumerate(NODES)
    ]


def hand_mean(nodes: list[int], phi: bool = True) -> dict[str, np.ndarray]:
    """sum_i N_i x_i / sum_i N_i in float64, from the clients' arrays (eq. 7.2 / 7.4)."""
    idx = {node: NODES.index(node) for node in nodes}
    total = sum(COUNTS[n] for n in nodes)
    keys = global_arrays(phi).keys()
    return {
        k: sum(COUNTS[n] * client_arrays(idx[n], phi)[k].astype(np.float64) for n in nodes) / total
        for k in keys
    }


# ---------------------------------------------------------------------------------------------
# fedfr.aggregation


def test_weighted_average_matches_hand_computation() -> None:
    a = {"w": np.array([1.0, 2.0], np.float32), "n": np.array(10, np.int64)}
    b = {"w": np.array([4.0, 8.0], np.float32), "n": np.array(13, np.int64)}
    out = weighted_average([a, b], [1, 2])
    # (1*1 + 2*4)/3 = 3, (1*2 + 2*8)/3 = 6; (10 + 26)/3 = 12
    np.testing.assert_array_equal(out["w"], np.array([3.0, 6.0], np.float32))
    assert out["w"].dtype == np.float32
    assert isinstance(out["n"], np.ndarray) and out["n"].shape == ()  # 0-d stays an array
    assert out["n"].dtype == np.int64 and int(out["n"]) == 12
    # non-integral integer mean is rounded: (10*1 + 13*1)/2 = 11.5 -> 12 (round half to even)
    assert int(weighted_average([a, b], [1, 1])["n"]) == 12
    assert int(weighted_average([a, b], [3, 1])["n"]) == 11  # 43/4 = 10.75


def test_weighted_average_accumulates_in_float64() -> None:
    # 1e8 + 1 is not representable in float32; a float32 running sum of 1e8, 1, -1e8 would lose it
    xs = [{"x": np.array([v], np.float32)} for v in (1e8, 3.0, -1e8)]
    out = weighted_average(xs, [1.0, 1.0, 1.0])
    assert out["x"][0] == pytest.approx(1.0)


def test_weighted_average_rejects_bad_input() -> None:
    a = {"w": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="at least one"):
        weighted_average([], [])
    with pytest.raises(ValueError, match="2 weights"):
        weighted_average([a], [1, 2])
    with pytest.raises(ValueError, match="must be > 0"):
        weighted_average([a, a], [1, 0])
    with pytest.raises(ValueError, match="keys differ"):
        weighted_average([a, {"v": np.zeros(2, np.float32)}], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        weighted_average([a, {"w": np.zeros(3, np.float32)}], [1, 1])


def test_weighted_mean_bad_update_leaves_state_untouched() -> None:
    acc = WeightedMean()
    acc.add({"w": np.array([2.0])}, 1)
    with pytest.raises(ValueError):
        acc.add({"w": np.array([1.0, 1.0])}, 5)
    acc.add({"w": np.array([5.0])}, 2)
    assert acc.count == 2 and acc.total_weight == 3.0
    np.testing.assert_allclose(acc.result()["w"], [4.0])


def test_check_update_reasons() -> None:
    spec = {"a": ((2, 3), np.dtype(np.float32)), "n": ((), np.dtype(np.int64))}
    good = {"a": np.zeros((2, 3), np.float32), "n": np.array(1, np.int64)}
    assert check_update(good, spec) is None
    # float64 for a float32 key is the same kind: accepted (cast back on averaging)
    assert check_update({**good, "a": np.zeros((2, 3))}, spec) is None
    assert check_update({"a": good["a"]}, spec) == "missing keys ['n']"
    assert check_update({**good, "z": good["n"]}, spec) == "unexpected keys ['z']"
    assert check_update({"a": good["a"], "z": good["n"]}, spec) == (
        "missing keys ['n']; unexpected keys ['z']"
    )
    assert check_update({**good, "a": np.zeros((3, 2), np.float32)}, spec) == (
        "key 'a': shape (3, 2), expected (2, 3)"
    )
    nan = good["a"].copy()
    nan[1, 2] = np.nan
    assert check_update({**good, "a": nan}, spec) == "key 'a': non-finite values"
    inf = good["a"].copy()
    inf[0, 0] = -np.inf
    assert check_update({**good, "a": inf}, spec) == "key 'a': non-finite values"
    assert check_update({**good, "n": np.array(1.0)}, spec) == (
        "key 'n': dtype float64, expected int64"
    )
    assert "expected an ndarray" in check_update({**good, "a": [[0.0] * 3] * 2}, spec)
    many = {f"k{i}": np.zeros(1) for i in range(8)}
    assert check_update(many, {}) == (
        "unexpected keys ['k0', 'k1', 'k2', 'k3', 'k4', ... (+3 more)]"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(None, "missing"), (0, "> 0"), (-3, "> 0"), (float("nan"), "not finite"),
     (float("inf"), "not finite"), (True, "bool"), ([1, 2], "list"), ("5", "str")],
)
def test_check_weight_rejects(value: object, fragment: str) -> None:
    reason = check_weight(value)
    assert reason is not None and fragment in reason


def test_check_weight_accepts() -> None:
    for ok in (1, 0.5, np.int64(7), np.float32(2.0)):
        assert check_weight(ok) is None


# ---------------------------------------------------------------------------------------------
# strategies


def test_fedfr_aggregates_weighted_by_num_examples() -> None:
    strategy = FedFR()
    sent = configure(strategy)
    assert set(sent) == set(NODES)
    assert set(sent[11].content.keys()) == {"arrays", "config"}
    arrays, mr = strategy.aggregate_train(1, good_replies(sent))
    assert arrays is not None and mr is not None
    want = hand_mean(NODES)
    got = {k: v.numpy() for k, v in arrays.items()}
    assert list(got) == list(global_arrays())  # keys in the order sent
    for k in ("backbone.conv.weight", "backbone.bn.weight", "backbone.bn.running_mean", "phi"):
        assert got[k].dtype == np.float32  # float32 stays float32
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
    # int64 counter: (10*8 + 30*11 + 60*14)/100 = 12.5 -> 12 (round half to even)
    assert got["backbone.bn.num_batches_tracked"].dtype == np.int64
    assert int(got["backbone.bn.num_batches_tracked"]) == 12
    # phi weighted by N_l too: an explicit hand check of one entry (eq. 7.4)
    phis = [client_arrays(i)["phi"][0, 0] for i in range(3)]
    assert got["phi"][0, 0] == pytest.approx((10 * phis[0] + 30 * phis[1] + 60 * phis[2]) / 100)
    assert dict(mr) == {
        "num-examples": 100, "num-hard-negatives": 1 + 2 + 3, "num-steps": 12,
        "num-replies": 3, "num-failures": 0,
    }
    assert strategy.failures[1] == []


def test_fedavg_baseline_equals_flower_fedavg() -> None:
    ours = FedAvgBaseline()
    sent = configure(ours, phi=False)
    replies = good_replies(sent, phi=False)
    arrays, _ = ours.aggregate_train(1, replies)
    flower_arrays, _ = FedAvg().aggregate_train(1, replies)
    assert arrays is not None and flower_arrays is not None
    assert set(arrays.keys()) == set(flower_arrays.keys()) == set(global_arrays(phi=False))
    for k, theirs in flower_arrays.items():
        mine, ref = arrays[k].numpy(), theirs.numpy()
        if mine.dtype.kind == "f":
            np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-6)
        else:  # Flower returns the float mean (12.5) of an int key; we round it back to int64
            assert ref == pytest.approx(12.5) and int(mine) == int(np.rint(ref))


@pytest.mark.parametrize(
    ("bad_case", "fragment"),
    [
        ("missing_key", "missing keys ['backbone.bn.weight']"),
        ("extra_key", "unexpected keys ['backbone.extra']"),
        ("wrong_shape", "key 'phi': shape (5, 3), expected (4, 3)"),
        ("nan", "key 'backbone.conv.weight': non-finite values"),
        ("missing_weight", "metrics lack the weight 'num-examples'"),
        ("zero_weight", "metric 'num-examples': weight 0 must be > 0"),
        ("extra_record", "record keys ['arrays', 'metrics', 'state']"),
        ("wrong_dtype", "key 'backbone.bn.num_batches_tracked': dtype float32, expected int64"),
        ("extra_metric", "unexpected ['loss']"),
        ("negative_count", "metric 'num-steps': -1 is not a non-negative integer"),
    ],
)
def test_bad_reply_is_rejected_and_others_aggregated(
    bad_case: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = FedFR()
    sent = configure(strategy)
    replies = good_replies(sent)[:2]  # nodes 11 and 22 are fine
    arrays = client_arrays(2)
    mr = metrics(60, hn=3, steps=4)
    content_extra = None
    if bad_case == "missing_key":
        del arrays["backbone.bn.weight"]
    elif bad_case == "extra_key":
        arrays["backbone.extra"] = np.zeros(1, np.float32)
    elif bad_case == "wrong_shape":
        arrays["phi"] = np.zeros((5, 3), np.float32)
    elif bad_case == "nan":
        arrays["backbone.conv.weight"][0, 0, 1, 1] = np.nan
    elif bad_case == "missing_weight":
        mr = MetricRecord({"num-hard-negatives": 3, "num-steps": 4})
    elif bad_case == "zero_weight":
        mr = metrics(0)
    elif bad_case == "extra_record":
        content_extra = ConfigRecord({"note": "hi"})
    elif bad_case == "wrong_dtype":
        arrays["backbone.bn.num_batches_tracked"] = np.array(14.0, np.float32)
    elif bad_case == "extra_metric":
        mr = metrics(60, loss=0.3)
    elif bad_case == "negative_count":
        mr = metrics(60, steps=-1)
    content = RecordDict({"arrays": to_record(arrays), "metrics": mr})
    if content_extra is not None:
        content["state"] = content_extra
    replies.append(Message(content, reply_to=sent[33]))

    with caplog.at_level(logging.WARNING):
        out, mr_out = strategy.aggregate_train(1, replies)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("node 33" in w and fragment in w for w in warnings), warnings
    assert len(strategy.failures[1]) == 1
    failure = strategy.failures[1][0]
    assert failure["node_id"] == 33 and fragment in failure["reason"]
    # the two good replies are averaged on their own (weights 10 and 30)
    assert out is not None and mr_out is not None
    want = hand_mean([11, 22])
    for k, v in out.items():
        np.testing.assert_allclose(v.numpy(), want[k] if k != "backbone.bn.num_batches_tracked"
                                   else np.rint(want[k]), rtol=1e-6, atol=1e-6)
    assert mr_out["num-examples"] == 40 and mr_out["num-replies"] == 2
    assert mr_out["num-failures"] == 1 and mr_out["num-hard-negatives"] == 3


def test_error_reply_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    strategy = FedFR()
    sent = configure(strategy)
    replies = good_replies(sent)[:2] + [Message(Error(0, "client crashed"), reply_to=sent[33])]
    with caplog.at_level(logging.WARNING):
        out, mr = strategy.aggregate_train(1, replies)
    assert any("node 33" in r.getMessage() and "client crashed" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    assert strategy.failures[1] == [
        {"node_id": 33, "reason": "error reply (code 0): client crashed"}
    ]
    assert out is not None and mr is not None
    assert mr["num-replies"] == 2 and mr["num-failures"] == 1 and mr["num-examples"] == 40
    np.testing.assert_allclose(out["phi"].numpy(), hand_mean([11, 22])["phi"], rtol=1e-6)


def test_below_min_train_nodes_keeps_previous_model(caplog: pytest.LogCaptureFixture) -> None:
    strategy = FedFR(min_train_nodes=3)
    sent = configure(strategy)
    replies = good_replies(sent)
    replies[0] = Message(Error(1, "timeout"), reply_to=sent[11])
    bad = client_arrays(1)
    bad["phi"] = bad["phi"][:2]
    replies[1] = reply(sent[22], bad, metrics(30))
    with caplog.at_level(logging.WARNING):
        assert strategy.aggregate_train(1, replies) == (None, None)
    assert any("keeping the previous global model" in r.getMessage() for r in caplog.records)
    assert [f["node_id"] for f in strategy.failures[1]] == [11, 22]
    assert "shape (2, 3)" in strategy.failures[1][1]["reason"]
    # no replies at all, even with min_train_nodes=0
    zero = FedFR(min_train_nodes=0)
    configure(zero)
    assert zero.aggregate_train(1, []) == (None, None)


def test_failures_are_kept_per_round() -> None:
    strategy = FedFR()
    sent = configure(strategy, server_round=1)
    strategy.aggregate_train(1, good_replies(sent)[:2] + [Message(Error(2, "x"),
                                                                  reply_to=sent[33])])
    sent = configure(strategy, server_round=2)
    strategy.aggregate_train(2, good_replies(sent))
    assert [f["node_id"] for f in strategy.failures[1]] == [33]
    assert strategy.failures[2] == []
    with pytest.raises(RuntimeError, match="round 1"):
        strategy.aggregate_train(1, [])  # round 1's layout is no longer the one sent


def test_layout_contract_is_enforced() -> None:
    with pytest.raises(ValueError, match="backbone only"):
        configure(FedAvgBaseline(), phi=True)
    with pytest.raises(ValueError, match="'phi'"):
        configure(FedFR(), phi=False)
    stray = to_record({**global_arrays(), "head.weight": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="head.weight"):
        FedFR().expect_arrays(1, stray)


def test_get_strategy_and_config_errors() -> None:
    assert type(get_strategy("fedfr")) is FedFR
    baseline = get_strategy("fedavg", min_train_nodes=3, fraction_train=0.5)
    assert type(baseline) is FedAvgBaseline and baseline.min_train_nodes == 3
    assert baseline.weighted_by_key == "num-examples"
    with pytest.raises(ConfigError, match="fedprox"):
        get_strategy("fedprox")
    with pytest.raises(ConfigError, match="arrayrecord_key"):
        FedFR(arrayrecord_key="params")
    with pytest.raises(ConfigError, match="fraction_train"):
        FedFR(fraction_train=1.5)


def test_torch_state_dict_round_trip() -> None:
    """A real module's state_dict (float32 params, BN buffers, int64 counter) averages and loads."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(3)]
    for i, net in enumerate(nets):
        net.train()
        for _ in range(i + 1):  # 1, 2, 3 BN updates
            net(torch.randn(4, 3))

    def record(net: torch.nn.Module) -> ArrayRecord:
        return ArrayRecord({f"backbone.{k}": v for k, v in net.state_dict().items()})
    strategy = FedAvgBaseline()
    sent = {
        m.metadata.dst_node_id: m
        for m in strategy.configure_train(1, record(nets[0]), ConfigRecord(), StubGrid(NODES))
    }
    replies = [
        Message(RecordDict({"arrays": record(net), "metrics": metrics(COUNTS[node])}),
                reply_to=sent[node])
        for net, node in zip(nets, NODES, strict=True)
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    state = {k.removeprefix("backbone."): v for k, v in arrays.to_torch_state_dict().items()}
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    target.load_state_dict(state)
    assert state["1.num_batches_tracked"].dtype == torch.int64
    assert int(state["1.num_batches_tracked"]) == 2  # (10*1 + 30*2 + 60*3)/100 = 2.5 -> 2
    weights = [net.state_dict()["0.weight"].double() for net in nets]
    want = sum(COUNTS[n] * w for w, n in zip(weights, NODES, strict=True))
    torch.testing.assert_close(state["0.weight"], (want / 100).float())
    assert state["1.running_var"].dtype == torch.float32
