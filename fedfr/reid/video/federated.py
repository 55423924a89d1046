"""Video re-ID in a federation: pre-training, the local round with FedFR's techniques on clip
features, the BN policy and the retrieval protocol, on top of the video engine
(``fedfr.reid.video.training``: RRS clips, P x K tracklet batches, CE + batch-hard triplet).

Shapes: a tracklet's test feature is f_bn (d,) of its RRS test clip (or the mean over its
all-sampled / all-continuous clips, ``video-test-clips``), L2-normalised; the client's identity
classifier W_l (K_l, d) and the public class matrix Phi_g (K_g, d) are bias-free linear
classifiers on the clip's BNNeck feature f_bn.

The local step mirrors image re-ID's (``fedfr.reid.federated``): the received backbone Theta_g,
the client's classifier W_l (imprinted with its class means at its first round, never sent),
the engine's loss on T-frame clips, and with ``strategy = "fedfr"``:

* hard negatives: public tracklets whose clip f_bn under Theta_g has cosine > ``hn-threshold``
  with a local tracklet (at most ``reid-hn-ratio`` x N_l, the hardest first) join the local
  tracklets as extra identities, classified by Phi_g (sent back and averaged);
* the model-contrastive term (eq. 7.5) between the clip f_bn of Theta_l, Theta_g and
  Theta_l^{t-1} on the same augmented clips;
* the DFC branch (eq. 7.6) on the clip f_bn; [Theta_l, Pi_l] tests with Pi_l(f_bn).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.config import Config
from fedfr.face.training.local import PersonalState
from fedfr.hard_negatives import select_hard_negatives
from fedfr.reid.data.records import Tracklet
from fedfr.reid.federated import (
    ReidRoundResult,
    bn_stat_keys,
    cap_hard_negatives,
    fedfr_terms,
    imprint,
    personal_head,
    retrieval_metrics,
    round_result,
    shared_state,
)

__all__ = ["ReidRoundResult", "estimate_bn_stats", "features", "load_received", "local_round",
           "make_model", "pretrain", "retrieval_metrics", "round_seed", "shared_state",
           "train_config"]

#: run-config ``video-test-clips`` -> the engine's test mode
TEST_MODES = {"rrs": "rrs", "all": "all", "all_continuous": "all_continuous"}

_FRAMES: dict[tuple[int, int], dict] = {}
_FRAMES_LOCK = threading.Lock()


def frame_cache(cfg: Config) -> dict:
    """Decoded, resized uint8 frames of this process (path -> (3, H, W)), one dict per size,
    shared by every clip dataset of the run (each frame is decoded once per process)."""
    with _FRAMES_LOCK:
        return _FRAMES.setdefault((cfg.video_height, cfg.video_width), {})


def train_config(cfg: Config, *, pretrain: bool) -> Any:
    """The engine's VideoTrainConfig from the run config: the model and clips of the
    ``video-*`` keys, image re-ID's federated recipe (``reid-*`` keys; Adam + warm-up for
    pre-training, constant-lr SGD with the classifier at ``reid-classifier-lr-scale`` x lr for
    the local rounds) and STE-NVAN's sampler (an epoch = every identity once, P = batch-size / K
    identities x K = ``video-instances`` tracklets drawn with replacement)."""
    from fedfr.reid.video.training import VideoTrainConfig

    k = cfg.video_instances
    pad = max(1, round(10 * cfg.video_height / 256))  # BoT's 10 px at 256 x 128, as image re-ID
    common: dict[str, Any] = dict(
        model=cfg.video_model, backbone=cfg.video_backbone, clip_len=cfg.video_clip_len,
        height=cfg.video_height, width=cfg.video_width, pad=pad, erasing=cfg.reid_erasing,
        p=max(1, cfg.batch_size // k), k=k, label_smoothing=cfg.reid_label_smoothing,
        triplet=cfg.reid_triplet, margin=cfg.reid_margin, weight_decay=cfg.weight_decay,
        test_mode=TEST_MODES[cfg.video_test_clips], seed=cfg.seed, milestones=[])
    if pretrain:
        return VideoTrainConfig.from_mapping({
            **common, "optimizer": "adam", "lr": cfg.reid_pretrain_lr,
            "warmup_epochs": min(cfg.reid_warmup_epochs, cfg.pretrain_epochs),
            "warmup_factor": 0.1})
    return VideoTrainConfig.from_mapping({
        **common, "optimizer": "sgd", "lr": cfg.lr, "momentum": cfg.momentum,
        "classifier_lr_factor": cfg.reid_classifier_lr_scale, "warmup_epochs": 0})


def make_model(cfg: Config) -> nn.Module:
    """A fresh ``video-model`` on ``video-backbone`` for ``video-clip-len`` x H x W clips."""
    from fedfr.reid.video.training import build_video_net

    return build_video_net(train_config(cfg, pretrain=False))


def round_seed(cfg: Config, server_round: int, partition_id: int) -> int:
    """The seed of one client's round (sampler, RRS draws, augmentation)."""
    return int(np.random.SeedSequence([cfg.seed, server_round, partition_id]).generate_state(1)[0])


# --- BN and received models ---------------------------------------------------------------------
@torch.no_grad()
def estimate_bn_stats(model: nn.Module, tracklets: Sequence[Tracklet], cfg: Config,
                      batch: int = 32) -> None:
    """Re-estimate every BN layer's running statistics on the RRS test clips of ``tracklets``
    (a cumulative average over one pass in train mode; no weight changes)."""
    from fedfr.reid.video.training import clip_dataset, eval_clips

    tcfg = train_config(cfg, pretrain=False)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    ds = clip_dataset(list(tracklets), tcfg, "test", cache=frame_cache(cfg))
    for s in range(0, len(ds), batch):
        clips = torch.stack([ds[i][0] for i in range(s, min(s + batch, len(ds)))])
        if len(clips) > 1:
            model(eval_clips(clips, tcfg))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


def load_received(cfg: Config, received: dict[str, Tensor], own: dict[str, Tensor] | None,
                  own_tracklets: Sequence[Tracklet] | None) -> nn.Module:
    """The model of the received arrays; with ``reid-bn = "local"`` the BN statistics are this
    node's own (``own``: its last model) or, before it has one, estimated on its tracklets."""
    model = make_model(cfg)
    if cfg.reid_bn == "local":
        sd = dict(received)
        if own is not None:
            sd.update({k: own[k] for k in bn_stat_keys(model)})
            model.load_state_dict(sd)
        else:
            model.load_state_dict(sd, strict=False)
            if not own_tracklets:
                raise ValueError("reid-bn=local: no BN statistics and no tracklets to estimate "
                                 "them on")
            estimate_bn_stats(model, own_tracklets, cfg)
    else:
        model.load_state_dict(received)
    model.eval()
    return model


# --- features -----------------------------------------------------------------------------------
@torch.no_grad()
def features(cfg: Config, model: nn.Module, tracklets: Sequence[Tracklet],
             head: nn.Module | None = None) -> Tensor:
    """L2-normalised test features (N, d) of ``tracklets``: f_bn of the test clip(s), or
    Pi(f_bn) with a DFC head."""
    from fedfr.reid.video.training import extract_tracklet_features

    tcfg = train_config(cfg, pretrain=False)
    batch = max(1, cfg.eval_batch_size // cfg.video_clip_len)
    f = torch.from_numpy(extract_tracklet_features(model, list(tracklets), tcfg, batch=batch,
                                                   cache=frame_cache(cfg)))
    if head is not None and len(f):
        head.eval()
        f = head(f)
    return F.normalize(f.float(), dim=1) if len(f) else f.float()


# --- pre-training -------------------------------------------------------------------------------
def pretrain(cfg: Config, tracklets: list[Tracklet], labels: list[int]
             ) -> tuple[nn.Module, Tensor, dict[str, Any]]:
    """Theta_g^0 and Phi_g^0: the engine on the public tracklets for ``pretrain-epochs``
    (identity) epochs with Adam at ``reid-pretrain-lr`` after a linear warm-up. Returns
    (model, Phi (K_g, d), the engine's stats without the per-epoch history)."""
    from fedfr.reid.video.training import (
        build_video_classifier,
        build_video_net,
        clip_dataset,
        train_video_epochs,
    )

    tcfg = train_config(cfg, pretrain=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_video_net(tcfg)
        classifier = build_video_classifier(model, max(labels) + 1)
    stats = train_video_epochs(model, classifier, tracklets, tcfg, epochs=cfg.pretrain_epochs,
                               seed=cfg.seed, labels=labels,
                               dataset=clip_dataset(tracklets, tcfg, "train", seed=cfg.seed,
                                                    cache=frame_cache(cfg)))
    stats.pop("history", None)
    model.eval()
    return model, classifier.weight.detach().clone(), stats


# --- the local round ----------------------------------------------------------------------------
class InputTap(nn.Module):
    """The net, keeping its last input batch: the engine's ``extra_loss(f, f_bn, y)`` does not
    get the clips, and the contrastive term needs Theta_g's and Theta_l^{t-1}'s features of
    the same augmented clips."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.last: Tensor | None = None

    @property
    def feature_dim(self) -> int:
        return int(self.net.feature_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.last = x
        return self.net(x, mask)


def _frozen(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def local_round(cfg: Config, received: dict[str, Tensor], phi: Tensor | None,
                state: PersonalState | None, tracklets: list[Tracklet], labels: Tensor,
                seed: int, server_round: int,
                public: tuple[list[Tracklet], Tensor] | None = None,
                public_features: Callable[[nn.Module], Tensor] | None = None
                ) -> ReidRoundResult:
    """One client's local round (module doc). ``labels`` (N,) in 0..K_l-1 of its training
    tracklets; ``public`` = (tracklets, labels in 0..K_g-1) of D_g (FedFR);
    ``public_features(Theta_g)``: D_g's features (shared between the clients of a process)."""
    from fedfr.reid.training import build_optimizer
    from fedfr.reid.video.training import (
        build_video_classifier,
        clip_dataset,
        train_video_epochs,
    )

    k_l = int(labels.max()) + 1
    own = state.prev_backbone if state is not None else None
    model = load_received(cfg, received, own, tracklets)
    global_model = _frozen(model)
    local_feats = features(cfg, global_model, tracklets)
    if state is None:  # imprinted at Phi_g's row norm, so that local and public logits compare
        scale = float(phi.norm(dim=1).mean()) if phi is not None and cfg.uses_public_data else 1.0
        state = PersonalState(w=imprint(local_feats, labels.long(), k_l) * scale)
    use_public = cfg.uses_public_data
    hn_idx = torch.empty(0, dtype=torch.long)
    recs, y = list(tracklets), labels.long()
    if use_public:
        if phi is None or public is None:
            raise ValueError("FedFR on video re-ID needs Phi_g and the public tracklets")
        p_recs, p_labels = public
        if cfg.hard_negatives:
            pf = (public_features(global_model) if public_features is not None
                  else features(cfg, global_model, p_recs))
            hn_idx = cap_hard_negatives(select_hard_negatives(pf, local_feats, cfg.hn_threshold),
                                        pf, local_feats, int(cfg.reid_hn_ratio * len(tracklets)))
        else:
            hn_idx = torch.arange(len(p_recs))
        recs += [p_recs[i] for i in hn_idx.tolist()]
        y = torch.cat([y, k_l + p_labels[hn_idx].long()])
    weight = torch.cat([state.w, phi]) if use_public and phi is not None else state.w
    classifier = build_video_classifier(model, weight.shape[0])
    with torch.no_grad():
        classifier.fc.weight.copy_(weight)
    head = personal_head(cfg, model.feature_dim, k_l, state)
    prev_model = None
    if cfg.contrastive and state.prev_backbone is not None:
        prev_model = make_model(cfg)
        prev_model.load_state_dict(state.prev_backbone)
        prev_model = _frozen(prev_model)
    tcfg = train_config(cfg, pretrain=False)
    opt = build_optimizer(model, classifier, tcfg)
    if head is not None:
        opt.add_param_group({"params": list(head.parameters()), "lr": cfg.lr, "lr_scale": 1.0})
    tap = InputTap(model)
    sums = {"con": 0.0, "bce": 0.0, "n": 0}

    def extra(f: Tensor, f_bn: Tensor, yb: Tensor) -> Tensor:
        return fedfr_terms(cfg, tap.last, f_bn, yb, k_l, global_model, prev_model, head,
                           sums)

    use_extra = prev_model is not None or head is not None
    stats = train_video_epochs(tap, classifier, recs, tcfg, epochs=cfg.local_epochs, seed=seed,
                               labels=y.tolist(), optimizer=opt,
                               extra_loss=extra if use_extra else None,
                               dataset=clip_dataset(recs, tcfg, "train", seed=seed,
                                                    cache=frame_cache(cfg)))
    tap.last = None
    return round_result(cfg, model, classifier, head, state, k_l, use_public, server_round,
                        len(tracklets), len(hn_idx), stats, sums)
