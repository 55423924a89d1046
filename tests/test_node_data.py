"""Per-node data (fedfr export + node-local workspace), clear data-dir errors, personal state
across a node restart, certificates/keys, and round accounting of silent nodes."""

from __future__ import annotations

import json
import math
import shutil
import ssl
from pathlib import Path

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.app import ConfigRecord, Context, Message, RecordDict

import fedfr.face.workspace as workspace
import fedfr.node_data as node_data
from clients.app import app, pack_arrays
from fedfr.cli import main as cli_main
from fedfr.client_state import ClientStateStore
from fedfr.config import resolve
from fedfr.face.data.export import export_node_data
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace
from fedfr.node_data import NodeDataError, check_node_dir, open_node_workspace
from server.certs import make_ca_and_server_cert, make_node_key
from server.federation import run_federation
from server.inprocess import InProcessGrid, format_run_config


@pytest.fixture
def three(tiny_config: dict) -> dict:
    return {**tiny_config, "num-clients": 3, "personal-impostors": "public"}


@pytest.mark.parametrize("fmt", ["recordio", "folder"])
def test_export_holds_own_partition_and_public_set_with_identical_pixels(
        three: dict, tmp_path: Path, fmt: str) -> None:
    cfg = resolve(three)
    ws = open_workspace(cfg)
    dirs = export_node_data(ws.source, ws.split, tmp_path / fmt, fmt=fmt, clients=[1, 2])
    assert [d.name for d in dirs] == ["client-0001", "client-0002"]
    assert not (tmp_path / fmt / "client-0000").exists()
    for cid, d in zip((1, 2), dirs, strict=True):
        man = json.loads((d / "node.json").read_text())
        assert man["client-id"] == cid and man["format"] == fmt
        assert man["split-digest"] == ws.split.digest()
        assert set(man["parts"]) == {"train", "test", "public"}  # no generic, no other client
        node = open_node_workspace(cfg, d, cid)
        mine, ref = node.client(cid), ws.client(cid)
        assert torch.equal(mine.train_images, ref.train_images)
        assert torch.equal(mine.train_labels, ref.train_labels)
        assert torch.equal(mine.test_images, ref.test_images)
        assert torch.equal(mine.test_labels, ref.test_labels)
        assert mine.num_classes == ref.num_classes
        for a, b in zip(node.public(), ws.public(), strict=True):
            assert torch.equal(a, b)
        with pytest.raises(NodeDataError, match="holds client"):
            node.client(0)
        with pytest.raises(NodeDataError, match="personal-impostors='public'"):
            node.other_clients_test(cid)


def test_bad_data_dirs_name_the_path_and_what_was_expected(three: dict, tmp_path: Path) -> None:
    cfg = resolve(three)
    ws = open_workspace(cfg)
    (d0,) = export_node_data(ws.source, ws.split, tmp_path / "n", clients=[0])
    missing = tmp_path / "nope"
    with pytest.raises(NodeDataError, match=f"{missing}: no such directory; expected the folder"):
        check_node_dir(missing, 0)
    with pytest.raises(NodeDataError, match="absolute path"):
        check_node_dir("relative/dir", 0)
    with pytest.raises(NodeDataError, match="partition-id=2 but data-dir .* holds client 0"):
        check_node_dir(d0, 2)
    with pytest.raises(NodeDataError, match="split settings"):
        check_node_dir(d0, 0, resolve({**three, "train-per-id": 3}))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NodeDataError, match="node.json: node manifest not found"):
        check_node_dir(empty, 0)
    (d0 / "train.idx").unlink()
    with pytest.raises(NodeDataError, match="train.idx: missing train part"):
        check_node_dir(d0, 0)


def _msg(arrays, cfg, rnd: int, kind: str = "train") -> Message:
    conf = ConfigRecord({"server-round": rnd, "experiment-id": "exp",
                         "config-digest": cfg.digest(), "eval-models": "global"})
    msg = Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=11,
                  message_type=kind)
    msg.metadata.__dict__["_message_id"] = f"{kind}{rnd}"
    return msg


def _node_ctx(run_config: dict, pid: int, data_dir: Path, state_dir: Path) -> Context:
    nc = {"partition-id": pid, "num-partitions": 3, "data-dir": str(data_dir),
          "state-dir": str(state_dir)}
    return Context(run_id=1, node_id=11, node_config=nc, state=RecordDict(),
                   run_config=dict(run_config))


def test_missing_data_dir_gives_a_clean_error_reply(three: dict, tmp_path: Path) -> None:
    cfg = resolve(three)
    arrays = pack_arrays(*load_or_pretrain(cfg, open_workspace(cfg))[:2])
    ctx = _node_ctx(three, 0, tmp_path / "missing", tmp_path / "state")
    for kind in ("evaluate", "train"):
        reply = app(_msg(arrays, cfg, 1, kind), ctx)
        assert reply.has_error()
        assert f"{tmp_path / 'missing'}: no such directory" in reply.error.reason


def test_personal_state_survives_a_node_restart(three: dict, tmp_path: Path) -> None:
    cfg = resolve(three)
    ws = open_workspace(cfg)
    (d1,) = export_node_data(ws.source, ws.split, tmp_path / "n", clients=[1])
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    arrays = pack_arrays(backbone, phi)
    state = tmp_path / "state"
    assert not app(_msg(arrays, cfg, 1), _node_ctx(three, 1, d1, state)).has_error()

    def round2() -> dict[str, torch.Tensor]:
        node_data._NODES.clear()  # a restarted SuperNode: new process, nothing in memory
        workspace._WORKSPACES.clear()
        reply = app(_msg(arrays, cfg, 2), _node_ctx(three, 1, d1, state))
        assert not reply.has_error(), reply.error
        return reply.content["arrays"].to_torch_state_dict()

    saved = tmp_path / "saved"
    shutil.copytree(state, saved)
    resumed = round2()
    assert ClientStateStore(state, "exp", 1).load_before(3).last_round == 2
    shutil.rmtree(state)  # the same round 2 without the state of round 1
    fresh = round2()
    shutil.rmtree(state)
    shutil.copytree(saved, state)
    again = round2()
    assert any(not torch.equal(resumed[k], fresh[k]) for k in resumed)  # the state is used
    assert all(torch.equal(resumed[k], again[k]) for k in resumed)  # and reproducibly


class SilentNodeGrid(InProcessGrid):
    """Node ``silent`` takes the message of round ``rnd`` but never replies (it died)."""

    def __init__(self, *a, silent: int, rnd: int, **kw) -> None:
        super().__init__(*a, **kw)
        self.silent, self.rnd = silent, rnd

    def push_messages(self, messages):
        messages = list(messages)
        keep = []
        for m in messages:
            conf = m.content["config"] if "config" in m.content else {}
            if not (m.metadata.dst_node_id == self.silent and m.metadata.message_type == "train"
                    and int(conf.get("server-round", -1)) == self.rnd):
                keep.append(m)
        return super().push_messages(keep)


def test_silent_node_is_counted_as_failed_and_the_round_aggregates_the_rest(
        three: dict) -> None:
    cfg = resolve(three)
    grid = SilentNodeGrid(app, 3, cfg.to_dict(), silent=1002, rnd=2)
    report = run_federation(grid, cfg)
    r1, r2 = report["rounds"]
    assert (r1["nodes-expected"], r1["nodes-replied"], r1["nodes-failed"]) == (3, 3, 0)
    assert (r2["nodes-expected"], r2["nodes-replied"], r2["nodes-failed"]) == (3, 2, 1)
    assert r2["aggregated"] and r2["num-replies"] == 2
    assert r2["failures"] == [{"node_id": 1002, "reason": "no reply within round-timeout "
                                                          f"({cfg.round_timeout:g} s)"}]
    assert report["failures"]["2"] == r2["failures"]


def test_node_local_federation_equals_the_whole_dataset_one(three: dict, tmp_path: Path) -> None:
    """Same config and seed: nodes reading only their exported folders end exactly where
    nodes reading the whole dataset end (same pixels, same seeds, float64 aggregation; the
    client average of the metrics may sum in another order)."""
    cfg = resolve(three)
    ws = open_workspace(cfg)
    dirs = export_node_data(ws.source, ws.split, tmp_path / "nodes")
    whole = run_federation(InProcessGrid(app, 3, cfg.to_dict()), cfg)
    cfg2 = cfg.replace(output_dir=str(tmp_path / "out2"))
    ncs = [{"partition-id": i, "num-partitions": 3, "data-dir": str(d),
            "state-dir": str(tmp_path / f"state{i}")} for i, d in enumerate(dirs)]
    local = run_federation(InProcessGrid(app, 3, cfg2.to_dict(), node_configs=ncs), cfg2)
    def same(a, b) -> bool:
        """Equal up to float summation order of the client average (1e-12); NaN (a FAR level
        the data cannot reach) equals NaN."""
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)

    assert same(local["final"]["generic"], whole["final"]["generic"])
    assert same(local["final"]["personalized_by_model"], whole["final"]["personalized_by_model"])


def test_export_command(three: dict, tmp_path: Path) -> None:
    conf = {k: v for k, v in three.items() if k != "output-dir"}
    rc = cli_main(["export", "--out", str(tmp_path / "x"), "--format", "folder", "--clients",
                   "2", "--run-config", format_run_config(conf)])
    assert rc == 0
    assert (tmp_path / "x" / "client-0002" / "node.json").exists()
    assert (tmp_path / "x" / "split.json").exists()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["client-0002", "split.json"]


def test_certificates_and_node_keys(tmp_path: Path) -> None:
    paths = make_ca_and_server_cert(tmp_path / "c", ["127.0.0.1", "localhost"])
    cert = x509.load_pem_x509_certificate(paths["server_cert"].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ctx = ssl.create_default_context(cafile=str(paths["ca_cert"]))  # the CA loads as a trust root
    ctx.load_cert_chain(paths["server_cert"], paths["server_key"])  # key matches certificate
    assert (paths["server_key"].stat().st_mode & 0o077) == 0
    priv, pub = make_node_key(tmp_path / "k", "node-0")
    key = load_ssh_private_key(priv.read_bytes(), None)
    assert key.curve.name == "secp384r1"
    from flwr.cli.supernode.register import try_load_public_key  # what `flwr supernode register`
    assert b"PUBLIC KEY" in try_load_public_key(pub)
