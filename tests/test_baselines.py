"""Baselines: FedFace's spread-out regulariser, Fine-tune / KD losses, the DFC-CosFace variant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedfr.dfc import DFCHead
from fedfr.face.training.personalize import kd_loss
from fedfr.fedface import single_identity_loss, spread_out_loss, spread_out_step
from fedfr.losses import cosface_loss
from server.inprocess import run_inprocess


def test_spread_out_value_matches_hand_computation():
    w = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [1.0, 0.2]])
    u = w.numpy() / np.linalg.norm(w.numpy(), axis=1, keepdims=True)
    nu, total = 0.4, 0.0
    for i in range(4):
        for j in range(4):
            if i != j:
                d = 0.5 * (1.0 - float(u[i] @ u[j]))
                total += max(0.0, nu - d) ** 2
    assert float(spread_out_loss(w, nu)) == pytest.approx(total / 4, rel=1e-5)
    far = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # d = 1 > nu: no penalty
    assert float(spread_out_loss(far, nu)) == 0.0


def test_spread_out_gradient_matches_hand_derivation():
    theta, nu = 0.5, 0.4
    w0 = torch.tensor([1.0, 0.0], requires_grad=True)
    w1 = torch.tensor([math.cos(theta), math.sin(theta)])
    loss = spread_out_loss(torch.stack([w0, w1]), nu)
    loss.backward()
    d = 0.5 * (1.0 - math.cos(theta))
    # L = (1/2) * 2 (nu - d)^2 and dd/dw0 = -(w1 - cos(theta) w0) / 2 for unit w0
    expected = (nu - d) * (w1 - math.cos(theta) * torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx((nu - d) ** 2, rel=1e-5)
    assert torch.allclose(w0.grad, expected, atol=1e-5)


def test_spread_out_step_separates_close_proxies():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 8, generator=gen) + 0.1 * torch.randn(6, 8, generator=gen)
    new, before, after = spread_out_step(w, margin=0.4, steps=20, lr=0.5)
    assert after < before
    cos = lambda x: torch.nn.functional.normalize(x, dim=1) @ \
        torch.nn.functional.normalize(x, dim=1).t()  # noqa: E731
    off = ~torch.eye(6, dtype=torch.bool)
    assert cos(new)[off].max() < cos(w)[off].max()
    same, b1, a1 = spread_out_step(w[:1], steps=5)
    assert torch.equal(same, w[:1]) and b1 == a1 == 0.0


def test_single_identity_loss():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert float(single_identity_loss(f, torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="proxy"):
        single_identity_loss(f, torch.ones(2, 2))


def test_kd_loss_hand_value_and_zero_at_teacher():
    t = torch.tensor([[2.0, 0.0]])
    assert float(kd_loss(t.clone(), t, 2.0)) == pytest.approx(0.0, abs=1e-7)
    s = torch.tensor([[0.0, 0.0]])
    p = torch.softmax(t / 2.0, dim=1)[0]
    expected = 4.0 * float((p * (p.log() - math.log(0.5))).sum())
    assert float(kd_loss(s, t, 2.0)) == pytest.approx(expected, rel=1e-5)
    s.requires_grad_(True)
    kd_loss(s, t, 2.0).backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]  # the student moves toward the teacher's class 0
    with pytest.raises(ValueError, match="logits"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_dfc_cosface_variant_uses_private_rows_only():
    head = DFCHead(4, 3)
    head.init_omega(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))
    f = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = torch.tensor([0, 2, -1, 1, -1])
    own = labels >= 0
    got = head.loss(f, labels, s=30.0, m=0.4, kind="cosface")
    want = cosface_loss(head(f[own]), head.omega, labels[own], s=30.0, m=0.4) / 30.0
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    none = head.loss(f, torch.full((5,), -1), kind="cosface")
    none.backward()
    assert float(none) == 0.0 and float(f.grad.abs().sum()) == 0.0
    assert head.loss(f, labels, kind="bce").item() != pytest.approx(got.item())
    with pytest.raises(ValueError, match="'bce' or 'cosface'"):
        head.loss(f, labels, kind="arcface")


def test_dfc_cosface_and_two_stage_personalisation_run(tiny_config: dict):
    report = run_inprocess({**tiny_config, "dfc-loss": "cosface", "personalize-epochs": 1,
                            "final-eval-models": "global,local,personal,finetune,kd"})
    by_model = report["final"]["personalized_by_model"]
    assert set(by_model) == {"global", "local", "personal", "finetune", "kd"}
    for name, metrics in by_model.items():
        assert 0.0 <= metrics["rank1"] <= 1.0, name
    # fine-tuning moves the backbone away from Theta_g: its protocol differs from Theta_g's
    assert by_model["finetune"] != by_model["global"]


def test_fedface_strategy_requires_proxies_and_separates_them():
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

    from strategies.fedface import FedFace

    strat = FedFace(min_train_nodes=1, min_available_nodes=1, spread_steps=5, spread_lr=0.5)
    sent = ArrayRecord({"backbone.w": Array(np.zeros((2, 2), np.float32))})
    strat.expect_arrays(1, sent)
    metrics = MetricRecord({"num-examples": 4, "num-hard-negatives": 0, "num-steps": 1})
    bare = RecordDict({"arrays": sent, "metrics": metrics})
    assert "lacks 'proxies'" in strat._parse_reply(bare, strat._sent_spec)
    prox = np.array([[1.0, 0.0], [1.0, 0.05]], np.float32)
    good = RecordDict({"arrays": ArrayRecord({"backbone.w": Array(np.ones((2, 2), np.float32)),
                                              "proxies": Array(prox)}), "metrics": metrics})
    arrays, weight, _ = strat._parse_reply(good, strat._sent_spec)
    assert weight == 4.0 and set(arrays) == {"backbone.w"}
    nan = RecordDict({"arrays": ArrayRecord({"backbone.w": Array(np.ones((2, 2), np.float32)),
                                             "proxies": Array(prox * np.nan)}),
                      "metrics": metrics})
    assert "non-finite" in strat._parse_reply(nan, strat._sent_spec)
