"""The workload seam: a task registered in this file runs through the unchanged Flower adapters.

The toy workload below (Gaussian class clusters, a linear "backbone", a private softmax
classifier per client) is defined here and nowhere else: registering it is all it takes for the
ClientApp, the ServerApp's round loop, the strategies, checkpoints/resume, the failure accounting
and the reports to run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord
from torch import nn

from fedfr.config import resolve
from fedfr.errors import ConfigError
from fedfr.workloads import (
    get_workload,
    register_workload,
    unregister_workload,
    workload_names,
)
from fedfr.workloads.base import NodeInfo, TrainOutcome, Workload
from server.federation import run_federation
from server.inprocess import InProcessGrid, run_inprocess
from strategies.records import pack_arrays, unpack_arrays
from tests.federation_fixtures import Recording

DIM, EMB, IDS, PER_ID = 8, 4, 5, 6


class _Split:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"toy": True, "digest": self.digest()}))

    def digest(self) -> str:
        return f"toy-{self.seed}"

    def summary(self) -> dict[str, Any]:
        return {"clients": "Gaussian clusters"}


class _Data:
    def __init__(self, seed: int) -> None:
        self.split = _Split(seed)


def _clusters(seed: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(IDS*PER_ID, DIM) points around IDS random centres; labels 0..IDS-1."""
    g = torch.Generator().manual_seed(seed * 1000 + group)
    centres = torch.randn(IDS, DIM, generator=g) * 3
    x = centres.repeat_interleave(PER_ID, 0) + torch.randn(IDS * PER_ID, DIM, generator=g)
    return x, torch.arange(IDS).repeat_interleave(PER_ID)


def _rank1(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out nearest-neighbour accuracy of L2-normalised features."""
    f = nn.functional.normalize(feats, dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-2.0)
    return float((labels[sim.argmax(1)] == labels).float().mean())


class ToyWorkload(Workload):
    """Linear embedding of Gaussian clusters: FedAvg only, no public data, no DFC."""

    name = "toy"
    supported = {"strategy": ("fedavg",), "hard-negatives": (False,), "contrastive": (False,),
                 "dfc": (False,)}
    eval_models = ("global", "local")

    def __init__(self) -> None:
        self.local: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self.seen_arrays: list[set[str]] = []

    def _model(self, backbone: dict[str, torch.Tensor] | None = None) -> nn.Linear:
        model = nn.Linear(DIM, EMB)
        if backbone is not None:
            model.load_state_dict(backbone)
        return model

    def open_server_data(self, cfg):
        return _Data(cfg.seed)

    def initial_arrays(self, cfg, data):
        torch.manual_seed(cfg.seed)
        return pack_arrays(self._model().state_dict(), None), {"toy": "random init"}

    def evaluate_generic(self, cfg, data, arrays: ArrayRecord) -> dict[str, float]:
        x, y = _clusters(cfg.seed, 999)  # unseen classes
        with torch.no_grad():
            return {"rank1": _rank1(self._model(unpack_arrays(arrays)[0])(x), y)}

    def train(self, cfg, node: NodeInfo, arrays, server_round, experiment_id) -> TrainOutcome:
        self.seen_arrays.append(set(arrays.keys()))
        x, y = _clusters(cfg.seed, node.partition_id)
        model = self._model(unpack_arrays(arrays)[0])
        head = nn.Linear(EMB, IDS)  # the private classifier: never sent
        opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1)
        steps = 0
        for _ in range(cfg.local_epochs * 10):
            loss = nn.functional.cross_entropy(head(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.local[(experiment_id, node.partition_id)] = sd
        return TrainOutcome(pack_arrays(sd, None), {"num-examples": len(x),
                                                    "num-hard-negatives": 0, "num-steps": steps})

    def evaluate(self, cfg, node, arrays, server_round, experiment_id, models):
        x, y = _clusters(cfg.seed, 100 + node.partition_id)  # the client's own test identities
        out = {}
        for name in models:
            sd = unpack_arrays(arrays)[0]
            if name == "local":
                sd = self.local.get((experiment_id, node.partition_id), sd)
            with torch.no_grad():
                out[f"{name}.rank1"] = _rank1(self._model(sd)(x), y)
        return out


TOY_CONFIG = {"task": "toy", "strategy": "fedavg", "hard-negatives": False,
              "contrastive": False, "dfc": False, "final-eval-models": "global,local",
              "num-server-rounds": 2, "min-train-nodes": 2}


@pytest.fixture
def toy() -> ToyWorkload:
    workload = ToyWorkload()
    register_workload(workload, replace=True)
    yield workload
    unregister_workload("toy")


def test_a_toy_workload_runs_through_the_generic_federation(toy: ToyWorkload,
                                                            tmp_path: Path) -> None:
    assert "toy" in workload_names() and get_workload("toy") is toy
    conf = {**TOY_CONFIG, "output-dir": str(tmp_path / "out")}
    rec = Recording()
    cfg = resolve(conf)
    report = run_federation(InProcessGrid(rec, 2, cfg.to_dict()), cfg)
    out = tmp_path / "out"
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["aggregated"] and r["num-replies"] == 2 for r in report["rounds"])
    assert report["pretraining"] == {"toy": "random init"}
    final = report["final"]
    assert final["personalized_model"] == "local"
    assert set(final["personalized_by_model"]) == {"global", "local"}
    # training the linear embedding separates unseen clusters better than its random init
    assert final["generic"]["rank1"] > report["pretrained"]["generic"]["rank1"]
    assert (out / "results.md").exists() and (out / "split.json").exists()
    assert list(pd.read_csv(out / "metrics.csv")["round"]) == [0, 1, 2]
    # the message audit: arrays out == arrays in (backbone.* only), counters, scalar metrics
    for kind, sent, reply in rec.log:
        assert set(sent.keys()) == {"arrays", "config"}
        if kind == "train":
            assert set(reply["arrays"].keys()) == set(sent["arrays"].keys())
            assert all(k.startswith("backbone.") for k in reply["arrays"].keys())
            assert set(reply["metrics"].keys()) == {"num-examples", "num-hard-negatives",
                                                    "num-steps"}
        else:
            assert set(reply.keys()) == {"metrics"}
    assert toy.seen_arrays and all(s == {"backbone.weight", "backbone.bias"}
                                   for s in toy.seen_arrays)
    # checkpoint/resume is generic too: one more round continues the same experiment
    more = run_inprocess({**conf, "num-server-rounds": 3}, num_nodes=2)
    assert more["experiment-id"] == report["experiment-id"]
    assert [r["round"] for r in more["rounds"]] == [1, 2, 3]


def test_unsupported_switches_are_refused_naming_key_and_task(toy: ToyWorkload,
                                                              tmp_path: Path) -> None:
    conf = {**TOY_CONFIG, "output-dir": str(tmp_path / "out")}
    for key, value in (("contrastive", True), ("strategy", "fedfr"), ("dfc", True),
                       ("hard-negatives", True)):
        with pytest.raises(ConfigError, match=f"'{key}'.*task 'toy'"):
            run_inprocess({**conf, key: value}, num_nodes=2)
    with pytest.raises(ConfigError, match="'final-eval-models'.*task 'toy'"):
        run_inprocess({**conf, "final-eval-models": "global,personal"}, num_nodes=2)
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_task_is_refused_and_face_is_the_default() -> None:
    with pytest.raises(ConfigError, match="'task'.*'face'"):
        resolve({"task": "cars"})
    cfg = resolve()
    assert cfg.task == "face" and get_workload("face").name == "face"
    # the task is part of the experiment digest (faces keep their pre-`task` digests)
    assert resolve({"task": "reid"}).digest() != cfg.digest()


def test_register_refuses_a_taken_name(toy: ToyWorkload) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_workload(ToyWorkload())
    with pytest.raises(TypeError):
        register_workload(object())
