"""The ClientApp's contract: what a reply carries (privacy), and personal state across rounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict

from clients.app import REPLY_METRIC_KEYS, app, pack_arrays
from fedfr.client_state import ClientStateStore
from fedfr.config import resolve
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace


def _setup(run_config: dict):
    cfg = resolve(run_config)
    ws = open_workspace(cfg)
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    return cfg, ws, backbone, phi


def _context(run_config: dict, pid: int = 0) -> Context:
    return Context(run_id=1, node_id=11, node_config={"partition-id": pid, "num-partitions": 2},
                   state=RecordDict(), run_config=dict(run_config))


def _train_msg(arrays, cfg, rnd: int, experiment: str = "exp") -> Message:
    conf = ConfigRecord({"server-round": rnd, "experiment-id": experiment,
                         "config-digest": cfg.digest()})
    msg = Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=11,
                  message_type="train")
    msg.metadata.__dict__["_message_id"] = f"m{rnd}"
    return msg


def test_reply_carries_backbone_phi_and_counts_only(tiny_config: dict) -> None:
    cfg, ws, backbone, phi = _setup(tiny_config)
    sent = pack_arrays(backbone, phi)
    reply = app(_train_msg(sent, cfg, 1), _context(tiny_config))
    assert not reply.has_error()
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    arrays = reply.content["arrays"]
    assert set(arrays.keys()) == set(sent.keys())
    assert all(k.startswith("backbone.") for k in arrays.keys() if k != "phi")
    assert set(reply.content["metrics"].keys()) == set(REPLY_METRIC_KEYS)
    k_l, d = cfg.ids_per_client, cfg.embedding_size
    n_l = k_l * cfg.train_per_id
    assert reply.content["metrics"]["num-examples"] == n_l
    # nothing shaped like a private matrix (W_l or Omega_l: K_l x d), the DFC converter
    # (a d x d matrix that is not a backbone weight), features (N_l x d) or labels (N_l,)
    for key, arr in arrays.items():
        shape = tuple(arr.shape)
        assert shape not in {(k_l, d), (n_l, d), (n_l,)}, key
        if shape == (d, d):
            assert key.startswith("backbone."), key
    assert tuple(arrays["phi"].shape) == (cfg.num_public_ids, d)
    # the arrays changed (training happened) but only where they were sent
    before = sent.to_torch_state_dict()
    after = arrays.to_torch_state_dict()
    assert not torch.equal(before["phi"], after["phi"])


def test_fedavg_reply_has_no_phi(tiny_config: dict) -> None:
    conf = {**tiny_config, "strategy": "fedavg"}
    cfg, ws, backbone, _ = _setup(conf)
    reply = app(_train_msg(pack_arrays(backbone, None), cfg, 1), _context(conf))
    assert not reply.has_error()
    assert "phi" not in reply.content["arrays"].keys()
    assert reply.content["metrics"]["num-hard-negatives"] == 0


def test_personal_state_persists_across_rounds(tiny_config: dict) -> None:
    cfg, ws, backbone, phi = _setup(tiny_config)
    ctx = _context(tiny_config)
    app(_train_msg(pack_arrays(backbone, phi), cfg, 1), ctx)
    store = ClientStateStore(cfg.output_path / "client-state", "exp", 0)
    s1 = store.load_before(2)
    assert s1 is not None and s1.last_round == 1 and s1.dfc is not None
    assert s1.prev_backbone is not None
    # round 2 with lr = 0: nothing trains, so the state after round 2 equals the state loaded
    # from round 1 (a client that re-initialised W / DFC instead would differ)
    frozen = {**tiny_config, "lr": 0.0}
    cfg0 = resolve(frozen)
    reply = app(_train_msg(pack_arrays(backbone, phi), cfg0, 2), _context(frozen))
    assert not reply.has_error(), reply.error
    s2 = store.load_before(3)
    assert s2 is not None and s2.last_round == 2
    assert torch.equal(s1.w, s2.w)
    for key in s1.dfc:
        assert torch.equal(s1.dfc[key], s2.dfc[key]), key
    pi = s1.dfc[[k for k in s1.dfc if "pi" in k and "weight" in k][0]]
    assert not torch.allclose(pi, torch.eye(cfg.embedding_size))  # trained in round 1


def test_mismatched_config_is_refused(tiny_config: dict) -> None:
    cfg, ws, backbone, phi = _setup(tiny_config)
    other = resolve({**tiny_config, "hn-threshold": 0.1})
    with pytest.raises(ValueError, match="digest"):
        app(_train_msg(pack_arrays(backbone, phi), other, 1), _context(tiny_config))


def test_evaluate_returns_scalars_only(tiny_config: dict) -> None:
    cfg, ws, backbone, phi = _setup(tiny_config)
    conf = ConfigRecord({"server-round": 0, "experiment-id": "exp",
                         "config-digest": cfg.digest(), "eval-models": "global"})
    msg = Message(RecordDict({"arrays": pack_arrays(backbone, phi), "config": conf}),
                  dst_node_id=11, message_type="evaluate")
    msg.metadata.__dict__["_message_id"] = "e0"
    reply = app(msg, _context(tiny_config))
    assert set(reply.content.keys()) == {"metrics"}
    metrics = reply.content["metrics"]
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert "global.rank1" in metrics and 0.0 <= metrics["global.rank1"] <= 1.0
    assert np.isfinite(metrics["global.rank1"])
