"""The local round (FedFR / FedAvg switches), pre-training cache and the central upper bound."""

from __future__ import annotations

import math

import torch

from fedfr.config import resolve
from fedfr.face.evaluation.run import evaluate_personalized_central
from fedfr.face.models import model_from_config
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.central import train_central
from fedfr.face.training.local import LocalData, train_local_round
from fedfr.face.training.pretrain import load_or_pretrain, pretrained_checkpoint_path
from fedfr.face.workspace import open_workspace


def _round(conf: dict, state=None, rnd: int = 1):
    cfg = resolve(conf).with_clients(2)
    ws = open_workspace(cfg)
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    data = ws.client(0)
    pub_x, pub_y = ws.public()
    phi = phi if cfg.uses_public_data else None
    res = train_local_round(lambda: model_from_config(cfg), backbone, phi,
                            LocalData(data.train_images, data.train_labels, data.num_classes),
                            cfg, state, seeded_generator(cfg.seed, rnd, 0),
                            public_images=pub_x, public_labels=pub_y, server_round=rnd)
    return cfg, ws, res


def test_fedavg_round_uses_private_data_only(tiny_config: dict) -> None:
    cfg, ws, res = _round({**tiny_config, "strategy": "fedavg", "contrastive": False,
                           "dfc": False})
    assert res.phi is None and res.num_hard_negatives == 0
    assert res.num_examples == cfg.ids_per_client * cfg.train_per_id
    assert res.state.dfc is None and res.losses["bce"] == 0.0 and res.losses["con"] == 0.0
    n = res.num_examples
    assert res.num_steps == cfg.local_epochs * (n // cfg.batch_size + (n % cfg.batch_size > 1))


def test_hard_negative_switch(tiny_config: dict) -> None:
    _, ws, all_pub = _round({**tiny_config, "hard-negatives": False, "contrastive": False})
    assert all_pub.num_hard_negatives == len(ws.split.public)
    _, _, strict = _round({**tiny_config, "hn-threshold": 0.99, "contrastive": False})
    assert strict.num_hard_negatives < len(ws.split.public)
    _, _, none = _round({**tiny_config, "hn-threshold": 1.0, "contrastive": False})
    assert none.num_hard_negatives == 0


def test_contrastive_term_needs_a_previous_local_model(tiny_config: dict) -> None:
    cfg, _, first = _round(tiny_config)
    assert first.losses["con"] == 0.0  # first participation: skipped (= f_prev = Theta_g^0)
    assert first.losses["bce"] > 0.0
    _, _, second = _round(tiny_config, state=first.state, rnd=2)
    assert second.losses["con"] > 0.0
    assert second.state.last_round == 2
    # the DFC branch continued from round 1's state rather than restarting
    assert not torch.equal(second.state.dfc["pi.weight"], torch.eye(cfg.embedding_size))


def test_pretrained_checkpoint_is_reused(tiny_config: dict) -> None:
    cfg = resolve(tiny_config).with_clients(2)
    ws = open_workspace(cfg)
    b1, phi1, info1 = load_or_pretrain(cfg, ws)
    b2, phi2, info2 = load_or_pretrain(cfg, ws)
    assert info2["loaded"] and pretrained_checkpoint_path(cfg, ws.split.digest()).exists()
    assert torch.equal(phi1, phi2)
    assert phi1.shape == (cfg.num_public_ids, cfg.embedding_size)


def test_central_upper_bound_trains_and_evaluates(tiny_config: dict) -> None:
    cfg = resolve(tiny_config).with_clients(2)
    ws = open_workspace(cfg)
    b0, phi0, _ = load_or_pretrain(cfg, ws)
    central = train_central(cfg, ws, b0, phi0, epochs=1)
    assert central.keys() == b0.keys()
    assert any(not torch.equal(central[k], b0[k]) for k in b0)
    metrics = evaluate_personalized_central(cfg, ws, central)
    assert metrics["num_clients"] == 2 and math.isfinite(metrics["rank1"])
