"""The video re-ID workload (``task = "video-reid"``) through the unchanged federation: tracklet
sets as clients, the message audit, FedFR's techniques on clip features, BN policy, resume, the
refusals, and (slow) a run through ``python -m server.simulate``.

The fast tests read tiny tracklet sets written in the real layouts (MARS, DukeMTMC-VideoReID,
iLIDS-VID, PRID2011; ``fedfr/reid/data/video/fixtures.py``) by the real readers, so that a
federation runs in seconds; the slow test renders the synthetic camera-network sets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedfr.config import resolve
from fedfr.errors import ConfigError
from fedfr.reid.data.video.fixtures import write_dukev, write_ilidsvid, write_mars, write_prid2011
from fedfr.workloads import get_workload
from server.inprocess import format_run_config
from tests.federation_fixtures import run_clients_on, run_recorded, split_without_client_records

ROOT = Path(__file__).resolve().parents[1]
BN_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def video_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mars and dukemtmcvidreid (clients: 4 train ids each), ilidsvid (unseen: 10 splits),
    prid2011 (public, with a torchreid splits file: 8 people)."""
    root = tmp_path_factory.mktemp("video-data")
    train = [(pid, cam, 3) for pid in range(1, 5) for cam in (1, 2)]
    test = [(pid, cam, 3) for pid in range(5, 9) for cam in (1, 2, 2)]
    write_mars(root, train, test, query_rows=list(range(0, len(test), 3)))
    write_dukev(root, {"train": [(pid, cam, 3) for pid in range(11, 15) for cam in (1, 3)],
                       "query": [(pid, 1, 3) for pid in range(15, 19)],
                       "gallery": [(pid, cam, 3) for pid in range(15, 19) for cam in (2, 3)]})
    write_ilidsvid(root, people=8, frames=3)
    people = list(range(1, 9))
    write_prid2011(root, {p: 3 for p in people}, {p: 3 for p in people},
                   splits=[{"train": [f"person_{p:04d}" for p in people[:4]],
                            "test": [f"person_{p:04d}" for p in people[4:]]}])
    return root


def video_config(root: Path, tmp_path: Path, **over) -> dict:
    conf = {"task": "video-reid", "data-root": str(root),
            "video-clients": "mars,dukemtmcvidreid", "video-unseen": "ilidsvid",
            "video-public": "prid2011", "video-height": 32, "video-width": 16,
            "video-clip-len": 2, "num-clients": 2, "min-train-nodes": 2,
            "num-server-rounds": 2, "pretrain-epochs": 1, "local-epochs": 1, "batch-size": 8,
            "video-instances": 2, "eval-batch-size": 64, "hn-threshold": -1.0,
            "output-dir": str(tmp_path / "out"), "cache-dir": str(tmp_path / "cache")}
    conf.update(over)
    return conf


def test_video_federation_with_the_message_audit(video_root: Path, tmp_path: Path) -> None:
    conf = video_config(video_root, tmp_path, contrastive=True, dfc=True, **{"eval-every": 2})
    report, rec = run_recorded(conf)
    out = tmp_path / "out"
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["aggregated"] and r["num-replies"] == 2 for r in report["rounds"])
    assert all(r["num-hard-negatives"] > 0 for r in report["rounds"])  # t_HN = -1: D_g joins
    by_model = report["final"]["personalized_by_model"]
    assert set(by_model) == {"global", "local", "personal"}
    for model in by_model.values():
        for key in ("mars.mAP", "mars.rank1", "dukemtmcvidreid.mAP", "mAP", "mINP"):
            assert 0.0 <= model[key] <= 1.0, key
    gen = report["final"]["generic"]  # iLIDS-VID: the mean over its 10 splits, and their std
    assert gen["ilidsvid.splits"] == 10 and gen["ilidsvid.mAP_std"] >= 0.0
    assert 0.0 <= gen["ilidsvid.mAP"] <= 1.0 and gen["rank1"] == gen["ilidsvid.rank1"]
    table = (out / "results.md").read_text()
    assert "mars mAP" in table and "ilidsvid R1" in table and "non-interpolated" in table
    split = json.loads((out / "split.json").read_text())
    assert split["task"] == "video-reid"
    assert [c["name"] for c in split["clients"]] == ["mars", "dukemtmcvidreid"]
    assert split["public"]["name"] == "prid2011"
    assert split["digest"] == report["split"]["digest"]
    # the audit: the backbone and Phi go back, nothing else; evaluation replies are scalars
    kinds = [k for k, _, _ in rec.log]
    assert kinds.count("train") == 4 and "evaluate" in kinds
    for kind, sent, reply in rec.log:
        assert set(sent.keys()) == {"arrays", "config"}
        sent_keys = set(sent["arrays"].keys())
        assert "phi" in sent_keys and all(k == "phi" or k.startswith("backbone.")
                                          for k in sent_keys)
        if kind == "train":
            assert set(reply.keys()) == {"arrays", "metrics"}
            assert set(reply["arrays"].keys()) == sent_keys
            for key, arr in reply["arrays"].items():  # no W_l / Pi_l (K_l = 4 identities)
                assert tuple(arr.shape)[:1] != (4,), key
            assert tuple(reply["arrays"]["phi"].shape) == tuple(sent["arrays"]["phi"].shape)
            assert set(reply["metrics"].keys()) == {"num-examples", "num-hard-negatives",
                                                    "num-steps"}
        else:
            assert set(reply.keys()) == {"metrics"}
            assert all(isinstance(v, (int, float)) for v in reply["metrics"].values())
    # W_l, Pi_l and the previous model stay in the node's state
    state = torch.load(next((out / "client-state").rglob("state-r0002.pt")), weights_only=False)
    assert state["w"].shape[0] == 4 and state["dfc"] is not None
    assert report["rounds"][1]["num-hard-negatives"] > 0


def test_video_federation_resumes_from_its_checkpoint(video_root: Path, tmp_path: Path) -> None:
    conf = video_config(video_root, tmp_path, **{
        "strategy": "fedavg", "num-server-rounds": 1, "final-eval-models": "global",
        "video-unseen": "mars"})
    first, _ = run_recorded(conf)
    more, rec = run_recorded({**conf, "num-server-rounds": 2})  # one more round, same experiment
    assert more["experiment-id"] == first["experiment-id"]
    assert [r["round"] for r in more["rounds"]] == [1, 2]
    assert [k for k, _, _ in rec.log].count("train") == 2  # only round 2 was trained again


def test_video_bn_local_keeps_the_statistics_on_the_node(video_root: Path,
                                                         tmp_path: Path) -> None:
    conf = video_config(video_root, tmp_path, **{"reid-bn": "local", "strategy": "fedavg",
                                                 "num-server-rounds": 1,
                                                 "final-eval-models": "global,local"})
    report, rec = run_recorded(conf)
    assert report["rounds"][0]["aggregated"]
    for kind, sent, reply in rec.log:
        keys = set(sent["arrays"].keys())
        assert keys and not any(k.endswith(BN_SUFFIXES) for k in keys)
        assert "phi" not in keys  # FedAvg: the backbone only
        if kind == "train":
            assert set(reply["arrays"].keys()) == keys
            assert reply["metrics"]["num-hard-negatives"] == 0
    for section in ("pretrained", "final"):
        assert math.isfinite(report[section]["generic"]["mAP"])


def test_video_reid_refuses_what_it_does_not_support(video_root: Path, tmp_path: Path) -> None:
    from fedfr.reid.video.workspace import open_video_workspace

    workload = get_workload("video-reid")
    bad = {"strategy": "fedface", "eval-flip": True, "num-clients": 3, "batch-size": 9,
           "video-model": "lstm"}
    messages = {"strategy": "'strategy'.*task 'video-reid'",
                "eval-flip": "'eval-flip'.*task 'video-reid'",
                "num-clients": "'num-clients' = 3.*'video-clients'",
                "batch-size": "'batch-size'.*video-instances",
                "video-model": "'video-model' = 'lstm'.*unknown name"}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=messages[key]):
            workload.check_config(resolve(video_config(video_root, tmp_path, **{key: value})))
    with pytest.raises(ConfigError, match="'video-test-clips'"):
        resolve({"task": "video-reid", "video-test-clips": "middle"})
    with pytest.raises(ConfigError, match="'video-clip-len': must be > 0"):
        resolve({"task": "video-reid", "video-clip-len": 0})
    cfg = resolve(video_config(video_root, tmp_path, **{"video-unseen": "market1501"}))
    message = "'video-unseen': unknown tracklet set 'market1501'"
    with pytest.raises(ConfigError, match=message):  # before Flower starts
        workload.check_config(cfg)
    with pytest.raises(ConfigError, match=message):  # and where the data is read
        open_video_workspace(cfg).unseen_splits()
    cfg = resolve(video_config(video_root, tmp_path, **{"data-root": ""}))
    message = "'data-root': required .* 'mars' named in 'video-clients'"
    with pytest.raises(ConfigError, match=message):
        workload.check_config(cfg)
    with pytest.raises(ConfigError, match=message):
        open_video_workspace(cfg).client(0)


def test_synthetic_tracklet_sets_differ_in_camera_style(tmp_path: Path) -> None:
    from fedfr.reid.video.workspace import read_tracklet_set, synthetic_spec

    cfg = resolve({"task": "video-reid", "cache-dir": str(tmp_path), "video-synthetic-ids": 4,
                   "video-height": 32, "video-width": 16})
    a, b = synthetic_spec(cfg, "synth-mars"), synthetic_spec(cfg, "synth-pridv")
    assert (a.domain, b.domain) == ("synth-market", "synth-prid") and a.digest() != b.digest()
    assert synthetic_spec(cfg, "synth-publicv", public=True).num_ids == 8
    split = read_tracklet_set(cfg, "synth-pridv", "video-unseen")
    assert split.name == "synth-pridv" and {t.camid for t in split.gallery} <= {0, 1}
    assert split.query and all(t.pid > 0 for t in split.query)


@pytest.mark.slow  # renders the synthetic sets and starts Flower's simulation (about a minute)
def test_video_reid_through_flwr_run(tmp_path: Path) -> None:
    conf = {"task": "video-reid", "num-clients": 0, "video-clients": "synth-mars,synth-cuhkv",
            "video-unseen": "synth-pridv", "video-synthetic-ids": 8, "video-height": 32,
            "video-width": 16, "video-clip-len": 2, "num-server-rounds": 1,
            "pretrain-epochs": 1, "local-epochs": 1, "batch-size": 8, "video-instances": 2,
            "min-train-nodes": 2, "output-dir": str(tmp_path / "out"),
            "cache-dir": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes", "2", "--flwr-home",
           str(tmp_path / "flwr-home"), "--run-config", format_run_config(conf)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["task"] == "video-reid" and report["config"]["num-clients"] == 2
    assert report["rounds"][0]["num-replies"] == 2 and report["rounds"][0]["aggregated"]
    assert math.isfinite(report["final"]["generic"]["synth-pridv.mAP"])
    assert "synth-mars mAP" in (tmp_path / "out" / "results.md").read_text()


def test_the_server_never_opens_a_client_tracklet_set(video_root: Path, tmp_path: Path) -> None:
    """As for image re-ID: a server whose data-root lacks the clients' sets (mars, DukeV) still
    runs the federation, each client reading its own through its node config; split.json names
    the client sets without their records."""
    import shutil

    server_root = tmp_path / "server-data"
    kept = [d for d in video_root.iterdir() if "mars" not in d.name and "duke" not in d.name]
    assert len(kept) == 2
    for d in kept:
        shutil.copytree(d, server_root / d.name)
    cfg = resolve(video_config(server_root, tmp_path, **{"num-server-rounds": 1}))
    doc = split_without_client_records(run_clients_on(cfg, video_root))
    assert [c["name"] for c in doc["clients"]] == ["mars", "dukemtmcvidreid"]
