"""The re-ID workload through the unchanged federation: Sec. 7.7's roles, the message audit,
the BN switch, FedFR's techniques on re-ID features and Table 7.5's report.

The datasets are tiny Market-1501-layout folders written here (identity = a colour pattern, each
camera its own colour cast) and read by the real Market parser through readers registered under
test names, so that a federation runs in seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clients.app import app as client_app
from fedfr.config import resolve
from fedfr.errors import ConfigError
from fedfr.reid.data.market1501 import read_market_layout
from fedfr.reid.data.registry import register_dataset, registered_reader
from fedfr.reid.report import table_7_5
from fedfr.workloads import get_workload
from server.federation import run_federation
from server.inprocess import InProcessGrid
from tests.federation_fixtures import (
    run_clients_on,
    run_recorded,
    split_without_client_records,
)

H, W = 16, 8
DATASETS = {"tiny-a": 1, "tiny-b": 2, "tiny-unseen": 3, "tiny-public": 4}


def _write_domain(root: Path, name: str, seed: int, num_ids: int = 8, cams: int = 3,
                  per_cam: int = 2) -> None:
    """Market layout: ids 1..num_ids/2 train, the rest test (1 query per camera, rest gallery)."""
    rng = np.random.default_rng(seed)
    base = root / name
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    cast = rng.uniform(-40, 40, size=(cams, 3))
    for pid in range(1, num_ids + 1):
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        for cam in range(cams):
            for k in range(per_cam):
                img = np.zeros((H, W, 3), np.float32)
                img[: H // 2] = top
                img[H // 2:] = bottom
                img += cast[cam] + rng.normal(0, 12, img.shape)
                arr = np.clip(img, 0, 255).astype(np.uint8)
                fname = f"{pid:04d}_c{cam + 1}s1_{k:06d}_00.jpg"
                if pid <= num_ids // 2:
                    sub = "bounding_box_train"
                else:
                    sub = "query" if k == 0 and cam < 2 else "bounding_box_test"
                Image.fromarray(arr).save(base / sub / fname, quality=95)


def write_market_domains(root: Path, domains: dict[str, tuple[int, int]]) -> Path:
    """``_write_domain`` for each ``name: (seed, num_ids)`` under ``root``, each registered (once
    per process) as a Market-layout dataset of that name; returns ``root``."""
    for name, (seed, num_ids) in domains.items():
        _write_domain(root, name, seed, num_ids=num_ids)
        if registered_reader(name) is None:
            def reader(root: Path, _name: str = name):
                return read_market_layout(Path(root) / _name, _name, num_cams=3, max_pid=9999,
                                          drop_junk=True, meta={"protocol": "market1501"})
            register_dataset(name)(reader)
    return root


@pytest.fixture(scope="module")
def tiny_reid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market_domains(tmp_path_factory.mktemp("reid-data"), {
        name: (seed, 12 if name == "tiny-public" else 8) for name, seed in DATASETS.items()})


def reid_config(root: Path, tmp_path: Path, **over) -> dict:
    conf = {"task": "reid", "data-root": str(root), "reid-clients": "tiny-a,tiny-b",
            "reid-unseen": "tiny-unseen", "reid-public": "tiny-public", "reid-height": H,
            "reid-width": W, "num-clients": 2, "min-train-nodes": 2, "num-server-rounds": 2,
            "pretrain-epochs": 1, "local-epochs": 1, "batch-size": 8, "reid-instances": 2,
            "eval-batch-size": 64, "hn-threshold": -1.0, "output-dir": str(tmp_path / "out"),
            "cache-dir": str(tmp_path / "cache")}
    conf.update(over)
    return conf


def test_reid_federation_end_to_end_with_the_message_audit(tiny_reid_root: Path,
                                                           tmp_path: Path) -> None:
    report, rec = run_recorded(reid_config(tiny_reid_root, tmp_path))
    out = tmp_path / "out"
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["aggregated"] and r["num-replies"] == 2 for r in report["rounds"])
    assert all(r["num-hard-negatives"] > 0 for r in report["rounds"])  # t_HN = -1: D_g joins
    by_model = report["final"]["personalized_by_model"]
    assert set(by_model) == {"global", "local", "personal"}
    for model in by_model.values():  # each client's own columns and the mean over clients
        for key in ("tiny-a.mAP", "tiny-a.rank1", "tiny-b.mAP", "tiny-b.rank1", "mAP", "mINP"):
            assert 0.0 <= model[key] <= 1.0, key
    gen = report["final"]["generic"]
    assert 0.0 <= gen["tiny-unseen.mAP"] <= 1.0 and gen["rank1"] == gen["tiny-unseen.rank1"]
    assert report["pretrained"]["personalized"]["tiny-a.mAP"] >= 0.0
    table = (out / "results.md").read_text()
    assert "tiny-a mAP" in table and "tiny-unseen R1" in table and "non-interpolated" in table
    split = json.loads((out / "split.json").read_text())
    assert [c["name"] for c in split["clients"]] == ["tiny-a", "tiny-b"]
    assert split["public"]["name"] == "tiny-public" and split["digest"] == report["split"]["digest"]
    # the audit: the backbone and Phi go back, nothing else; evaluation replies are scalars
    cfg = resolve(reid_config(tiny_reid_root, tmp_path))
    model = get_workload("reid")
    assert model.personal_model(cfg) == "personal"
    kinds = {k for k, _, _ in rec.log}
    assert kinds == {"train", "evaluate"}
    for kind, sent, reply in rec.log:
        assert set(sent.keys()) == {"arrays", "config"}
        if kind == "train":
            assert set(reply.keys()) == {"arrays", "metrics"}
            assert set(reply["arrays"].keys()) == set(sent["arrays"].keys())
            assert "phi" in reply["arrays"].keys()
            assert all(k == "phi" or k.startswith("backbone.") for k in reply["arrays"].keys())
            k_g = sent["arrays"]["phi"].shape[0]
            for key, arr in reply["arrays"].items():  # no classifier W_l (K_l = 4 identities)
                assert key == "phi" or tuple(arr.shape)[:1] != (4,), key
            assert tuple(reply["arrays"]["phi"].shape)[0] == k_g
            assert set(reply["metrics"].keys()) == {"num-examples", "num-hard-negatives",
                                                    "num-steps"}
        else:
            assert set(reply.keys()) == {"metrics"}
            assert all(isinstance(v, (int, float)) for v in reply["metrics"].values())


def test_reid_bn_local_keeps_the_statistics_on_the_node(tiny_reid_root: Path,
                                                        tmp_path: Path) -> None:
    conf = reid_config(tiny_reid_root, tmp_path, **{"reid-bn": "local", "strategy": "fedavg",
                                                    "num-server-rounds": 1})
    report, rec = run_recorded(conf)
    assert report["rounds"][0]["aggregated"]
    for kind, sent, reply in rec.log:
        keys = set(sent["arrays"].keys())
        assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                       for k in keys)
        assert "phi" not in keys  # FedAvg: the backbone only
        if kind == "train":
            assert set(reply["arrays"].keys()) == keys
    states = list((tmp_path / "out" / "client-state").rglob("state-r0001.pt"))
    assert len(states) == 2
    state = torch.load(states[0], weights_only=False)
    assert any(k.endswith("running_mean") for k in state["prev_backbone"])
    for section in ("pretrained", "final"):
        assert math.isfinite(report[section]["generic"]["mAP"])


def test_reid_refuses_what_it_does_not_support(tiny_reid_root: Path, tmp_path: Path) -> None:
    workload = get_workload("reid")
    with pytest.raises(ConfigError, match="'strategy'.*task 'reid'"):
        workload.check_config(resolve(reid_config(tiny_reid_root, tmp_path,
                                                  strategy="fedface")))
    with pytest.raises(ConfigError, match="'num-clients' = 3.*'reid-clients'"):
        workload.check_config(resolve(reid_config(tiny_reid_root, tmp_path, **{
            "num-clients": 3})))
    with pytest.raises(ConfigError, match="'final-eval-models'.*task 'reid'"):
        workload.check_config(resolve(reid_config(tiny_reid_root, tmp_path, **{
            "final-eval-models": "global,kd"})))
    with pytest.raises(ConfigError, match="'batch-size'.*reid-instances"):
        workload.check_config(resolve(reid_config(tiny_reid_root, tmp_path, **{
            "batch-size": 9})))
    with pytest.raises(ConfigError, match="'reid-bn'"):
        resolve({"task": "reid", "reid-bn": "frozen"})


def test_fewer_clients_than_datasets_take_the_first_datasets(tiny_reid_root: Path,
                                                              tmp_path: Path) -> None:
    from fedfr.reid.workspace import open_reid_workspace

    cfg = resolve(reid_config(tiny_reid_root, tmp_path, **{
        "reid-clients": "tiny-b,tiny-a", "num-clients": 1, "min-train-nodes": 1}))
    get_workload("reid").check_config(cfg)
    ws = open_reid_workspace(cfg)
    assert ws.client_names == ["tiny-b"]
    with pytest.raises(ConfigError, match="partition-id 1 out of range"):
        ws.client_name(1)
    # the per-process workspace cache tells the two apart (it once served the first to both)
    both = resolve(reid_config(tiny_reid_root, tmp_path, **{
        "reid-clients": "tiny-b,tiny-a", "num-clients": 2, "min-train-nodes": 1}))
    assert open_reid_workspace(both).client_names == ["tiny-b", "tiny-a"]


def test_table_7_5_layout() -> None:
    report = {
        "config": {"reid-clients": "a,b", "reid-unseen": "u", "strategy": "fedavg",
                   "reid-ap": "trapezoid"},
        "pretrained": {"generic": {"u.mAP": 0.1, "u.rank1": 0.2, "mAP": 0.1, "rank1": 0.2},
                       "personalized": {"a.mAP": 0.3, "a.rank1": 0.4, "b.mAP": 0.5,
                                        "b.rank1": float("nan")}},
        "final": {"generic": {"u.mAP": 0.15, "u.rank1": 0.25, "mAP": 0.15, "rank1": 0.25},
                  "personalized_by_model": {"global": {"a.mAP": 0.35, "a.rank1": 0.45},
                                            "local": {"a.mAP": 0.355}}},
    }
    text = table_7_5(report)
    assert "| a mAP | a R1 | b mAP | b R1 |" in text
    assert "| pre-trained (Theta_g^0) | 30.0 | 40.0 | 50.0 | n/a |" in text
    assert "| FedAvg Theta_g | 35.0 | 45.0 | n/a | n/a |" in text
    assert "| FedAvg Theta_l | 35.5 |" in text
    assert "| FedAvg Theta_g | 15.0 | 25.0 | 15.0 | 25.0 |" in text
    assert "trapezoid" in text
    report["config"]["num-clients"] = 1  # fewer clients than datasets: only those that took part
    assert "| method | a mAP | a R1 |\n" in table_7_5(report)


def test_reid_benchmark_rows_tables_and_cmc_plots(tiny_reid_root: Path, tmp_path: Path) -> None:
    from benchmarks.common import write_seed_table
    from benchmarks.reid_benchmark import (
        CMC_RANKS,
        bytes_per_round,
        long_frame,
        run,
        seed_columns,
    )

    conf = reid_config(tiny_reid_root, tmp_path, **{"num-server-rounds": 1})
    conf.pop("output-dir")
    methods = ["pre-trained", "local supervised", "FedAvg", "central (union)"]
    out = tmp_path / "bench"
    [rows] = run(conf, None, out, methods)  # no --seeds: the config's seed, in out itself
    frame = long_frame([rows])
    assert list(frame["method"]) == methods
    for col in ("tiny-a.mAP", "tiny-b.rank1"):
        assert frame[col].between(0, 1).all(), col
    local = frame["method"] == "local supervised"  # a client's own model: no unseen column
    assert frame[local]["tiny-unseen.mAP"].isna().all()
    assert frame[~local]["tiny-unseen.mAP"].between(0, 1).all()
    fedavg = frame[frame["method"] == "FedAvg"]["bytes_per_round"].iloc[0]
    fedfr = bytes_per_round(resolve({**conf, "strategy": "fedfr"}))
    assert fedfr == fedavg + 2 * 2 * 12 * 192 * 4  # + Phi_g (K_g = 12 ids x d), both ways
    for name in ("reid_benchmark.csv", "reid_benchmark.md", "reid_benchmark_cmc.png"):
        assert (out / name).stat().st_size > 0, name
    assert "| FedAvg |" in (out / "reid_benchmark.md").read_text()
    # every row's curves: a CMC up to rank 20 whose rank-1 is the table's (the federation's
    # models evaluated again from its run folder agree with its report)
    for (method,), res in rows:
        assert set(res["curves"]) == ({"tiny-a", "tiny-b"} | (
            set() if method == "local supervised" else {"tiny-unseen"})), method
        for name, curve in res["curves"].items():
            assert len(curve) == CMC_RANKS, (method, name)
            assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))
            assert curve[0] == pytest.approx(res["reid"][f"{name}.rank1"], abs=1e-9)
    # over seeds (a second seed made up here: tiny-a's mAP halved): the shared seed table
    other = [([m], {**r, "seed": 1, "reid": {**r["reid"], "tiny-a.mAP": r["reid"]["tiny-a.mAP"]
                                             / 2}}) for (m,), r in rows]
    top = tmp_path / "top"
    top.mkdir()
    table = write_seed_table(top, "reid_benchmark", [rows, other], ["method"],
                             sections=("reid",), cols=seed_columns(["tiny-a", "tiny-b"],
                                                                   ["tiny-unseen"]),
                             extra=[("mb_per_round", "MB / round")])
    a = frame["tiny-a.mAP"]
    assert list(table["tiny-a mAP"]) == pytest.approx(list(100 * 0.75 * a))
    assert list(table["tiny-a mAP sd"]) == pytest.approx(list(100 * a / 2 / math.sqrt(2)))
    assert math.isnan(table[table["method"] == "local supervised"]["unseen mean mAP"].iloc[0])
    assert "95 % interval" in (top / "reid_benchmark.md").read_text()


def test_reid_benchmark_with_seeds_writes_each_seed_and_the_table_over_them(
        tiny_reid_root: Path, tmp_path: Path) -> None:
    from benchmarks.reid_benchmark import run

    conf = reid_config(tiny_reid_root, tmp_path)
    conf.pop("output-dir")
    out = tmp_path / "bench"
    per_seed = run(conf, [0, 1], out, ["pre-trained"])
    assert [rows[0][1]["seed"] for rows in per_seed] == [0, 1]
    for folder in (out, out / "seed-0", out / "seed-1"):
        for name in ("reid_benchmark.csv", "reid_benchmark.md", "reid_benchmark_cmc.png"):
            assert (folder / name).stat().st_size > 0, folder / name
    top = pd.read_csv(out / "reid_benchmark.csv")
    vals = [rows[0][1]["reid"]["tiny-a.mAP"] for rows in per_seed]
    assert top["tiny-a mAP"].iloc[0] == pytest.approx(50 * sum(vals))
    assert {"tiny-a mAP sd", "tiny-a mAP lo", "tiny-a mAP hi"} <= set(top.columns)
    assert "seeds [0, 1]" in (out / "reid_benchmark.md").read_text()
    assert len(pd.read_csv(out / "reid_benchmark_runs.csv")) == 2


def test_reid_benchmark_paper_preset_without_data(tmp_path: Path, capsys) -> None:
    """``--paper``: Sec. 7.7's setup resolves (4 real client sets, 4 unseen, ResNet-50 at
    256 x 128, 100 rounds of 1 epoch); without the data it stops with one line naming what is
    missing (exit 2) before any training."""
    from benchmarks.reid_benchmark import PAPER, base_config, main

    cfg = resolve(base_config("", True, tmp_path))
    assert cfg.reid_clients.split(",") == ["market1501", "dukemtmcreid", "cuhk03", "msmt17"]
    assert cfg.reid_unseen.split(",") == ["viper", "ilids", "grid", "prid"]
    assert (cfg.reid_model, cfg.reid_height, cfg.reid_width) == ("resnet50", 256, 128)
    assert (cfg.num_server_rounds, cfg.local_epochs) == (100, 1) == (PAPER["num-server-rounds"],
                                                                    PAPER["local-epochs"])
    assert main(["--paper", "--out", str(tmp_path / "a"), "--methods", "FedAvg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data-root" in err[0], err
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["--paper", "--out", str(tmp_path / "b"), "--methods", "FedAvg",
                 "--run-config", f"data-root='{empty}'"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0], err
    assert not list((tmp_path / "b").rglob("*.pt"))  # nothing trained


@pytest.mark.slow  # renders three synthetic domains (about 10 s)
def test_reid_nodes_read_only_their_own_exported_folder(tmp_path: Path) -> None:
    """``make federation``'s export for re-ID: each node gets its own synthetic domain (and the
    public one), a run over node-local folders matches the simulation's client data."""
    from fedfr.node_data import NodeDataError
    from fedfr.workloads.base import NodeInfo

    conf = {"task": "reid", "reid-clients": "synth-market,synth-duke",
            "reid-unseen": "synth-viper", "reid-synthetic-ids": 4, "num-clients": 2,
            "min-train-nodes": 2, "num-server-rounds": 1, "pretrain-epochs": 1,
            "local-epochs": 1, "batch-size": 8, "reid-instances": 2, "reid-height": 32,
            "reid-width": 16, "final-eval-models": "global",
            "output-dir": str(tmp_path / "out"), "cache-dir": str(tmp_path / "cache")}
    cfg = resolve(conf)
    workload = get_workload("reid")
    dirs = workload.export_nodes(cfg, tmp_path / "nodes")
    assert [d.name for d in dirs] == ["client-0000", "client-0001"]
    doc = json.loads((dirs[1] / "node.json").read_text())
    assert doc["datasets"] == ["synth-duke", "synth-public"] and doc["partition-id"] == 1
    assert not list(dirs[1].rglob("*synth-market*"))  # nobody else's images
    ncs = [{"partition-id": i, "num-partitions": 2, "data-dir": str(d)}
           for i, d in enumerate(dirs)]
    report = run_federation(InProcessGrid(client_app, 2, cfg.to_dict(), node_configs=ncs), cfg)
    assert report["rounds"][0]["aggregated"] and not report["failures"]["final-evaluation"]
    node = NodeInfo(0, {"data-dir": str(dirs[1])}, tmp_path / "state")
    with pytest.raises(NodeDataError, match="holds client 1's data"):
        workload.evaluate(cfg, node, None, 0, None, ["global"])


def test_fedfr_evaluate_reid_writes_csv_markdown_and_cmc(tiny_reid_root: Path,
                                                         tmp_path: Path) -> None:
    from fedfr.cli import main
    from fedfr.reid.models import build_reid_model
    from strategies.records import pack_arrays

    torch.manual_seed(0)
    net = build_reid_model("small_reid")
    ckpt = tmp_path / "final_model.pt"  # a federation's layout: backbone.* keys (+ phi)
    torch.save({**pack_arrays(net.state_dict(), torch.zeros(3, 192)).to_torch_state_dict()},
               ckpt)
    out = tmp_path / "eval"
    assert main(["evaluate", "reid", "--dataset", "market1501", "--root",
                 str(tiny_reid_root / "tiny-a"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--height", str(H), "--width", str(W), "--ap", "trapezoid"]) == 0
    row = pd.read_csv(out / "reid_market1501.csv").iloc[0]
    assert row["queries"] == 8 and row["invalid-queries"] == 0  # 4 test ids x 2 query cameras
    assert 0 <= row["mAP-trapezoid"] <= 1 and row["mAP"] == row["mAP-trapezoid"]
    assert (out / "reid_market1501_cmc.png").stat().st_size > 0
    assert "trapezoid AP" in (out / "reid_market1501.md").read_text()


def test_generic_protocol_averages_the_ten_seeded_splits(tiny_reid_root: Path,
                                                         tmp_path: Path) -> None:
    """VIPeR-like unseen sets: the single-gallery-shot protocol over 10 seeded random splits,
    mean and std in the report (a fixed-split set has one)."""
    from fedfr.reid.data.fixtures import write_viper

    write_viper(tiny_reid_root, ids=8)
    cfg = resolve(reid_config(tiny_reid_root, tmp_path, **{"reid-unseen": "viper,tiny-unseen"}))
    workload = get_workload("reid")
    ws = workload.open_server_data(cfg)
    splits = dict(ws.unseen_splits())
    assert len(splits["viper"]) == 10 and len(splits["tiny-unseen"]) == 1
    galleries = {tuple(r.path.name for r in s.gallery) for s in splits["viper"]}
    assert len(galleries) > 1  # the splits differ
    arrays, _ = workload.initial_arrays(cfg, ws)
    gen = workload.evaluate_generic(cfg, ws, arrays)
    assert gen["viper.splits"] == 10 and gen["viper.mAP_std"] >= 0
    assert "tiny-unseen.splits" not in gen
    assert gen["mAP"] == pytest.approx((gen["viper.mAP"] + gen["tiny-unseen.mAP"]) / 2)
    from fedfr.reid.workspace import ReidWorkspace

    again = ReidWorkspace(cfg)  # not the per-process cache: read and drawn afresh
    assert [s.gallery for s in dict(again.unseen_splits())["viper"]] == \
        [s.gallery for s in splits["viper"]]  # seeded: the same splits again


def test_flwr_wrapper_refuses_a_reid_run_before_flower_starts() -> None:
    from server.simulate import checked_output_dir

    with pytest.raises(ConfigError, match="'num-clients' = 5 but 'reid-clients' names only 4"):
        checked_output_dir("task='reid'", num_nodes=5)
    # Flower's default federation (2 SuperNodes): the first two datasets take part
    assert checked_output_dir("task='reid' output-dir='/tmp/x'", num_nodes=2) == Path("/tmp/x")
    with pytest.raises(ConfigError, match="'strategy' = 'fedface' is not supported by task"):
        checked_output_dir("task='reid' strategy='fedface'", num_nodes=4)
    assert checked_output_dir("task='reid' output-dir='/tmp/x'", num_nodes=4) == Path("/tmp/x")


def test_the_server_never_opens_a_client_dataset(tiny_reid_root: Path, tmp_path: Path) -> None:
    """The ServerApp holds the public and unseen sets only: with a server data-root that lacks the
    clients' datasets the run still completes (each client reads its own through its node
    config), and split.json names the client datasets without their records."""
    import shutil

    server_root = tmp_path / "server-data"
    for name in ("tiny-unseen", "tiny-public"):
        shutil.copytree(tiny_reid_root / name, server_root / name)
    cfg = resolve(reid_config(server_root, tmp_path, **{"num-server-rounds": 1}))
    doc = split_without_client_records(run_clients_on(cfg, tiny_reid_root))
    assert [c["name"] for c in doc["clients"]] == ["tiny-a", "tiny-b"]


def test_a_node_copy_changed_after_export_is_refused(tmp_path: Path) -> None:
    """node.json records each exported dataset's records digest; a node whose copy no longer
    matches (an image removed) fails with one line naming the manifest, not a silent run."""
    from fedfr.node_data import NodeDataError
    from fedfr.workloads.base import NodeInfo

    conf = {"task": "reid", "reid-clients": "synth-market,synth-duke",
            "reid-unseen": "synth-viper", "reid-synthetic-ids": 4, "num-clients": 2,
            "reid-height": 32, "reid-width": 16, "batch-size": 8, "reid-instances": 2,
            "output-dir": str(tmp_path / "out"), "cache-dir": str(tmp_path / "cache")}
    cfg = resolve(conf)
    workload = get_workload("reid")
    dirs = workload.export_nodes(cfg, tmp_path / "nodes")
    doc = json.loads((dirs[0] / "node.json").read_text())
    assert set(doc["records-digests"]) == {"synth-market", "synth-public"}
    victim = sorted(dirs[0].rglob("bounding_box_train/*.jpg"))
    victim = [p for p in victim if "synth-market" in str(p)][0]
    victim.unlink()
    node = NodeInfo(0, {"data-dir": str(dirs[0])}, tmp_path / "state")
    with pytest.raises(NodeDataError, match="records digest .* export wrote"):
        workload.evaluate(cfg, node, None, 0, None, ["global"])
