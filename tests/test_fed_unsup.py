"""The few-label re-ID workloads (``semi-reid``: SGC-DPL, ``unsup-reid``: HSR) through the unchanged
federation: one SGC-DPL step / HSR iteration per round on each site's own images, and the message
audit (a reply holds the backbone and the counters, nothing of the site's features, distances,
clusters, pseudo-labels or classifiers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fedfr.config import resolve
from fedfr.errors import ConfigError
from fedfr.workloads import get_workload
from tests.federation_fixtures import Recording
from tests.test_reid_workload import write_market_domains

H, W = 16, 8
DATASETS = {"fu-a": 11, "fu-b": 12, "fu-unseen": 13, "fu-public": 14}


@pytest.fixture(scope="module")
def fu_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Market-layout domains: 6 training identities x 3 cameras x 2 images per site."""
    return write_market_domains(tmp_path_factory.mktemp("fed-unsup-data"),
                                {name: (seed, 12) for name, seed in DATASETS.items()})


def fu_config(root: Path, tmp_path: Path, task: str, **over) -> dict:
    conf = {"task": task, "data-root": str(root), "reid-clients": "fu-a,fu-b",
            "reid-unseen": "fu-unseen", "reid-public": "fu-public", "reid-height": H,
            "reid-width": W, "num-clients": 2, "min-train-nodes": 2, "num-server-rounds": 2,
            "pretrain-epochs": 1, "local-epochs": 1, "batch-size": 8, "reid-instances": 2,
            "eval-batch-size": 64, "strategy": "fedavg", "contrastive": False, "dfc": False,
            "final-eval-models": "global,local", "output-dir": str(tmp_path / "out"),
            "cache-dir": str(tmp_path / "cache")}
    conf.update(over)
    return conf


def _run(conf: dict) -> tuple[dict, Recording]:
    from server.federation import run_federation
    from server.inprocess import InProcessGrid

    rec = Recording()
    cfg = resolve(conf)
    return run_federation(InProcessGrid(rec, cfg.num_clients, cfg.to_dict()), cfg), rec


def audit(rec: Recording) -> int:
    """Every train reply holds exactly the sent ``backbone.*`` arrays with their shapes and the
    three counters; every evaluate reply holds scalars. Returns the number of train replies."""
    trains = 0
    for kind, sent, reply in rec.log:
        assert set(sent.keys()) == {"arrays", "config"}
        assert all(k.startswith("backbone.") for k in sent["arrays"].keys())  # FedAvg: no phi
        if kind == "train":
            trains += 1
            assert set(reply.keys()) == {"arrays", "metrics"}
            assert set(reply["arrays"].keys()) == set(sent["arrays"].keys())
            for key, arr in reply["arrays"].items():  # the same tensors' shapes, nothing new
                assert tuple(arr.shape) == tuple(sent["arrays"][key].shape), key
            assert set(reply["metrics"].keys()) == {"num-examples", "num-hard-negatives",
                                                    "num-steps"}
            assert reply["metrics"]["num-examples"] > 0 and reply["metrics"]["num-steps"] > 0
        else:
            assert kind == "evaluate" and set(reply.keys()) == {"metrics"}
            assert all(isinstance(v, (int, float)) for v in reply["metrics"].values())
    return trains


@pytest.mark.parametrize("task,over", [
    ("semi-reid", {"semi-ratio": "1/3", "semi-init-rounds": 0}),  # round 1 = iteration 1
    ("unsup-reid", {"unsup-rho": 0.2, "unsup-labelled-sites": 1}),  # site 0: a labelled anchor
])
def test_few_label_federation_sends_only_the_backbone(fu_root: Path, tmp_path: Path, task: str,
                                                      over: dict) -> None:
    """One round (a clustering step on each unlabelled site) with the message audit; the node
    keeps its classifier rows: semi-reid the C^l = 2 labelled ones (1/3 of 6), never the
    clusters'; unsup-reid none on its HSR site, the 6 identities' on its labelled anchor."""
    import torch

    report, rec = _run(fu_config(fu_root, tmp_path, task, **{"num-server-rounds": 1}, **over))
    assert [r["round"] for r in report["rounds"]] == [1]
    assert all(r["aggregated"] and r["num-replies"] == 2 for r in report["rounds"])
    assert audit(rec) == 2
    final = report["final"]["personalized_by_model"]
    for model in ("global", "local"):
        assert 0.0 <= final[model]["fu-a.mAP"] <= 1.0
    assert math.isfinite(report["final"]["generic"]["mAP"])
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert [c["name"] for c in split["clients"]] == ["fu-a", "fu-b"]
    states = sorted((tmp_path / "out" / "client-state").rglob("state-r0001.pt"))
    assert len(states) == 2
    rows = sorted(torch.load(p, weights_only=False)["w"].shape[0] for p in states)
    assert rows == ([2, 2] if task == "semi-reid" else [0, 6])
    for path in states:
        state = torch.load(path, weights_only=False)
        assert state["last_round"] == 1 and state["prev_backbone"]


def test_few_label_tasks_refuse_what_does_not_apply(fu_root: Path, tmp_path: Path) -> None:
    semi, unsup = get_workload("semi-reid"), get_workload("unsup-reid")
    with pytest.raises(ConfigError, match="'strategy' = 'fedfr' is not supported by task "
                                          "'semi-reid'"):
        semi.check_config(resolve(fu_config(fu_root, tmp_path, "semi-reid", strategy="fedfr")))
    with pytest.raises(ConfigError, match="'dfc' = True is not supported by task 'unsup-reid'"):
        unsup.check_config(resolve(fu_config(fu_root, tmp_path, "unsup-reid", dfc=True)))
    with pytest.raises(ConfigError, match="'semi-ratio'.*'2/1'"):
        semi.check_config(resolve(fu_config(fu_root, tmp_path, "semi-reid",
                                            **{"semi-ratio": "2/1"})))
    with pytest.raises(ConfigError, match="'unsup-labelled-sites' = 2.*at least one unlabelled"):
        unsup.check_config(resolve(fu_config(fu_root, tmp_path, "unsup-reid",
                                             **{"unsup-labelled-sites": 2})))
    with pytest.raises(ConfigError, match="'unsup-method' = 'baseline' applies to task "
                                          "'unsup-reid', not 'semi-reid'"):
        resolve(fu_config(fu_root, tmp_path, "semi-reid", **{"unsup-method": "baseline"}))
    with pytest.raises(ConfigError, match="'semi-clustering': expected one of"):
        resolve({"task": "semi-reid", "semi-clustering": "kmeans"})
    with pytest.raises(ConfigError, match="'semi-init': expected one of"):
        resolve({"task": "semi-reid", "semi-init": "imagenet"})
    from fedfr.reid.semi.federated import semi_config

    scfg = semi_config(resolve({"task": "semi-reid", "semi-init": "labelled",
                                "semi-centre-cameras": False}))
    assert scfg.init == "labelled" and not scfg.centre_cameras and scfg.tau_pairs == "exemplar"
    assert semi_config(resolve({"task": "semi-reid"})).centre_cameras
    with pytest.raises(ConfigError, match="'unsup-rho': a share of pairs"):
        resolve({"task": "unsup-reid", "unsup-rho": 1.5})
    # a real site's data is on its node, which refuses before training (the server, which does
    # not open it, checks synthetic sites only)
    from fedfr.workloads.base import NodeInfo

    few = resolve(fu_config(fu_root, tmp_path, "semi-reid", **{"semi-ratio": "1/6"}))
    semi.open_server_data(few)
    with pytest.raises(ConfigError, match="'semi-ratio' = '1/6': site fu-a has 6 training "
                                          "identities"):
        semi.train(few, NodeInfo(0, {}, tmp_path / "state"), None, 1, "x")
    with pytest.raises(ConfigError, match="'semi-ratio' = '1/12': site synth-market has"):
        semi.open_server_data(resolve({"task": "semi-reid", "semi-ratio": "1/12",
                                       "strategy": "fedavg", "contrastive": False, "dfc": False,
                                       "reid-synthetic-ids": 8, "reid-height": 32,
                                       "reid-width": 16, "cache-dir": str(tmp_path / "c")}))
    # the face digest does not change with the few-label keys at their defaults
    assert "semi-ratio" in resolve({}).to_dict()


def test_benchmark_tables_average_over_seeds(tmp_path: Path, capsys) -> None:
    import pandas as pd

    from benchmarks.fed_unsup import ROWS, main, markdown, summarise

    runs = pd.DataFrame([{"task": "unsup-reid", "row": row, "seed": seed, "seconds": 1.0,
                          "mAP": 0.1 * (i + 1) + 0.02 * seed, "rank1": 0.2,
                          "a.mAP": 0.1, "a.rank1": 0.2, "b.mAP": 0.3, "b.rank1": 0.4}
                         for seed in (0, 1) for i, row in enumerate(ROWS)])
    table = summarise(runs)
    first = table.iloc[0]
    assert first["row"] == "source only" and first["mAP"] == pytest.approx(0.11)
    assert first["mAP sd"] == pytest.approx(0.0141421, rel=1e-4)
    md = markdown(runs, ["a", "b"], "python -m benchmarks.fed_unsup --seeds 0,1", "note")
    assert "| unsup-reid | source only | 11.0 ± 1.4 | 20.0 ± 0.0 | 10.0 ± 0.0 |" in md
    assert md.startswith("Command: `python -m benchmarks.fed_unsup --seeds 0,1`")
    assert main(["--tasks", "video-reid", "--out", str(tmp_path)]) == 2
    assert "--tasks expects a subset" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown config key"):
        main(["--run-config", "semi-ratoi='1/3'", "--out", str(tmp_path)])


@pytest.mark.slow  # about a minute on the shared VM
def test_benchmark_quick_writes_every_row(tmp_path: Path) -> None:
    import pandas as pd

    from benchmarks.fed_unsup import ROWS, main

    assert main(["--quick", "--seeds", "0", "--out", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "fed_unsup_runs.csv")
    semi_rows = list(ROWS)  # unsup-reid has no labelled-only row (it has no labels)
    assert list(runs["row"]) == semi_rows + [r for r in ROWS if "labelled only" not in r]
    assert ((runs[["mAP", "rank1"]] >= 0) & (runs[["mAP", "rank1"]] <= 1)).all().all()
    md = (tmp_path / "fed_unsup.md").read_text()
    assert "| semi-reid | centralised |" in md and "| unsup-reid | site alone |" in md
