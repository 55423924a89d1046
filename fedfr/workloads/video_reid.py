"""The video re-ID workload (``task = "video-reid"``): camera networks' tracklet sets federated
as image re-ID's datasets are (Sec. 7.7), with FedFR's techniques on clip features.

Clients are tracklet sets (``video-clients``: synthetic camera-network styles by default, real
MARS / DukeV / iLIDS-VID / PRID2011 by name under ``data-root``); the unseen sets
(``video-unseen``) are the generic test; the public set (``video-public``) pre-trains Theta_g^0 and
Phi_g^0 and supplies hard negatives. Messages carry ``backbone.*`` (the video net: trunk,
attention blocks, BNNeck; BN running statistics unless ``reid-bn = "local"``) and, with FedFR,
``phi``; W_l, the DFC branch, the previous local model, features, labels and frames stay on the
node. Metrics: CMC rank-k / mAP (``reid-ap``) / mINP on each set's query / gallery tracklets;
personalised = each client's own with Theta_g, Theta_l and [Theta_l, Pi_l]; generic = each unseen
set with Theta_g. See ``fedfr/reid/video/federated.py`` and docs/video-reid.md ("Federation").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedfr.checkpoint import digest_of
from fedfr.config import Config, resolve_path
from fedfr.errors import ConfigError
from fedfr.reid.video import federated as fed
from fedfr.reid.video.workspace import (
    VideoWorkspace,
    check_names,
    export_video_nodes,
    open_video_workspace,
    tracklets_digest,
)
from fedfr.reid.workspace import node_workspace
from fedfr.workloads.base import NodeInfo
from fedfr.workloads.reid_base import PER_SET, BaseReidWorkload

__all__ = ["MODEL_KEYS", "PER_SET", "VideoReidWorkload", "pretrained_path"]

#: run-config keys that build the model (a check builds it once per process per value)
MODEL_KEYS = ("video-model", "video-backbone", "video-clip-len", "video-height", "video-width")
_checked_models: set[tuple] = set()


def pretrained_path(cfg: Config, ws: VideoWorkspace) -> Path:
    """Theta_g^0 / Phi_g^0 of the run: ``pretrained-path`` or the cache, keyed by digest."""
    if cfg.pretrained_path:
        return resolve_path(cfg.pretrained_path)
    d = cfg.to_dict()
    key = digest_of({
        "public": tracklets_digest(ws.public_split()), **{k: d[k] for k in MODEL_KEYS},
        **{k: d[k] for k in ("pretrain-epochs", "reid-pretrain-lr", "reid-warmup-epochs",
                             "batch-size", "video-instances", "reid-triplet", "reid-margin",
                             "reid-label-smoothing", "reid-erasing", "weight-decay", "seed")},
    })
    return cfg.cache_path / "pretrained" / f"video-{cfg.video_model}-{key}.pt"


class VideoReidWorkload(BaseReidWorkload):
    """Federated video re-ID: FedAvg / FedPav and FedFR (hard negatives, contrastive, DFC).
    The shared path is ``BaseReidWorkload``'s; here: tracklets, ``fedfr.reid.video.federated``."""

    name = "video-reid"
    # FedFace's proxies are a face baseline; the test-time image flip is an image re-ID option
    supported = {"strategy": ("fedfr", "fedavg"), "eval-flip": (False,)}
    fed = fed
    title, unit = "video re-ID", "tracklets"

    def check_config(self, cfg: Config) -> None:
        super().check_config(cfg)
        clients = [c.strip() for c in cfg.video_clients.split(",") if c.strip()]
        if cfg.num_clients > len(clients):
            raise ConfigError(f"config 'num-clients' = {cfg.num_clients} but 'video-clients' "
                              f"names only {len(clients)} tracklet sets (task 'video-reid': one "
                              f"client per set; start at most {len(clients)} SuperNodes or name "
                              "more sets)")
        if cfg.batch_size % cfg.video_instances:
            raise ConfigError(f"config 'batch-size' = {cfg.batch_size}: task 'video-reid' needs "
                              f"a multiple of video-instances = {cfg.video_instances} (P x K "
                              "tracklet batches)")
        check_names(cfg)
        d = cfg.to_dict()
        key = tuple(d[k] for k in MODEL_KEYS)
        if key not in _checked_models:
            try:
                fed.make_model(cfg)
            except ConfigError as e:
                raise ConfigError(f"config 'video-model' = {cfg.video_model!r} on "
                                  f"'video-backbone' = {cfg.video_backbone!r}: {e}") from e
            _checked_models.add(key)

    # --- server side -----------------------------------------------------------------------------
    def open_server_data(self, cfg: Config) -> VideoWorkspace:
        return open_video_workspace(cfg)

    def pretrained_path(self, cfg: Config, data: VideoWorkspace) -> Path:
        return pretrained_path(cfg, data)

    def _model_name(self, cfg: Config) -> str:
        return f"video-model '{cfg.video_model}' on '{cfg.video_backbone}'"

    def _pretrain(self, cfg: Config, data: VideoWorkspace) -> tuple[Any, torch.Tensor, dict]:
        tracklets, labels = data.public()
        model, phi, stats = fed.pretrain(cfg, tracklets, labels)
        meta = {"public": data.public_name, "model": cfg.video_model,
                "backbone": cfg.video_backbone, "epochs": cfg.pretrain_epochs,
                "seconds": stats["seconds"], "clips_per_s": stats["clips_per_s"],
                "final-loss": stats["loss"]}
        return model, phi, meta

    def summary_table(self, report: dict[str, Any]) -> str:
        """Table 7.5's layout (``fedfr.reid.report``) over the tracklet sets."""
        from fedfr.reid.report import table_7_5

        cfg = dict(report.get("config") or {})
        cfg.update({"reid-clients": cfg.get("video-clients", ""),
                    "reid-unseen": cfg.get("video-unseen", "")})
        return table_7_5({**report, "config": cfg})

    def export_nodes(self, cfg: Config, out: Path) -> list[Path]:
        return export_video_nodes(cfg, out)

    # --- client side -----------------------------------------------------------------------------
    def _workspace(self, cfg: Config, node: NodeInfo) -> VideoWorkspace:
        return node_workspace(cfg, node.node_config, node.partition_id, open_video_workspace,
                              "video-reid", "video-clients")

    def _features(self, cfg: Config, ws: VideoWorkspace, model: torch.nn.Module,
                  records: list, head: torch.nn.Module | None = None) -> torch.Tensor:
        return fed.features(cfg, model, records, head)

    def _bn_samples(self, ws: VideoWorkspace, records: list) -> list:
        return records

    def _feature_options(self, cfg: Config) -> tuple:
        return (cfg.video_test_clips,)

    def _local_round(self, cfg: Config, ws: VideoWorkspace, split: Any, backbone: dict,
                     phi: Any, state: Any, server_round: int, partition_id: int
                     ) -> fed.ReidRoundResult:
        labels, _ = split.train_labels()
        public = shared = None
        if cfg.uses_public_data:
            p_tracks, p_labels = ws.public()
            public = (p_tracks, torch.as_tensor(p_labels))
            shared = self._public_features(cfg, ws)
        return fed.local_round(cfg, backbone, phi, state, list(split.train),
                               torch.as_tensor(labels),
                               fed.round_seed(cfg, server_round, partition_id), server_round,
                               public=public, public_features=shared)
