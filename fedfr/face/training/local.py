"""One client's local round of FedFR (Algorithm 4, client side) and of the FedAvg baseline.

Given the global backbone Theta_g^t (and, for FedFR, the public class matrix Phi_g^t) the client
1. embeds its private images (and the public set D_g) with Theta_g^t,
2. selects hard negatives D_HN (public images with cosine > t_HN to any private image),
3. trains E epochs over D_l u D_HN on  alpha1 L_cos + alpha2 L_con + alpha3 L_BCE  (eq. 7.7),
4. returns Theta_l, Phi_l and its counts, keeping W_l, Pi_l, Omega_l, b and Theta_l to itself.

Choices (documented in docs/method.md):
- Contrastive term when the client has no previous local model (its first participation): skipped.
  In round 1 this is exactly the paper's f_prev = Theta_g^0, since then Theta_g^t = Theta_g^0 and
  the loss is the constant log 2 with zero gradient.
- W_l is initialised, at first participation, to the L2-normalised mean feature of each private
  identity under the received Theta_g (FedFace's mean-feature init); Omega from W; Pi = identity.
- With ``hard-negatives = false`` a FedFR client trains on all of D_g (t_HN -> -1).
- A client with one identity and no public rows (FedAvg / FedFace at 1 ID per client) has a
  one-class softmax with zero loss; it trains on ``single_identity_loss`` (1 - cos(f, w)) instead.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from fedfr.config import Config
from fedfr.dfc import DFCHead
from fedfr.face.evaluation.features import embed
from fedfr.face.training.batches import augment, batch_indices
from fedfr.fedface import single_identity_loss
from fedfr.hard_negatives import mean_class_features, select_hard_negatives
from fedfr.losses import cosface_loss, model_contrastive_loss


@dataclass
class LocalData:
    """A client's private training set. images: uint8 (N_l,3,S,S); labels: (N_l,) in 0..K_l-1."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int


@dataclass
class PersonalState:
    """What never leaves the client: W_l (K_l,d), the DFC branch, and Theta_l of its last round."""

    w: torch.Tensor
    dfc: dict[str, torch.Tensor] | None = None
    prev_backbone: dict[str, torch.Tensor] | None = None
    last_round: int = 0

    def to_dict(self) -> dict:
        return {"w": self.w, "dfc": self.dfc, "prev_backbone": self.prev_backbone,
                "last_round": self.last_round}

    @classmethod
    def from_dict(cls, d: dict) -> PersonalState:
        return cls(w=d["w"], dfc=d.get("dfc"), prev_backbone=d.get("prev_backbone"),
                   last_round=int(d.get("last_round", 0)))


@dataclass
class LocalResult:
    """Outcome of a local round: what is sent (backbone, phi, counts) and what is kept (state)."""

    backbone: dict[str, torch.Tensor]
    phi: torch.Tensor | None
    state: PersonalState
    num_examples: int
    num_hard_negatives: int
    num_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _frozen(model_fn: Callable[[], nn.Module], state: dict[str, torch.Tensor]) -> nn.Module:
    model = model_fn()
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_dfc_head(cfg: Config, num_classes: int, state: PersonalState) -> DFCHead:
    """The client's DFC branch: restored from its state, or fresh (Pi = I, Omega from W)."""
    head = DFCHead(cfg.embedding_size, num_classes)
    if state.dfc is not None:
        head.load_personal_state(state.dfc)
    else:
        head.init_omega(state.w)
    return head


def train_local_round(model_fn: Callable[[], nn.Module], global_backbone: dict[str, torch.Tensor],
                      phi: torch.Tensor | None, data: LocalData, cfg: Config,
                      state: PersonalState | None, generator: torch.Generator,
                      public_images: torch.Tensor | None = None,
                      public_labels: torch.Tensor | None = None,
                      public_features: torch.Tensor | None = None,
                      server_round: int = 1) -> LocalResult:
    """Run one local round. ``phi`` and the public tensors are used only by FedFR.

    public_images: uint8 (N_g,3,S,S); public_labels: (N_g,) in 0..K_g-1; public_features:
    optional precomputed normalised (N_g,d) features of D_g under ``global_backbone``.
    """
    t0 = time.perf_counter()
    use_public = cfg.uses_public_data
    if use_public and (phi is None or public_images is None or public_labels is None):
        raise ValueError("FedFR local training needs phi and the public data D_g")
    k_l = data.num_classes
    global_model = _frozen(model_fn, global_backbone)

    # 1-2. features under Theta_g^t, personal-state init, hard negatives
    local_feats = embed(global_model, data.images, batch_size=cfg.eval_batch_size)
    if state is None:
        state = PersonalState(w=mean_class_features(local_feats, data.labels, k_l))
    hn_idx = torch.empty(0, dtype=torch.long)
    if use_public:
        assert public_images is not None and public_labels is not None
        if cfg.hard_negatives:
            if public_features is None:
                public_features = embed(global_model, public_images, batch_size=cfg.eval_batch_size)
            hn_idx = select_hard_negatives(public_features, local_feats, cfg.hn_threshold)
        else:
            hn_idx = torch.arange(len(public_images))
    t_hn = time.perf_counter()

    # 3. the combined set D_l u D_HN with labels for [W_l ; Phi_l] and for the one-vs-all branch
    images, cos_labels, bce_labels = data.images, data.labels.long(), data.labels.long()
    if len(hn_idx):
        assert public_images is not None and public_labels is not None
        images = torch.cat([images, public_images[hn_idx]])
        cos_labels = torch.cat([cos_labels, k_l + public_labels[hn_idx].long()])
        bce_labels = torch.cat([bce_labels, torch.full((len(hn_idx),), -1, dtype=torch.long)])

    backbone = model_fn()
    backbone.load_state_dict(global_backbone)
    backbone.train()
    w = nn.Parameter(state.w.clone().float())
    params: list[torch.Tensor] = list(backbone.parameters()) + [w]
    phi_param = None
    if use_public:
        assert phi is not None
        phi_param = nn.Parameter(phi.clone().float())
        params.append(phi_param)
    head = None
    if cfg.dfc:
        head = make_dfc_head(cfg, k_l, state)
        head.train()
        params += list(head.parameters())
    prev_model = None
    if cfg.contrastive and state.prev_backbone is not None:
        prev_model = _frozen(model_fn, state.prev_backbone)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    sums = {"cos": 0.0, "con": 0.0, "bce": 0.0, "total": 0.0}
    steps = seen = 0
    for _ in range(cfg.local_epochs):
        for idx in batch_indices(len(images), cfg.batch_size, generator):
            x = augment(images[idx], generator)
            f = backbone(x)
            proxies = w if phi_param is None else torch.cat([w, phi_param])
            if proxies.shape[0] == 1:  # one identity, no public rows: softmax over one class is 0
                l_cos = single_identity_loss(f, proxies)
            else:
                l_cos = cosface_loss(f, proxies, cos_labels[idx], s=cfg.cosface_s,
                                     m=cfg.cosface_m)
            loss = cfg.alpha_cos * l_cos
            sums["cos"] += l_cos.item() * len(idx)
            if prev_model is not None:
                with torch.no_grad():
                    f_glob, f_prev = global_model(x), prev_model(x)
                l_con = model_contrastive_loss(f, f_glob, f_prev, tau=cfg.con_tau)
                loss = loss + cfg.alpha_con * l_con
                sums["con"] += l_con.item() * len(idx)
            if head is not None:
                l_bce = head.loss(f, bce_labels[idx], s=cfg.bce_s, m=cfg.bce_m,
                                  lam=cfg.bce_lambda, t=cfg.bce_t, kind=cfg.dfc_loss)
                loss = loss + cfg.alpha_bce * l_bce
                sums["bce"] += l_bce.item() * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["total"] += loss.item() * len(idx)
            steps += 1
            seen += len(idx)
    backbone.eval()
    t_train = time.perf_counter()

    new_backbone = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    new_state = PersonalState(
        w=w.detach().clone(),
        dfc=head.personal_state() if head is not None else state.dfc,
        prev_backbone=copy.deepcopy(new_backbone),
        last_round=server_round,
    )
    return LocalResult(
        backbone=new_backbone,
        phi=phi_param.detach().clone() if phi_param is not None else None,
        state=new_state,
        num_examples=len(data.images),
        num_hard_negatives=len(hn_idx),
        num_steps=steps,
        losses={k: v / max(seen, 1) for k, v in sums.items()},
        seconds={"hard_negatives": t_hn - t0, "train": t_train - t_hn},
    )
