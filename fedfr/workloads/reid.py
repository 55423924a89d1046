"""The person re-ID workload (``task = "reid"``): Sec. 7.7's federation, FedFR's techniques on it.

Clients are datasets (``reid-clients``; synthetic camera-network domains by default), the unseen
datasets (``reid-unseen``) are the generic test, the public dataset (``reid-public``) pre-trains
Theta_g^0 and Phi_g^0 and supplies hard negatives. Messages carry ``backbone.*`` (the re-ID net:
trunk and BNNeck; BN running statistics unless ``reid-bn = "local"``) and, with FedFR, ``phi``
(the public classifier); the identity classifier W_l, the DFC branch, the previous local model,
features, labels and images stay on the node. Metrics: CMC rank-k / mAP (``reid-ap``) / mINP;
personalised = each client's own query / gallery with Theta_g, Theta_l and [Theta_l, Pi_l];
generic = each unseen set with Theta_g. See ``fedfr/reid/federated.py`` and docs/reid.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fedfr.checkpoint import digest_of
from fedfr.config import Config, resolve_path
from fedfr.errors import ConfigError
from fedfr.face.training.batches import seeded_generator
from fedfr.reid import federated as fed
from fedfr.reid.workspace import (
    ReidWorkspace,
    export_reid_nodes,
    node_workspace,
    open_reid_workspace,
    records_digest,
)
from fedfr.workloads.base import NodeInfo
from fedfr.workloads.reid_base import PER_SET, BaseReidWorkload

__all__ = ["PER_SET", "ReidWorkload", "pretrained_path"]

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` once per process (check_config runs for every message a client gets)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def pretrained_path(cfg: Config, ws: ReidWorkspace):
    """Theta_g^0 / Phi_g^0 of the re-ID run: ``pretrained-path`` or the cache, keyed by digest."""
    if cfg.pretrained_path:
        return resolve_path(cfg.pretrained_path)
    key = digest_of({
        "public": records_digest(ws.dataset(ws.public_name)), "model": cfg.reid_model,
        "h": cfg.reid_height, "w": cfg.reid_width, "epochs": cfg.pretrain_epochs,
        "lr": cfg.reid_pretrain_lr,
        "warmup": cfg.reid_warmup_epochs, "batch": cfg.batch_size, "k": cfg.reid_instances,
        "triplet": cfg.reid_triplet, "margin": cfg.reid_margin, "ls": cfg.reid_label_smoothing,
        "erasing": cfg.reid_erasing, "wd": cfg.weight_decay, "seed": cfg.seed,
    })
    return cfg.cache_path / "pretrained" / f"reid-{cfg.reid_model}-{key}.pt"


class ReidWorkload(BaseReidWorkload):
    """Federated person re-ID: FedAvg / FedPav and FedFR (hard negatives, contrastive, DFC).
    The shared path is ``BaseReidWorkload``'s; here: images, ``fedfr.reid.federated``."""

    name = "reid"
    supported = {"strategy": ("fedfr", "fedavg")}  # FedFace's proxies are a face baseline
    fed = fed
    title, unit = "re-ID", "images"

    def check_config(self, cfg: Config) -> None:
        super().check_config(cfg)
        n = len([c for c in cfg.reid_clients.split(",") if c.strip()])
        if cfg.num_clients > n:
            raise ConfigError(f"config 'num-clients' = {cfg.num_clients} but 'reid-clients' names "
                              f"only {n} datasets (task 'reid': one client per dataset; start at "
                              f"most {n} SuperNodes or name more datasets)")
        if 0 < cfg.num_clients < n:
            used = [c.strip() for c in cfg.reid_clients.split(",") if c.strip()][:cfg.num_clients]
            _warn_once(f"task 'reid': {cfg.num_clients} clients, so the first "
                       f"{cfg.num_clients} of the {n} reid-clients take part ({', '.join(used)}); "
                       f"start {n} SuperNodes (flwr run . --federation-config "
                       f"'num-supernodes={n}') for all of them")
        if cfg.batch_size % cfg.reid_instances:
            raise ConfigError(f"config 'batch-size' = {cfg.batch_size}: task 'reid' needs a "
                              f"multiple of reid-instances = {cfg.reid_instances} (P x K batches)")

    # --- server side -----------------------------------------------------------------------------
    def open_server_data(self, cfg: Config) -> ReidWorkspace:
        return open_reid_workspace(cfg)

    def pretrained_path(self, cfg: Config, data: ReidWorkspace) -> Path:
        return pretrained_path(cfg, data)

    def _model_name(self, cfg: Config) -> str:
        return f"reid-model '{cfg.reid_model}'"

    def _pretrain(self, cfg: Config, data: ReidWorkspace) -> tuple[Any, torch.Tensor, dict]:
        records, labels = data.public()
        model, phi, stats = fed.pretrain(cfg, records, labels, data.images(records))
        meta = {"public": data.public_name, "model": cfg.reid_model,
                "epochs": cfg.pretrain_epochs, "seconds": stats["seconds"],
                "images_per_s": stats["images_per_s"], "final-loss": stats["loss"]}
        return model, phi, meta

    def summary_table(self, report: dict[str, Any]) -> str:
        from fedfr.reid.report import table_7_5

        return table_7_5(report)

    # --- client side -----------------------------------------------------------------------------
    def export_nodes(self, cfg: Config, out: Path) -> list[Path]:
        return export_reid_nodes(cfg, out)

    def _workspace(self, cfg: Config, node: NodeInfo) -> ReidWorkspace:
        return node_workspace(cfg, node.node_config, node.partition_id, open_reid_workspace,
                              "reid", "reid-clients")

    def _features(self, cfg: Config, ws: ReidWorkspace, model: torch.nn.Module, records: list,
                  head: torch.nn.Module | None = None) -> torch.Tensor:
        return fed.embed(cfg, model, ws.images(records), head)

    def _bn_samples(self, ws: ReidWorkspace, records: list) -> torch.Tensor:
        return ws.images(records)

    def _feature_options(self, cfg: Config) -> tuple:
        return (cfg.eval_flip,)

    def _local_round(self, cfg: Config, ws: ReidWorkspace, split: Any, backbone: dict, phi: Any,
                     state: Any, server_round: int, partition_id: int) -> fed.ReidRoundResult:
        labels, _ = split.train_labels()
        public = features = None
        if cfg.uses_public_data:
            p_recs, p_labels = ws.public()
            public = (p_recs, ws.images(p_recs), torch.as_tensor(p_labels))
            features = self._public_features(cfg, ws)
        return fed.local_round(cfg, backbone, phi, state, split.train, ws.images(split.train),
                               torch.as_tensor(labels),
                               seeded_generator(cfg.seed, server_round, partition_id),
                               server_round, public=public, public_features=features)
