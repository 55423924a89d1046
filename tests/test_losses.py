"""Losses of eqs. 7.1, 7.3, 7.5, 7.6 against values computed by hand with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedfr.losses import (
    CosFaceLoss,
    DFCBCELoss,
    ModelContrastiveLoss,
    balanced_cosface_loss,
    cosface_loss,
    cosine_logits,
    dfc_bce_loss,
    expand_cosine,
    model_contrastive_loss,
)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def g(z: float, t: float = 3.0) -> float:
    return 2.0 * ((z + 1.0) / 2.0) ** t - 1.0


# ------------------------------------------------------------------------------------------------
# cosine logits and CosFace
# ------------------------------------------------------------------------------------------------
def test_cosine_logits_normalises_both_sides() -> None:
    feats = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    proxies = torch.tensor([[10.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    expected = torch.tensor([[0.6, 0.8, 7 / 5 / math.sqrt(2)],
                             [0.0, -1.0, -1 / math.sqrt(2)]])
    assert torch.allclose(cosine_logits(feats, proxies), expected, atol=1e-6)


def test_cosface_matches_hand_computed_value() -> None:
    # feature at 0 deg, proxies at 0, 60, 120 deg: cos = 1, 0.5, -0.5; target class 1
    s, m = 30.0, 0.4
    feats = torch.tensor([unit(0.0), unit(90.0)])
    proxies = torch.tensor([unit(0.0), unit(60.0), unit(120.0)]) * 3.0
    labels = torch.tensor([1, 2])
    per = []
    for f_deg, y in ((0.0, 1), (90.0, 2)):
        cos = [math.cos(math.radians(f_deg - p)) for p in (0.0, 60.0, 120.0)]
        logits = [s * (c - m) if j == y else s * c for j, c in enumerate(cos)]
        per.append(-logits[y] + math.log(sum(math.exp(z) for z in logits)))
    got = cosface_loss(feats, proxies, labels, s=s, m=m)
    assert got.shape == ()
    assert got.item() == pytest.approx(sum(per) / 2, rel=1e-5)


def test_cosface_without_margin_is_cross_entropy_on_scaled_cosine() -> None:
    gen = torch.Generator().manual_seed(0)
    feats, proxies = torch.randn(8, 5, generator=gen), torch.randn(4, 5, generator=gen)
    labels = torch.randint(0, 4, (8,), generator=gen)
    cos = F.normalize(feats, dim=1) @ F.normalize(proxies, dim=1).t()
    expected = F.cross_entropy(16.0 * cos, labels)
    assert torch.allclose(cosface_loss(feats, proxies, labels, s=16.0, m=0.0), expected, atol=1e-6)
    # a positive margin only makes the target logit smaller, so the loss grows
    assert cosface_loss(feats, proxies, labels, s=16.0, m=0.4) > expected


def test_balanced_cosface_is_cosface_over_concatenated_proxies() -> None:
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(6, 4, generator=gen)
    w, phi = torch.randn(2, 4, generator=gen), torch.randn(3, 4, generator=gen)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])  # 0..1 local, 2..4 public (K_l + public label)
    got = balanced_cosface_loss(feats, w, phi, labels, s=30.0, m=0.4)
    expected = cosface_loss(feats, torch.cat([w, phi]), labels, s=30.0, m=0.4)
    assert torch.allclose(got, expected)
    # the public proxies add negatives: with them a private sample's loss can only grow
    local = labels < 2
    alone = cosface_loss(feats[local], w, labels[local])
    assert balanced_cosface_loss(feats[local], w, phi, labels[local]) > alone


def test_cosface_rejects_bad_labels_and_shapes() -> None:
    feats, proxies = torch.randn(2, 3), torch.randn(3, 3)
    with pytest.raises(ValueError, match="labels"):
        cosface_loss(feats, proxies, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        cosface_loss(feats, proxies, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="feature size"):
        cosface_loss(feats, torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="s"):
        cosface_loss(feats, proxies, torch.tensor([0, 1]), s=0.0)


def test_cosface_wrapper_holds_hyper_parameters() -> None:
    feats, proxies, labels = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 4, 2])
    loss = CosFaceLoss(s=20.0, m=0.3)
    assert torch.allclose(loss(feats, proxies, labels),
                          cosface_loss(feats, proxies, labels, s=20.0, m=0.3))


# ------------------------------------------------------------------------------------------------
# model-contrastive loss
# ------------------------------------------------------------------------------------------------
def test_contrastive_is_log2_when_global_equals_previous() -> None:
    gen = torch.Generator().manual_seed(2)
    f, other = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
    got = model_contrastive_loss(f, other, other.clone(), tau=0.5)
    assert got.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_contrastive_matches_hand_value_and_decreases_towards_global() -> None:
    tau = 0.5
    f_glob, f_prev = torch.tensor([unit(0.0)]), torch.tensor([unit(90.0)])
    values = []
    for deg in (80.0, 45.0, 10.0, 0.0):
        got = model_contrastive_loss(torch.tensor([unit(deg)]) * 2.0, f_glob, f_prev, tau=tau)
        pos, neg = math.cos(math.radians(deg)), math.cos(math.radians(90.0 - deg))
        expected = -math.log(math.exp(pos / tau) / (math.exp(pos / tau) + math.exp(neg / tau)))
        assert got.item() == pytest.approx(expected, rel=1e-5)
        values.append(got.item())
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    wrapped = ModelContrastiveLoss(tau=tau)(torch.tensor([unit(45.0)]), f_glob, f_prev)
    assert wrapped.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_contrastive_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        model_contrastive_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(3, 3))


# ------------------------------------------------------------------------------------------------
# g(z) and the DFC binary loss
# ------------------------------------------------------------------------------------------------
def test_expand_cosine_fixed_points_and_midpoint() -> None:
    z = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    got = expand_cosine(z, t=3.0)
    expected = torch.tensor([-1.0, 2 * 0.5**3 - 1, 2 * 0.75**3 - 1, 1.0])
    assert torch.allclose(got, expected, atol=1e-7)
    # rounding just outside [-1, 1] stays finite for a non-integer exponent
    assert torch.isfinite(expand_cosine(torch.tensor([-1.0000001, 1.0000001]), t=2.5)).all()


def _dfc_by_hand(f_deg: float, omega_deg: list[float], label: int, b: float, s: float, m: float,
                 lam: float, t: float) -> float:
    total = 0.0
    for j, w_deg in enumerate(omega_deg):
        c = math.cos(math.radians(f_deg - w_deg))
        if j == label:
            total += lam / s * math.log1p(math.exp(-s * (g(c, t) - m) - b))
        else:
            total += (1 - lam) / s * math.log1p(math.exp(s * (g(c, t) + m) + b))
    return total


def test_dfc_loss_of_class_sample_and_public_sample_by_hand() -> None:
    s, m, lam, t, b = 30.0, 0.4, 0.7, 3.0, 0.3
    omega_deg = [0.0, 90.0, 200.0]
    omega = torch.tensor([unit(d) for d in omega_deg]) * 1.7
    bias = torch.tensor(b)
    # sample of class 0 at 20 deg, public sample (label -1) at 100 deg
    class_k = _dfc_by_hand(20.0, omega_deg, 0, b, s, m, lam, t)
    public = _dfc_by_hand(100.0, omega_deg, -1, b, s, m, lam, t)
    got_k = dfc_bce_loss(torch.tensor([unit(20.0)]), omega, bias, torch.tensor([0]), s, m, lam, t)
    got_p = dfc_bce_loss(torch.tensor([unit(100.0)]), omega, bias, torch.tensor([-1]), s, m, lam,
                         t)
    assert got_k.item() == pytest.approx(class_k, rel=1e-5)
    assert got_p.item() == pytest.approx(public, rel=1e-5)
    both = dfc_bce_loss(torch.tensor([unit(20.0), unit(100.0)]), omega, bias,
                        torch.tensor([0, -1]), s, m, lam, t)
    assert both.item() == pytest.approx((class_k + public) / 2, rel=1e-5)
    # the same point counted as class 1 instead of public swaps one negative term for a positive
    as_class_1 = dfc_bce_loss(torch.tensor([unit(100.0)]), omega, bias, torch.tensor([1]), s, m,
                              lam, t)
    c1 = math.cos(math.radians(10.0))
    swap = lam / s * softplus(-s * (g(c1) - m) - b) - (1 - lam) / s * softplus(s * (g(c1) + m) + b)
    assert as_class_1.item() == pytest.approx(public + swap, rel=1e-5)


def test_dfc_bias_sign_convention() -> None:
    # one class, one positive sample: raising b raises the positive logit, lowering the loss;
    # one negative (public) sample: raising b raises its loss
    omega = torch.tensor([unit(0.0)])
    bias = torch.zeros((), requires_grad=True)
    dfc_bce_loss(torch.tensor([unit(30.0)]), omega, bias, torch.tensor([0])).backward()
    assert bias.grad is not None and bias.grad.item() < 0
    bias.grad = None
    dfc_bce_loss(torch.tensor([unit(30.0)]), omega, bias, torch.tensor([-1])).backward()
    assert bias.grad is not None and bias.grad.item() > 0


def test_dfc_wrapper_and_label_checks() -> None:
    gen = torch.Generator().manual_seed(3)
    fp, omega = torch.randn(4, 3, generator=gen), torch.randn(2, 3, generator=gen)
    labels, bias = torch.tensor([0, -1, 1, -1]), torch.tensor([0.1])
    expected = dfc_bce_loss(fp, omega, bias, labels, s=20.0, m=0.2, lam=0.6, t=2.0)
    assert torch.allclose(DFCBCELoss(s=20.0, m=0.2, lam=0.6, t=2.0)(fp, omega, bias, labels),
                          expected)
    with pytest.raises(ValueError, match="labels"):
        dfc_bce_loss(fp, omega, bias, torch.tensor([0, -2, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        dfc_bce_loss(fp, omega, bias, torch.tensor([0, 2, 1, 1]))
    with pytest.raises(ValueError, match="bias"):
        dfc_bce_loss(fp, omega, torch.zeros(2), labels)
    with pytest.raises(ValueError, match="lam"):
        DFCBCELoss(lam=1.5)


def test_gradients_finite_for_large_scale() -> None:
    s = 1000.0
    # features equal to a proxy (cos exactly 1) and opposite to another (cos exactly -1)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    proxies = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    labels = torch.tensor([1, 2, -1])
    total = (cosface_loss(feats, proxies, labels.clamp(min=0), s=s, m=0.4)
             + model_contrastive_loss(feats, feats.flip(0), feats.roll(1, 0), tau=0.01)
             + dfc_bce_loss(feats, proxies, bias, labels, s=s, m=0.4, t=2.5))
    assert torch.isfinite(total)
    total.backward()
    for grad in (feats.grad, proxies.grad, bias.grad):
        assert grad is not None and torch.isfinite(grad).all()
