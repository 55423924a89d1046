"""FedFR's training losses (dissertation eqs. 7.1, 7.3, 7.5, 7.6) as pure functions + nn.Modules.

Every loss returns a scalar: the mean over the batch of the per-sample loss. Features and class
proxies are L2-normalised inside, so callers pass raw embeddings and raw weight matrices.
Shapes: B = batch size, d = embedding size, K = number of classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "cosine_logits",
    "cosface_loss",
    "balanced_cosface_loss",
    "model_contrastive_loss",
    "expand_cosine",
    "dfc_bce_loss",
    "CosFaceLoss",
    "ModelContrastiveLoss",
    "DFCBCELoss",
]


# ------------------------------------------------------------------------------------------------
# input checks (raise ValueError naming the argument and what was expected)
# ------------------------------------------------------------------------------------------------
def _check_matrix(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a 2-D tensor (rows, d), got {got}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")


def _check_same_dim(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} has feature size {a.shape[1]} but {name_b} has {b.shape[1]}")


def _check_labels(labels: Tensor, batch: int, low: int, high: int) -> Tensor:
    """Labels as a (B,) long tensor with every value in [low, high); returns the long tensor."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != batch:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected a 1-D tensor of length {batch}, got {got}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected an integer tensor, got dtype {labels.dtype}")
    labels = labels.long()
    if batch and (int(labels.min()) < low or int(labels.max()) >= high):
        raise ValueError(f"labels: expected values in [{low}, {high - 1}], got "
                         f"min {int(labels.min())} and max {int(labels.max())}")
    return labels


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")


# ------------------------------------------------------------------------------------------------
# CosFace (7.1) and balanced CosFace (7.3)
# ------------------------------------------------------------------------------------------------
def cosine_logits(features: Tensor, proxies: Tensor) -> Tensor:
    """Cosine similarity of every feature to every proxy.

    features: (B,d); proxies: (K,d); both L2-normalised here. Returns (B,K) in [-1, 1].
    """
    _check_matrix("features", features)
    _check_matrix("proxies", proxies)
    _check_same_dim("features", features, "proxies", proxies)
    if features.dtype != proxies.dtype:
        features, proxies = features.float(), proxies.float()
    return F.normalize(features, dim=1) @ F.normalize(proxies, dim=1).t()


def cosface_loss(features: Tensor, proxies: Tensor, labels: Tensor, s: float = 30.0,
                 m: float = 0.4) -> Tensor:
    """CosFace / additive-margin softmax (eq. 7.1), mean over the batch.

    features: (B,d); proxies: (K,d); labels: (B,) integer in 0..K-1. Logits are s*cos(theta_j)
    for j != y and s*(cos(theta_y) - m) for the target class; the loss is their cross-entropy.
    """
    _check_positive("s", s)
    cos = cosine_logits(features, proxies).float()
    labels = _check_labels(labels, features.shape[0], 0, proxies.shape[0])
    margin = F.one_hot(labels, proxies.shape[0]).to(cos.dtype) * m
    return F.cross_entropy(s * (cos - margin), labels)


def balanced_cosface_loss(features: Tensor, local_proxies: Tensor, public_proxies: Tensor,
                          labels: Tensor, s: float = 30.0, m: float = 0.4) -> Tensor:
    """Balanced CosFace (eq. 7.3): CosFace over the concatenated proxies [W_l ; Phi_l].

    features: (B,d); local_proxies W: (K_l,d); public_proxies Phi: (K_g,d); labels: (B,) over the
    concatenation, i.e. private images carry 0..K_l-1 and public images K_l + (public label).
    """
    _check_matrix("local_proxies", local_proxies)
    _check_matrix("public_proxies", public_proxies)
    _check_same_dim("local_proxies", local_proxies, "public_proxies", public_proxies)
    return cosface_loss(features, torch.cat([local_proxies, public_proxies]), labels, s=s, m=m)


# ------------------------------------------------------------------------------------------------
# model-contrastive regulariser (7.5)
# ------------------------------------------------------------------------------------------------
def model_contrastive_loss(f: Tensor, f_glob: Tensor, f_prev: Tensor, tau: float = 0.5) -> Tensor:
    """MOON model-contrastive loss (eq. 7.5), mean over the batch.

    f = Theta_l^t(x), f_glob = Theta_g^t(x), f_prev = Theta_l^{t-1}(x), each (B,d). Per sample:
    -log(e^{cos(f,f_glob)/tau} / (e^{cos(f,f_glob)/tau} + e^{cos(f,f_prev)/tau})), which equals
    softplus((cos(f,f_prev) - cos(f,f_glob)) / tau). Equals log 2 when f_glob == f_prev.
    """
    _check_positive("tau", tau)
    for name, x in (("f", f), ("f_glob", f_glob), ("f_prev", f_prev)):
        _check_matrix(name, x)
    if f.shape != f_glob.shape or f.shape != f_prev.shape:
        raise ValueError(f"f, f_glob, f_prev: expected equal shapes, got {tuple(f.shape)}, "
                         f"{tuple(f_glob.shape)}, {tuple(f_prev.shape)}")
    fn = F.normalize(f.float(), dim=1)
    pos = (fn * F.normalize(f_glob.float(), dim=1)).sum(dim=1)
    neg = (fn * F.normalize(f_prev.float(), dim=1)).sum(dim=1)
    return F.softplus((neg - pos) / tau).mean()


# ------------------------------------------------------------------------------------------------
# DFC margin-based one-vs-all binary cross-entropy (7.6)
# ------------------------------------------------------------------------------------------------
def expand_cosine(z: Tensor, t: float = 3.0) -> Tensor:
    """g(z) = 2*((z+1)/2)**t - 1, mapping [-1,1] onto [-1,1] (g(-1) = -1, g(1) = 1).

    z is clamped to [-1, 1] first so that rounding (|cos| slightly above 1) cannot produce NaN
    for a non-integer t.
    """
    _check_positive("t", t)
    return 2.0 * ((z.clamp(-1.0, 1.0) + 1.0) / 2.0).pow(t) - 1.0


def dfc_bce_loss(f_prime: Tensor, omega: Tensor, bias: Tensor, labels: Tensor, s: float = 30.0,
                 m: float = 0.4, lam: float = 0.7, t: float = 3.0) -> Tensor:
    """Margin-based one-vs-all binary cross-entropy of the DFC branch (eq. 7.6), batch mean.

    f_prime: (B,d) transformed features f' = Pi(f); omega: (K_l,d) one-vs-all weights; bias: the
    learned scalar b (0-d or 1-element tensor); labels: (B,) integer in -1..K_l-1, where -1 marks a
    public / hard-negative image (a negative for every local class).

    With c_j = cos(f', Omega_j) and g = expand_cosine(., t), sign convention (the printed eq. 7.6):
        positive logit  z+_j = s*(g(c_j) - m) + b,   loss lam/s     * softplus(-z+_j)
        negative logit  z-_j = s*(g(c_j) + m) + b,   loss (1-lam)/s * softplus(z-_j)
    so the one learned b shifts every logit the same way. A sample of class k pays the positive
    term for j = k and the negative term for every j != k; a label -1 sample pays the negative
    term for all K_l classes. Per-sample losses are summed over classes and averaged over B.
    """
    _check_positive("s", s)
    _check_positive("t", t)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a value in [0, 1], got {lam!r}")
    if not isinstance(bias, Tensor) or bias.numel() != 1:
        got = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"bias: expected a scalar tensor, got {got}")
    cos = cosine_logits(f_prime, omega).float()
    labels = _check_labels(labels, f_prime.shape[0], -1, omega.shape[0])
    g = expand_cosine(cos, t)
    b = bias.reshape(()).float()
    positive = labels.unsqueeze(1) == torch.arange(omega.shape[0], device=labels.device)
    pos_loss = (lam / s) * F.softplus(-(s * (g - m) + b))
    neg_loss = ((1.0 - lam) / s) * F.softplus(s * (g + m) + b)
    per_sample = torch.where(positive, pos_loss, neg_loss).sum(dim=1)
    return per_sample.mean()


# ------------------------------------------------------------------------------------------------
# nn.Module wrappers holding the hyper-parameters
# ------------------------------------------------------------------------------------------------
class CosFaceLoss(nn.Module):
    """CosFace (eq. 7.1 / 7.3) with fixed s and m; forward(features, proxies, labels)."""

    def __init__(self, s: float = 30.0, m: float = 0.4) -> None:
        super().__init__()
        _check_positive("s", s)
        self.s, self.m = float(s), float(m)

    def forward(self, features: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
        return cosface_loss(features, proxies, labels, s=self.s, m=self.m)

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}"


class ModelContrastiveLoss(nn.Module):
    """Model-contrastive loss (eq. 7.5) with temperature tau; forward(f, f_glob, f_prev)."""

    def __init__(self, tau: float = 0.5) -> None:
        super().__init__()
        _check_positive("tau", tau)
        self.tau = float(tau)

    def forward(self, f: Tensor, f_glob: Tensor, f_prev: Tensor) -> Tensor:
        return model_contrastive_loss(f, f_glob, f_prev, tau=self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class DFCBCELoss(nn.Module):
    """DFC binary loss (eq. 7.6) with s', m', lambda, t'; forward(f_prime, omega, bias, labels)."""

    def __init__(self, s: float = 30.0, m: float = 0.4, lam: float = 0.7, t: float = 3.0) -> None:
        super().__init__()
        _check_positive("s", s)
        _check_positive("t", t)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam: expected a value in [0, 1], got {lam!r}")
        self.s, self.m, self.lam, self.t = float(s), float(m), float(lam), float(t)

    def forward(self, f_prime: Tensor, omega: Tensor, bias: Tensor, labels: Tensor) -> Tensor:
        return dfc_bce_loss(f_prime, omega, bias, labels, s=self.s, m=self.m, lam=self.lam,
                            t=self.t)

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}, lam={self.lam}, t={self.t}"
