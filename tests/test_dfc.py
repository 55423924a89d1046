"""The DFC head: identity at init, Omega from W, loss = dfc_bce_loss on Pi(f), state round-trip."""

from __future__ import annotations

import pytest
import torch

from fedfr.dfc import DFCHead
from fedfr.losses import dfc_bce_loss


def test_forward_is_identity_at_init() -> None:
    head = DFCHead(6, 3)
    f = torch.randn(5, 6)
    assert torch.equal(head(f), f)
    assert torch.equal(head.pi.weight, torch.eye(6)) and torch.equal(head.pi.bias, torch.zeros(6))
    assert head.bias.shape == () and head.bias.item() == 0.0
    assert head.omega.shape == (3, 6)


def test_init_omega_copies_normalised_rows() -> None:
    head = DFCHead(2, 2)
    w = torch.tensor([[3.0, 4.0], [0.0, -0.5]])
    head.init_omega(w)
    assert torch.allclose(head.omega, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    assert head.omega.requires_grad  # still a trainable parameter
    w[0, 0] = 100.0  # a copy, not a view
    assert head.omega[0, 0].item() == pytest.approx(0.6)
    with pytest.raises(ValueError, match="w: expected shape"):
        head.init_omega(torch.zeros(3, 2))


def test_loss_matches_functional_on_transformed_features() -> None:
    torch.manual_seed(0)
    head = DFCHead(4, 3)
    head.init_omega(torch.randn(3, 4))
    with torch.no_grad():
        head.pi.weight.add_(0.1 * torch.randn(4, 4))
        head.pi.bias.fill_(0.05)
        head.bias.fill_(-0.2)
    f, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, -1, -1, 1])
    got = head.loss(f, labels, s=30.0, m=0.4, lam=0.7, t=3.0)
    expected = dfc_bce_loss(f @ head.pi.weight.t() + head.pi.bias, head.omega, head.bias, labels,
                            s=30.0, m=0.4, lam=0.7, t=3.0)
    assert torch.allclose(got, expected, atol=1e-6)
    got.backward()
    for p in (head.pi.weight, head.pi.bias, head.omega, head.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert head.bias.grad is not None and head.bias.grad.abs().item() > 0


def test_personal_state_round_trip() -> None:
    torch.manual_seed(1)
    a = DFCHead(4, 2)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn_like(p))
    state = a.personal_state()
    assert set(state) == {"pi.weight", "pi.bias", "omega", "bias"}
    b = DFCHead(4, 2)
    b.load_personal_state(state)
    for key, value in b.personal_state().items():
        assert torch.equal(value, state[key]), key
    f = torch.randn(3, 4)
    assert torch.equal(a(f), b(f))
    # the saved state is detached from the live head
    with torch.no_grad():
        a.bias.add_(1.0)
    assert not torch.equal(a.bias, state["bias"])


def test_load_personal_state_rejects_wrong_keys_and_shapes() -> None:
    state = DFCHead(4, 2).personal_state()
    with pytest.raises(ValueError, match="omega"):
        DFCHead(4, 3).load_personal_state(state)
    with pytest.raises(ValueError, match="missing keys"):
        DFCHead(4, 2).load_personal_state({k: v for k, v in state.items() if k != "bias"})
    with pytest.raises(ValueError, match="f: expected shape"):
        DFCHead(4, 2)(torch.randn(2, 5))
