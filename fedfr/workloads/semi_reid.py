"""Federated SGC-DPL (``task = "semi-reid"``): camera sites with a few labelled identities and
unlabelled ones (dissertation Ch. 3 carried to a federation; docs/unsupervised-reid.md).

Data, pre-training, evaluation and reports are the re-ID workload's (``ReidWorkload``): one
site per ``reid-clients`` dataset, Theta_g^0 pre-trained on the server's public labelled set
(``reid-public``), personalised protocol on each site's query / gallery, generic on
``reid-unseen``. Each site splits its training identities into labelled / unlabelled parts
(``semi-ratio``, seeded by ``seed``: ``make_semi_split``) and each round runs one SGC-DPL step
from the received backbone (``fedfr.reid.semi.federated.semi_step``): SGC-DPL's iteration 0 for
the first ``semi-init-rounds`` rounds, then iteration t = round - semi-init-rounds (clustering
``semi-clustering``, reliable subset with d_t counted in rounds, soft pseudo-labels). The reply
carries ``backbone.*`` and the counters only; W^l, features, clusters, distances and
pseudo-labels stay on the site. FedAvg only (FedFR's public-data techniques, the contrastive
term and DFC are not part of this local step and are refused).
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord

from fedfr.client_state import ClientStateStore
from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.local import PersonalState
from fedfr.reid import federated as fed
from fedfr.reid.workspace import SYNTHETIC_PREFIX
from fedfr.workloads.base import NodeInfo, TrainOutcome
from fedfr.workloads.reid import ReidWorkload
from strategies.records import pack_arrays, unpack_arrays


class TrainingForwards:
    """Counts the forward passes ``model`` makes in training mode (= optimiser steps of a loop
    with one forward per step) while the context is open."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.count, self._hook = model, 0, None

    def __enter__(self) -> TrainingForwards:
        def hook(mod: torch.nn.Module, *_: object) -> None:
            if mod.training:
                self.count += 1

        self._hook = self.model.register_forward_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()


class FewLabelReidWorkload(ReidWorkload):
    """What the two few-label re-ID workloads share: FedAvg on the backbone only, the received
    model with this node's BN policy, the node state (last model, kept classifier rows)."""

    supported = {"strategy": ("fedavg",), "contrastive": (False,), "dfc": (False,)}

    def received_model(self, cfg: Config, node: NodeInfo, split, ws, arrays: ArrayRecord,
                       server_round: int, experiment_id: str):
        """(model, store, state before this round) of this node for the received ``arrays``."""
        backbone, _ = unpack_arrays(arrays)
        store = ClientStateStore(node.state_root, experiment_id, node.partition_id)
        state = store.load_before(server_round)
        own = state.prev_backbone if state is not None else None
        images = ws.images(split.train) if cfg.reid_bn == "local" and own is None else None
        model = fed.load_received(cfg, backbone, own, images)
        return model, store, state

    @staticmethod
    def reply(cfg: Config, model, store: ClientStateStore, server_round: int, w: torch.Tensor,
              num_examples: int, num_steps: int, loss: float) -> TrainOutcome:
        """Keep (W rows, the full model) on the node; send the backbone and the counters."""
        model.eval()
        full = {k: v.detach().clone() for k, v in model.state_dict().items()}
        store.save(server_round, PersonalState(w=w, prev_backbone=full, last_round=server_round))
        return TrainOutcome(arrays=pack_arrays(fed.shared_state(cfg, model), None),
                            counts={"num-examples": int(num_examples), "num-hard-negatives": 0,
                                    "num-steps": int(num_steps)},
                            log={"private": num_examples, "loss": loss})


class SemiReidWorkload(FewLabelReidWorkload):
    """Federated SGC-DPL (module doc)."""

    name = "semi-reid"

    def check_config(self, cfg: Config) -> None:
        from fedfr.reid.semi.federated import check_ratio

        super().check_config(cfg)
        check_ratio(cfg.semi_ratio)

    def open_server_data(self, cfg: Config):
        """The re-ID workspace, refused before any training when a synthetic site's
        ``semi-ratio`` share of its training identities is under 2 labelled identities (the
        server renders synthetic sites from the seed; a real site's data stays on its node, which
        checks the same in ``train``)."""
        ws = super().open_server_data(cfg)
        for pid, name in enumerate(ws.client_names):
            if name.startswith(SYNTHETIC_PREFIX):
                _check_labelled(cfg, name, ws.client(pid).num_train_pids)
        return ws

    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        from fedfr.reid.semi.federated import semi_config, semi_step, site_split

        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        _check_labelled(cfg, split.name, split.num_train_pids)
        model, store, state = self.received_model(cfg, node, split, ws, arrays, server_round,
                                                  experiment_id)
        _, xl, xu = site_split(split.train, split.name, cfg.semi_ratio, cfg.seed)
        step = max(0, server_round - cfg.semi_init_rounds)
        with TrainingForwards(model) as steps:
            res = semi_step(model, state.w if state is not None else None, xl, xu,
                            semi_config(cfg), step, seeded_generator(cfg.seed, server_round, pid))
        return self.reply(cfg, model, store, server_round, res.w, res.num_examples, steps.count,
                          float(res.row.get("loss", float("nan"))))


def _check_labelled(cfg: Config, name: str, ids: int) -> None:
    """ConfigError unless site ``name`` with ``ids`` training identities gets >= 2 labelled."""
    from fedfr.reid.semi.splits import num_labelled

    if ids < 3 or num_labelled(cfg.semi_ratio, ids) < 2:
        raise ConfigError(f"config 'semi-ratio' = {cfg.semi_ratio!r}: site {name} has {ids} "
                          "training identities, so fewer than 2 would be labelled (SGC-DPL needs "
                          "2 or more; raise 'semi-ratio' or the data)")
