"""Re-ID in a federation: pre-training, the local round with FedFR's techniques, BN policy and
the retrieval protocols, on top of the re-ID engine (``fedfr.reid.training``).

Shapes: images uint8 (N, 3, H, W) at the run's ``reid-height`` x ``reid-width``; features (N, d),
d = the model's ``feature_dim``; the client's identity classifier W_l (K_l, d) and the public class
matrix Phi_g (K_g, d) are bias-free linear classifiers on the BNNeck feature f_bn.

The local step (one client, one round): the received backbone Theta_g (BN running statistics
from the client's own last model with ``reid-bn = "local"``), the client's classifier W_l (kept
on the client, as FedPav), BoT's loss (label-smoothing CE on W_l's logits of f_bn + the
batch-hard triplet on f), P x K batches, and, with ``strategy = "fedfr"``, FedFR's techniques
carried to re-ID features:

* hard negatives: public images whose f_bn under Theta_g has cosine > ``hn-threshold`` with some
  local image join the batch as extra identities, classified by Phi_g (sent back, averaged);
* model-contrastive regularisation (eq. 7.5) between f_bn of Theta_l, Theta_g and Theta_l^{t-1};
* the DFC branch (eq. 7.6): Pi_l and the one-vs-all margin BCE on f_bn; [Theta_l, Pi_l] is the
  personalised model (test feature Pi_l(f_bn)).

The parts that do not depend on what a record is serve video re-ID too
(``fedfr.reid.video.federated``): ``start_local_round`` / ``LocalRound`` (everything up to the
engine's training, and the reply after it), ``load_with_bn_policy`` and ``bn_reestimation``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.config import Config
from fedfr.dfc import DFCHead
from fedfr.face.training.local import PersonalState
from fedfr.hard_negatives import max_cosine_similarity, select_hard_negatives
from fedfr.losses import model_contrastive_loss
from fedfr.reid.data.records import ReidImage
from fedfr.reid.data.transforms import ReidTransformConfig, eval_batch
from fedfr.reid.models import IdentityClassifier, ReidNet, build_reid_model

log = logging.getLogger(__name__)

#: BN buffers that ``reid-bn = "local"`` keeps out of the messages
BN_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
BN_POLICIES = ("average", "local")


# --- models and BN ------------------------------------------------------------------------------
def make_model(cfg: Config) -> ReidNet:
    """A fresh ``reid-model`` (last stride 1, BNNeck)."""
    return build_reid_model(cfg.reid_model)


def bn_stat_keys(model: nn.Module) -> list[str]:
    """state_dict keys of every BatchNorm running statistic (2d trunk and the 1d BNNeck)."""
    keys = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            keys += [f"{name}.{s}" if name else s for s in BN_STAT_SUFFIXES]
    return keys


def shared_state(cfg: Config, model: nn.Module) -> dict[str, Tensor]:
    """What a message carries of ``model``: all of it, or (``reid-bn = "local"``) all but the BN
    running statistics."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.reid_bn == "local":
        for k in bn_stat_keys(model):
            sd.pop(k, None)
    return sd


@contextmanager
def bn_reestimation(model: nn.Module) -> Iterator[None]:
    """Inside: every BN layer reset to a cumulative average over the passes made, ``model`` in
    train mode; after: the momenta restored and ``model`` in eval mode (no weight changes)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.eval()


@torch.no_grad()
def estimate_bn_stats(model: ReidNet, images: Tensor, cfg: Config, batch: int = 128) -> None:
    """Re-estimate every BN layer's running statistics on ``images`` (uint8) with the current
    weights: a cumulative average over one pass in train mode (no weight changes)."""
    tcfg = transform_config(cfg)
    with bn_reestimation(model):
        for s in range(0, len(images), batch):
            x = images[s:s + batch]
            if len(x) > 1:
                model(eval_batch(x, tcfg))


def load_with_bn_policy(cfg: Config, model: nn.Module, received: dict[str, Tensor],
                        own: dict[str, Tensor] | None,
                        estimate: Callable[[nn.Module], None] | None, what: str) -> nn.Module:
    """``model`` (fresh) with the received arrays, in eval mode; with ``reid-bn = "local"`` the
    BN statistics are this node's own (``own``: its last model) or, before it has one,
    ``estimate(model)``'s (ValueError naming ``what`` it would estimate them on, without it)."""
    if cfg.reid_bn == "local":
        sd = dict(received)
        if own is not None:
            sd.update({k: own[k] for k in bn_stat_keys(model)})
            model.load_state_dict(sd)
        else:
            model.load_state_dict(sd, strict=False)
            if estimate is None:
                raise ValueError(f"reid-bn=local: no BN statistics and no {what} to estimate "
                                 "them on")
            estimate(model)
    else:
        model.load_state_dict(received)
    model.eval()
    return model


def load_received(cfg: Config, received: dict[str, Tensor], own: dict[str, Tensor] | None,
                  own_images: Tensor | None) -> ReidNet:
    """The model of the received arrays; with ``reid-bn = "local"`` the BN statistics are this
    node's own (``own``: its last model) or, before it has one, estimated on ``own_images``."""
    estimate = None if own_images is None else (
        lambda m: estimate_bn_stats(m, own_images, cfg))
    return load_with_bn_policy(cfg, make_model(cfg), received, own, estimate, "images")


def transform_config(cfg: Config) -> ReidTransformConfig:
    pad = max(1, round(10 * cfg.reid_height / 256))  # BoT pads 10 px at 256 x 128
    return ReidTransformConfig(height=cfg.reid_height, width=cfg.reid_width, pad=pad,
                               erasing=cfg.reid_erasing)


def train_config(cfg: Config, *, pretrain: bool) -> Any:
    """The engine's ReidTrainConfig: Adam + warm-up for pre-training (BoT), constant-lr SGD for
    the local rounds (FedReID's / Sec. 7.7's recipe; classifier lr x reid-classifier-lr-scale)."""
    from fedfr.reid.training import ReidTrainConfig

    k = cfg.reid_instances
    common = dict(transform=transform_config(cfg), p=max(1, cfg.batch_size // k), k=k,
                  label_smoothing=cfg.reid_label_smoothing, triplet=cfg.reid_triplet,
                  margin=cfg.reid_margin, weight_decay=cfg.weight_decay)
    if pretrain:
        return ReidTrainConfig(optimizer="adam", lr=cfg.reid_pretrain_lr,
                               warmup_epochs=min(cfg.reid_warmup_epochs, cfg.pretrain_epochs),
                               milestones=(), **common)
    return ReidTrainConfig(optimizer="sgd", lr=cfg.lr, momentum=cfg.momentum,
                           classifier_lr_factor=cfg.reid_classifier_lr_scale, warmup_epochs=0,
                           milestones=(), **common)


def prefilled_dataset(records: list[ReidImage], images: Tensor, tcfg: Any) -> Any:
    """The engine's training dataset with its decoded-image cache already filled."""
    from fedfr.reid.training import training_dataset

    ds = training_dataset(records, tcfg)
    ds.cache = {i: images[i] for i in range(len(records))}
    return ds


# --- features -----------------------------------------------------------------------------------
@torch.no_grad()
def embed(cfg: Config, model: ReidNet, images: Tensor,
          head: nn.Module | None = None) -> Tensor:
    """L2-normalised test features (N, d): f_bn (or Pi(f_bn) with a DFC head), summed with the
    flipped image's when ``eval-flip``."""
    model.eval()
    tcfg = transform_config(cfg)
    out = []
    for s in range(0, len(images), cfg.eval_batch_size):
        x = eval_batch(images[s:s + cfg.eval_batch_size], tcfg)
        f = model(x)[1]
        if cfg.eval_flip:
            f = f + model(torch.flip(x, dims=[3]))[1]
        if head is not None:
            f = head(f)
        out.append(F.normalize(f.float(), dim=1))
    d = model.feature_dim
    return torch.cat(out) if out else torch.empty(0, d)


def retrieval_metrics(cfg: Config, qf: Tensor, gf: Tensor, query: list[ReidImage],
                      gallery: list[ReidImage]) -> dict[str, float]:
    """CMC rank-1/5/10, mAP (``reid-ap`` convention) and mINP of one query / gallery set, with
    junk = same identity and same camera, pid-0 distractors kept as negatives, queries without
    a valid match counted (``invalid``) and skipped."""
    from fedfr.reid.evaluation.rank import features_to_rank

    res = features_to_rank(qf, gf, [r.pid for r in query], [r.pid for r in gallery],
                           [r.camid for r in query], [r.camid for r in gallery],
                           metric="euclidean", ap=cfg.reid_ap, max_rank=10)
    out = {"mAP": float(res.mAP), "mINP": float(res.mINP), "queries": float(res.num_queries),
           "invalid": float(res.num_invalid)}
    for k in (1, 5, 10):
        out[f"rank{k}"] = float(res.cmc[k - 1]) if len(res.cmc) >= k else float("nan")
    return out


# --- central training (pre-training on the public set) ------------------------------------------
def pretrain(cfg: Config, records: list[ReidImage], labels: list[int], images: Tensor
             ) -> tuple[ReidNet, Tensor, dict[str, Any]]:
    """Theta_g^0 and Phi_g^0: BoT's recipe on the public set for ``pretrain-epochs`` epochs.
    Returns (model, Phi (K_g, d), the engine's stats without the per-epoch history)."""
    from fedfr.reid.training import train_epochs

    torch.manual_seed(cfg.seed)
    model = make_model(cfg)
    k_g = max(labels) + 1
    classifier = IdentityClassifier(model.feature_dim, k_g)
    tcfg = train_config(cfg, pretrain=True)
    stats = train_epochs(model, classifier, records, labels, tcfg, epochs=cfg.pretrain_epochs,
                         generator=torch.Generator().manual_seed(cfg.seed),
                         dataset=prefilled_dataset(records, images, tcfg))
    stats.pop("history", None)
    return model, classifier.weight.detach().clone(), stats


# --- the local round ----------------------------------------------------------------------------
@dataclass
class ReidRoundResult:
    """What a client sends (``backbone`` = the shared state, ``phi``) and keeps (``state``)."""

    backbone: dict[str, Tensor]
    phi: Tensor | None
    state: PersonalState
    num_examples: int
    num_hard_negatives: int
    num_steps: int
    losses: dict[str, float] = field(default_factory=dict)


def _frozen(model: ReidNet) -> ReidNet:
    m = copy.deepcopy(model)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def cap_hard_negatives(idx: Tensor, public_feats: Tensor, local_feats: Tensor,
                       limit: int) -> Tensor:
    """At most ``limit`` of the selected hard negatives ``idx``: the hardest ones (largest
    cosine to a local image), returned sorted; ``limit`` <= 0 keeps them all."""
    if limit <= 0 or len(idx) <= limit:
        return idx
    sims = max_cosine_similarity(public_feats[idx], local_feats)
    keep = torch.topk(sims, limit).indices
    return torch.sort(idx[keep]).values


def imprint(feats: Tensor, labels: Tensor, k: int) -> Tensor:
    """(k, d) unit rows: the normalised mean feature of each class (W_l's first value)."""
    w = torch.zeros(k, feats.shape[1])
    w.index_add_(0, labels, F.normalize(feats, dim=1))
    return F.normalize(w, dim=1)


@dataclass
class LocalRound:
    """A local round's parts before the engine trains (image and video re-ID alike): Theta_l
    (``model``, starting at Theta_g), the frozen Theta_g and Theta_l^{t-1}, the node's state
    (W_l imprinted at its first round), the classifier [W_l; Phi_g], the DFC branch, the
    optimiser, and the training records with their labels (the private ones, then the public
    ones ``hn_idx`` that joined as identities k_l + their class)."""

    cfg: Config
    model: nn.Module
    global_model: nn.Module
    prev_model: nn.Module | None
    state: PersonalState
    k_l: int
    use_public: bool
    hn_idx: Tensor
    records: list
    labels: Tensor
    classifier: nn.Module
    head: DFCHead | None
    optimizer: torch.optim.Optimizer
    sums: dict[str, float] = field(default_factory=lambda: {"con": 0.0, "bce": 0.0, "n": 0})

    @property
    def has_terms(self) -> bool:
        """Whether FedFR's client terms (contrastive, DFC) join the engine's loss."""
        return self.prev_model is not None or self.head is not None

    def terms(self, x: Tensor, f_bn: Tensor, yb: Tensor) -> Tensor:
        """FedFR's client terms on a batch (``fedfr_terms``); ``x``: the batch's input."""
        return fedfr_terms(self.cfg, x, f_bn, yb, self.k_l, self.global_model, self.prev_model,
                           self.head, self.sums)

    def result(self, server_round: int, num_examples: int, stats: dict[str, Any]
               ) -> ReidRoundResult:
        """The reply and the new state after the engine trained (``round_result``)."""
        return round_result(self.cfg, self.model, self.classifier, self.head, self.state,
                            self.k_l, self.use_public, server_round, num_examples,
                            len(self.hn_idx), stats, self.sums)


def start_local_round(cfg: Config, model: nn.Module, phi: Tensor | None,
                      state: PersonalState | None, records: list, labels: Tensor,
                      public: tuple[list, Tensor] | None,
                      local_features: Callable[[nn.Module], Tensor],
                      public_features: Callable[[nn.Module], Tensor] | None,
                      new_classifier: Callable[[nn.Module, int], nn.Module],
                      new_model: Callable[[], nn.Module], tcfg: Any) -> LocalRound:
    """The module doc's local step up to training, for ``model`` = the received Theta_g (BN
    policy applied): ``records`` / ``labels`` (N,) in 0..K_l-1 the private training set;
    ``public`` = (records, labels in 0..K_g-1) of D_g under FedFR (with ``phi``);
    ``local_features(net)`` / ``public_features(net)`` their L2-normalised test features;
    ``new_classifier(net, classes)`` the engine's bias-free classifier; ``new_model()`` a fresh
    net (Theta_l^{t-1}); ``tcfg`` the engine's config (optimiser)."""
    from fedfr.reid.training import build_optimizer

    k_l = int(labels.max()) + 1
    global_model = _frozen(model)
    local_feats = local_features(global_model)
    if state is None:  # imprinted at Phi_g's row norm, so that local and public logits compare
        scale = float(phi.norm(dim=1).mean()) if phi is not None and cfg.uses_public_data else 1.0
        state = PersonalState(w=imprint(local_feats, labels.long(), k_l) * scale)
    use_public = cfg.uses_public_data
    hn_idx = torch.empty(0, dtype=torch.long)
    recs, y = list(records), labels.long()
    if use_public:
        p_recs, p_labels = public
        if cfg.hard_negatives:
            pf = public_features(global_model)
            hn_idx = cap_hard_negatives(select_hard_negatives(pf, local_feats, cfg.hn_threshold),
                                        pf, local_feats, int(cfg.reid_hn_ratio * len(records)))
        else:
            hn_idx = torch.arange(len(p_recs))
        recs += [p_recs[i] for i in hn_idx.tolist()]
        y = torch.cat([y, k_l + p_labels[hn_idx].long()])
    weight = torch.cat([state.w, phi]) if use_public and phi is not None else state.w
    classifier = new_classifier(model, weight.shape[0])
    with torch.no_grad():
        classifier.fc.weight.copy_(weight)
    head = personal_head(cfg, model.feature_dim, k_l, state)
    prev_model = None
    if cfg.contrastive and state.prev_backbone is not None:
        prev_model = new_model()
        prev_model.load_state_dict(state.prev_backbone)
        prev_model = _frozen(prev_model)
    opt = build_optimizer(model, classifier, tcfg)
    if head is not None:
        opt.add_param_group({"params": list(head.parameters()), "lr": cfg.lr, "lr_scale": 1.0})
    return LocalRound(cfg, model, global_model, prev_model, state, k_l, use_public, hn_idx, recs,
                      y, classifier, head, opt)


def local_round(cfg: Config, received: dict[str, Tensor], phi: Tensor | None,
                state: PersonalState | None, records: list[ReidImage], images: Tensor,
                labels: Tensor, generator: torch.Generator, server_round: int,
                public: tuple[list[ReidImage], Tensor, Tensor] | None = None,
                public_features: Callable[[ReidNet], Tensor] | None = None) -> ReidRoundResult:
    """One client's local round (module doc). ``images`` / ``labels`` (N,) in 0..K_l-1: its
    training set; ``public`` = (records, uint8 images, labels in 0..K_g-1) of D_g (FedFR)."""
    from fedfr.reid.training import train_epochs

    if cfg.uses_public_data and (phi is None or public is None):
        raise ValueError("FedFR on re-ID needs Phi_g and the public set")
    own = state.prev_backbone if state is not None else None
    model = load_received(cfg, received, own, images)
    p_images = public[1] if public is not None else None
    tcfg = train_config(cfg, pretrain=False)
    run = start_local_round(
        cfg, model, phi, state, records, labels,
        (public[0], public[2]) if public is not None else None,
        lambda net: embed(cfg, net, images),
        public_features or (lambda net: embed(cfg, net, p_images)),
        lambda net, classes: IdentityClassifier(net.feature_dim, classes),
        lambda: make_model(cfg), tcfg)
    x_u8 = torch.cat([images, p_images[run.hn_idx]]) if run.use_public else images

    def extra(net: ReidNet, x: Tensor, f: Tensor, f_bn: Tensor, yb: Tensor) -> Tensor:
        return run.terms(x, f_bn, yb)

    stats = train_epochs(run.model, run.classifier, run.records, run.labels, tcfg,
                         epochs=cfg.local_epochs, generator=generator, optimizer=run.optimizer,
                         extra_loss=extra if run.has_terms else None,
                         dataset=prefilled_dataset(run.records, x_u8, tcfg))
    return run.result(server_round, len(records), stats)


def personal_head(cfg: Config, feature_dim: int, k_l: int, state: PersonalState
                  ) -> DFCHead | None:
    """DFC's personal branch for a local round, in train mode: restored from the node's state,
    else Omega initialised from the private class rows ``state.w`` (k_l x D); None without
    ``dfc``."""
    if not cfg.dfc:
        return None
    head = DFCHead(feature_dim, k_l)
    if state.dfc is not None:
        head.load_personal_state(state.dfc)
    else:
        head.init_omega(state.w)
    return head.train()


def fedfr_terms(cfg: Config, x: Tensor, f_bn: Tensor, yb: Tensor, k_l: int,
                global_model: nn.Module | None, prev_model: nn.Module | None,
                head: DFCHead | None, sums: dict[str, float]) -> Tensor:
    """FedFR's client terms on a batch (the local step's ``extra_loss``): alpha_con x the
    model-contrastive loss of f_bn against the received and the previous model's features of
    the same input ``x``, and alpha_bce x DFC's BCE on the private labels (< ``k_l``; public
    ones are -1). Adds each term x batch size and the batch size to ``sums``."""
    loss = f_bn.sum() * 0.0
    if prev_model is not None:
        with torch.no_grad():
            f_glob, f_prev = global_model(x)[1], prev_model(x)[1]
        l_con = model_contrastive_loss(f_bn, f_glob, f_prev, tau=cfg.con_tau)
        loss = loss + cfg.alpha_con * l_con
        sums["con"] += l_con.item() * len(yb)
    if head is not None:
        bce_labels = torch.where(yb < k_l, yb, torch.full_like(yb, -1))
        l_bce = head.loss(f_bn, bce_labels, s=cfg.bce_s, m=cfg.bce_m, lam=cfg.bce_lambda,
                          t=cfg.bce_t, kind=cfg.dfc_loss)
        loss = loss + cfg.alpha_bce * l_bce
        sums["bce"] += l_bce.item() * len(yb)
    sums["n"] += len(yb)
    return loss


def round_result(cfg: Config, model: nn.Module, classifier: nn.Module, head: DFCHead | None,
                 state: PersonalState, k_l: int, use_public: bool, server_round: int,
                 num_examples: int, num_hard_negatives: int, stats: dict[str, Any],
                 sums: dict[str, float]) -> ReidRoundResult:
    """The reply of a local round: the shared backbone, Phi (the classifier's public rows) with
    FedFR, and the node's new personal state (private rows, DFC branch, this model)."""
    model.eval()
    full = {k: v.detach().clone() for k, v in model.state_dict().items()}
    w_all = classifier.weight.detach().clone()
    new_state = PersonalState(w=w_all[:k_l].clone(),
                              dfc=head.personal_state() if head is not None else state.dfc,
                              prev_backbone=full, last_round=server_round)
    n = max(sums["n"], 1)
    return ReidRoundResult(
        backbone=shared_state(cfg, model), phi=w_all[k_l:].clone() if use_public else None,
        state=new_state, num_examples=num_examples, num_hard_negatives=num_hard_negatives,
        num_steps=int(stats["steps"]),
        losses={"total": float(stats["loss"]), "ce": float(stats["ce"]),
                "triplet": float(stats["triplet"]), "con": sums["con"] / n,
                "bce": sums["bce"] / n})
