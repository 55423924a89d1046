"""End to end without Ray: the ServerApp and ClientApp over an in-process grid."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from clients.app import app as client_app
from fedfr.config import resolve
from fedfr.errors import RunFailedError
from server.federation import run_federation
from server.inprocess import InProcessGrid, format_run_config, run_inprocess
from tests.federation_fixtures import Recording

ROOT = Path(__file__).resolve().parents[1]


def test_two_clients_two_rounds_end_to_end(tiny_config: dict) -> None:
    report = run_inprocess({**tiny_config, "personal-eval-every": 1})
    out = Path(tiny_config["output-dir"])
    on_disk = json.loads((out / "report.json").read_text())
    assert {"config", "split", "pretrained", "rounds", "final"} <= set(on_disk)
    for section in ("pretrained", "final"):
        assert {"generic", "personalized"} <= set(on_disk[section])
        assert math.isfinite(on_disk[section]["generic"]["rank1"])
        assert math.isfinite(on_disk[section]["personalized"]["rank1"])
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["num-replies"] == 2 and r["aggregated"] for r in report["rounds"])
    assert set(report["final"]["personalized_by_model"]) == {"global", "local", "personal"}
    assert math.isfinite(report["rounds"][0]["personalized"]["rank1"])  # every-k evaluation
    assert report["rounds"][1]["personalized"] == report["final"]["personalized"]
    csv = pd.read_csv(out / "metrics.csv")
    assert list(csv["round"]) == [0, 1, 2]
    assert (out / "split.json").exists() and (out / "results.md").exists()
    split = json.loads((out / "split.json").read_text())
    assert report["split"]["digest"] == split["digest"]


class FlakyClient:
    """Wraps the ClientApp; the node with partition 1 raises in round 2 (a crash mid-round)."""

    def __init__(self) -> None:
        self.raised = 0

    def __call__(self, msg, context):
        conf = msg.content["config"] if "config" in msg.content else {}
        if (msg.metadata.message_type == "train" and int(conf["server-round"]) == 2
                and int(context.node_config["partition-id"]) == 1):
            self.raised += 1
            raise RuntimeError("simulated client crash")
        return client_app(msg, context)


def test_client_that_raises_leaves_the_round_to_the_others(tiny_config: dict) -> None:
    conf = {**tiny_config, "num-clients": 3, "min-train-nodes": 2}
    flaky = FlakyClient()
    cfg = resolve(conf)
    grid = InProcessGrid(flaky, 3, cfg.to_dict())
    report = run_federation(grid, cfg)
    assert flaky.raised == 1
    r1, r2 = report["rounds"]
    assert r1["num-replies"] == 3 and r1["num-failures"] == 0
    assert r2["aggregated"] and r2["num-replies"] == 2 and r2["num-failures"] == 1
    assert "simulated client crash" in r2["failures"][0]["reason"]
    assert report["failures"]["2"]


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final_model.pt", weights_only=True)


def test_kill_and_resume_ends_where_an_uninterrupted_run_ends(tiny_config: dict,
                                                              tmp_path: Path) -> None:
    conf = {**tiny_config, "num-server-rounds": 3}
    ref_out = tmp_path / "reference"
    ref = run_inprocess({**conf, "output-dir": str(ref_out)})

    out = tmp_path / "killed"
    run_config = format_run_config({**conf, "output-dir": str(out)})
    cmd = [sys.executable, "-m", "server.inprocess", "--run-config", run_config]
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "FEDFR_NUM_THREADS": str(torch.get_num_threads())}  # same arithmetic as in-process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "round-0001.pt").exists():
            assert proc.poll() is None, "run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = sorted(p.name for p in (out / "checkpoints").glob("round-*.pt"))
    assert "round-0003.pt" not in done  # it really was interrupted

    killed_id = torch.load(out / "checkpoints" / "round-0001.pt", weights_only=True)["state"][
        "experiment-id"]
    resumed = run_inprocess({**conf, "output-dir": str(out)})
    assert resumed["experiment-id"] == killed_id  # the same experiment continued
    assert [r["round"] for r in resumed["rounds"]] == [1, 2, 3]
    a, b = _final_state(ref_out), _final_state(out)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5, rtol=1e-4), key
    for section in ("generic", "personalized"):
        for key, value in ref["final"][section].items():
            other = resumed["final"][section][key]
            if math.isnan(value):
                assert math.isnan(other), key
            else:
                assert other == pytest.approx(value, abs=1e-4), (section, key)


#: arrays a train reply may carry beyond what it received: none, except FedFace's class proxies
#: (the baseline's stated privacy cost, strategies/fedface.py)
EXTRA_REPLY_ARRAYS = {"fedfr": set(), "fedavg": set(), "fedface": {"proxies"}}


@pytest.mark.parametrize("strategy", ["fedfr", "fedface"])
def test_every_message_carries_only_what_it_may(tiny_config: dict, strategy: str) -> None:
    rec = Recording()
    cfg = resolve({**tiny_config, "strategy": strategy})
    run_federation(InProcessGrid(rec, 2, cfg.to_dict()), cfg)
    k_l, d, n_l = cfg.ids_per_client, cfg.embedding_size, cfg.ids_per_client * cfg.train_per_id
    extra = EXTRA_REPLY_ARRAYS[strategy]
    if extra:  # a baseline that lets data leave the client says so in its reports
        report = json.loads((cfg.output_path / "report.json").read_text())
        assert "proxies" in report["privacy"]
        assert "Privacy cost" in (cfg.output_path / "results.md").read_text()
    kinds = {kind for kind, _, _ in rec.log}
    assert kinds == {"train", "evaluate"}
    for kind, sent, reply in rec.log:
        assert set(sent.keys()) == {"arrays", "config"}
        if kind == "train":
            assert set(reply.keys()) == {"arrays", "metrics"}
            assert set(reply["arrays"].keys()) - extra == set(sent["arrays"].keys()) - extra
            assert extra <= set(reply["arrays"].keys())
            assert set(reply["metrics"].keys()) == {"num-examples", "num-hard-negatives",
                                                    "num-steps"}
            for key, arr in reply["arrays"].items():
                if key in extra:  # FedFace: exactly the client's K_l x d proxies, nothing more
                    assert tuple(arr.shape) == (k_l, d), key
                    continue
                assert key == "phi" or key.startswith("backbone.")
                assert tuple(arr.shape) not in {(k_l, d), (n_l, d), (n_l,)}, key
        else:
            assert set(reply.keys()) == {"metrics"}
            assert all(isinstance(v, (int, float)) for v in reply["metrics"].values())


ORL = ROOT.parent / "shared" / "data" / "faces" / "orl"


@pytest.mark.skipif(not ORL.is_dir(), reason="../shared/data/faces/orl not present")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_faces_from_an_image_folder(tiny_config: dict) -> None:
    conf = {**tiny_config, "dataset": "folder", "data-root": str(ORL), "num-public-ids": 16,
            "ids-per-client": 4, "train-per-id": 6, "test-per-id": 4, "num-generic-ids": 8}
    report = run_inprocess(conf)
    summary = report["split"]["summary"]
    assert summary["identities"] == {"public": 16, "clients": 8, "generic": 8}
    assert math.isfinite(report["final"]["generic"]["rank1"])


def test_recordio_dataset_end_to_end(tiny_config: dict, tmp_path: Path) -> None:
    """The same federation on data stored as MXNet RecordIO (train.rec + train.idx)."""
    from fedfr.face.data.recordio import write_source_as_recordio
    from fedfr.face.data.synthetic import SyntheticFaces

    source = SyntheticFaces(num_identities=40, images_per_identity=8, size=32, seed=3)
    rec_dir = write_source_as_recordio(source, tmp_path / "rec")
    conf = {**tiny_config, "dataset": "recordio", "data-root": str(rec_dir)}
    report = run_inprocess(conf)
    assert report["split"]["summary"]["images"]["public"] == 24 * 8
    assert all(r["aggregated"] for r in report["rounds"])


def test_corrupt_client_image_fails_that_client_only(tiny_config: dict, tmp_path: Path) -> None:
    """A corrupt file in one client's data takes down that client's rounds; the rounds still
    aggregate the others, but the final evaluations need that client's images (impostors):
    the run says it failed (exit 1), naming the file, and its results.md says why."""
    from PIL import Image

    from fedfr.config import resolve as _resolve
    from fedfr.face.data.folder import ImageFolderSource
    from fedfr.face.workspace import open_workspace

    rng = torch.Generator().manual_seed(0)
    root = tmp_path / "faces"
    for ident in range(48):
        folder = root / f"id{ident:02d}"
        folder.mkdir(parents=True)
        base = torch.randint(0, 255, (3, 32, 32), generator=rng)
        for k in range(8):
            noise = torch.randint(-20, 20, (3, 32, 32), generator=rng)
            img = (base + noise).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(img).save(folder / f"{k}.png")
    conf = {**tiny_config, "dataset": "folder", "data-root": str(root), "num-clients": 3,
            "min-train-nodes": 2}
    cfg = _resolve(conf)
    split = open_workspace(cfg).split
    victim = split.clients[2].train[0]
    path = ImageFolderSource(root).paths[victim]
    Path(path).write_bytes(b"not an image")
    from fedfr.face import workspace
    workspace._WORKSPACES.clear()  # drop the decoded tensors cached above
    with pytest.raises(RunFailedError, match="final evaluation failed on node") as failed:
        run_inprocess(conf)
    assert failed.value.exit_code == 1
    out = Path(conf["output-dir"])
    report = json.loads((out / "report.json").read_text())
    for r in report["rounds"]:
        assert r["aggregated"] and r["num-replies"] == 2 and r["num-failures"] == 1
        assert Path(path).name in r["failures"][0]["reason"]
    assert report["status"]["status"] == "failed"
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    results = (out / "results.md").read_text()
    assert "Rounds aggregated: 2 of 2." in results and "r1 2/3, r2 2/3" in results
    assert "Status: FAILED, 6 problem(s)" in results
    assert f"- final evaluation failed on node 1001: {path}: cannot decode" in results


def test_run_config_text_round_trip() -> None:
    from server.inprocess import parse_run_config

    values = {"lr": 0.4, "local-epochs": 3, "dfc": False, "data-root": "/abs/faces"}
    assert parse_run_config(format_run_config(values)) == values
