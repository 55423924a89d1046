"""Federated HSR (``task = "unsup-reid"``, the FedUReID setting): camera sites without labels
(dissertation Ch. 4 carried to a federation; docs/unsupervised-reid.md).

Data, pre-training, evaluation and reports are the re-ID workload's (``ReidWorkload``): the
server's public labelled set (``reid-public``) pre-trains Theta_g^0 (the source model) and so
anchors training; optionally the first ``unsup-labelled-sites`` sites keep their labels and run
the re-ID workload's supervised local round (FedAvg recipe) as labelled anchors. Every other site
runs one HSR iteration per round on its own unlabelled training images from the received
backbone (``fedfr.reid.unsup.federated.hsr_step``: DBSCAN on the Jaccard distance, PBH, ICM, the
row ``unsup-method``). The reply carries ``backbone.*`` and the counters only; features,
distances, clusters, pseudo-labels and classifiers stay on the site. FedAvg only.
"""

from __future__ import annotations

import math

import torch
from flwr.app import ArrayRecord

from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.face.training.batches import seeded_generator
from fedfr.workloads.base import NodeInfo, TrainOutcome
from fedfr.workloads.reid import ReidWorkload
from fedfr.workloads.semi_reid import FewLabelReidWorkload


class UnsupReidWorkload(FewLabelReidWorkload):
    """Federated HSR with a public (and optionally a labelled-site) anchor (module doc)."""

    name = "unsup-reid"

    def check_config(self, cfg: Config) -> None:
        super().check_config(cfg)
        sites = len([c for c in cfg.reid_clients.split(",") if c.strip()])
        if cfg.num_clients > 0:
            sites = min(sites, cfg.num_clients)
        if cfg.unsup_labelled_sites >= sites:
            raise ConfigError(f"config 'unsup-labelled-sites' = {cfg.unsup_labelled_sites}: "
                              f"task 'unsup-reid' needs at least one unlabelled site of the "
                              f"{sites} (use task 'reid' for labelled sites only)")

    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        from fedfr.reid.unsup.federated import hsr_config, hsr_step

        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        if pid < cfg.unsup_labelled_sites:  # a labelled anchor site: the supervised round
            return ReidWorkload.train(self, cfg, node, arrays, server_round, experiment_id)
        model, store, _ = self.received_model(cfg, node, split, ws, arrays, server_round,
                                              experiment_id)
        seed = int(torch.randint(0, 2**31 - 1, (1,),
                                 generator=seeded_generator(cfg.seed, server_round, pid)))
        row = hsr_step(model, split.train, hsr_config(cfg, len(split.train)), seed, split.name)
        train = row.get("train", {})
        return self.reply(cfg, model, store, server_round, torch.zeros(0, model.feature_dim),
                          len(split.train), int(train.get("steps", 0)),
                          float(train.get("loss", math.nan)))
