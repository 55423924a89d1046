"""Video re-ID in a federation: pre-training, the local round with FedFR's techniques on clip
features, the BN policy and the retrieval protocol, on top of the video engine
(``fedfr.reid.video.training``: RRS clips, P x K tracklet batches, CE + batch-hard triplet).

Shapes: a tracklet's test feature is f_bn (d,) of its RRS test clip (or the mean over its
all-sampled / all-continuous clips, ``video-test-clips``), L2-normalised; the client's identity
classifier W_l (K_l, d) and the public class matrix Phi_g (K_g, d) are bias-free linear
classifiers on the clip's BNNeck feature f_bn.

The local step is image re-ID's (``fedfr.reid.federated.start_local_round`` up to training,
then this engine): the received backbone Theta_g,
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

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.config import Config
from fedfr.face.training.local import PersonalState
from fedfr.reid.data.records import Tracklet
from fedfr.reid.federated import (
    ReidRoundResult,
    bn_reestimation,
    load_with_bn_policy,
    retrieval_metrics,
    shared_state,
    start_local_round,
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
    with bn_reestimation(model):
        ds = clip_dataset(list(tracklets), tcfg, "test", cache=frame_cache(cfg))
        for s in range(0, len(ds), batch):
            clips = torch.stack([ds[i][0] for i in range(s, min(s + batch, len(ds)))])
            if len(clips) > 1:
                model(eval_clips(clips, tcfg))


def load_received(cfg: Config, received: dict[str, Tensor], own: dict[str, Tensor] | None,
                  own_tracklets: Sequence[Tracklet] | None) -> nn.Module:
    """The model of the received arrays; with ``reid-bn = "local"`` the BN statistics are this
    node's own (``own``: its last model) or, before it has one, estimated on its tracklets."""
    estimate = None if not own_tracklets else (
        lambda m: estimate_bn_stats(m, own_tracklets, cfg))
    return load_with_bn_policy(cfg, make_model(cfg), received, own, estimate, "tracklets")


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


def local_round(cfg: Config, received: dict[str, Tensor], phi: Tensor | None,
                state: PersonalState | None, tracklets: list[Tracklet], labels: Tensor,
                seed: int, server_round: int,
                public: tuple[list[Tracklet], Tensor] | None = None,
                public_features: Callable[[nn.Module], Tensor] | None = None
                ) -> ReidRoundResult:
    """One client's local round (module doc; its steps up to training are image re-ID's
    ``start_local_round``). ``labels`` (N,) in 0..K_l-1 of its training tracklets; ``public`` =
    (tracklets, labels in 0..K_g-1) of D_g (FedFR); ``public_features(Theta_g)``: D_g's features
    (shared between the clients of a process)."""
    from fedfr.reid.video.training import (
        build_video_classifier,
        clip_dataset,
        train_video_epochs,
    )

    if cfg.uses_public_data and (phi is None or public is None):
        raise ValueError("FedFR on video re-ID needs Phi_g and the public tracklets")
    own = state.prev_backbone if state is not None else None
    model = load_received(cfg, received, own, tracklets)
    tcfg = train_config(cfg, pretrain=False)
    run = start_local_round(
        cfg, model, phi, state, tracklets, labels, public,
        lambda net: features(cfg, net, tracklets),
        public_features or (lambda net: features(cfg, net, public[0])),
        build_video_classifier, lambda: make_model(cfg), tcfg)
    tap = InputTap(run.model)

    def extra(f: Tensor, f_bn: Tensor, yb: Tensor) -> Tensor:
        return run.terms(tap.last, f_bn, yb)

    stats = train_video_epochs(tap, run.classifier, run.records, tcfg, epochs=cfg.local_epochs,
                               seed=seed, labels=run.labels.tolist(), optimizer=run.optimizer,
                               extra_loss=extra if run.has_terms else None,
                               dataset=clip_dataset(run.records, tcfg, "train", seed=seed,
                                                    cache=frame_cache(cfg)))
    tap.last = None
    return run.result(server_round, len(tracklets), stats)
