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
import math
import statistics
import threading
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord

from fedfr.checkpoint import digest_of, load_pretrained, save_pretrained
from fedfr.client_state import ClientStateStore
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
from fedfr.workloads.base import NodeInfo, TrainOutcome, Workload
from strategies.records import pack_arrays, unpack_arrays

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` once per process (check_config runs for every message a client gets)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)

#: metrics of one query / gallery evaluation kept per dataset in the reports
PER_SET = ("mAP", "rank1")


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


_PUBLIC_FEATS: dict[tuple, torch.Tensor] = {}
_PUBLIC_LOCK = threading.Lock()


def _shared_public_features(cfg: Config, ws: ReidWorkspace, images: torch.Tensor):
    """D_g's features under Theta_g^t, computed once per model per process (every client of a
    round in this process receives the same Theta_g^t); only the newest model's are kept."""
    from fedfr.face.evaluation.cache import model_digest

    def features(model) -> torch.Tensor:
        key = (model_digest(model), cfg.eval_flip, ws.public_name)
        with _PUBLIC_LOCK:
            if key in _PUBLIC_FEATS:
                return _PUBLIC_FEATS[key]
        f = fed.embed(cfg, model, images)
        with _PUBLIC_LOCK:
            _PUBLIC_FEATS.clear()
            _PUBLIC_FEATS[key] = f
        return f

    return features


class ReidWorkload(Workload):
    """Federated person re-ID: FedAvg / FedPav and FedFR (hard negatives, contrastive, DFC)."""

    name = "reid"
    supported = {"strategy": ("fedfr", "fedavg")}  # FedFace's proxies are a face baseline
    eval_models = ("global", "local", "personal")

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

    def personal_model(self, cfg: Config) -> str:
        return "personal" if cfg.dfc else "local"

    # --- server side -----------------------------------------------------------------------------
    def open_server_data(self, cfg: Config) -> ReidWorkspace:
        return open_reid_workspace(cfg)

    def initial_arrays(self, cfg: Config, data: ReidWorkspace
                       ) -> tuple[ArrayRecord, dict[str, Any]]:
        path = pretrained_path(cfg, data)
        if path.exists():
            full, phi, meta = load_pretrained(path)
            model = fed.make_model(cfg)
            try:
                model.load_state_dict(full)
            except RuntimeError as e:
                raise ConfigError(f"{path}: does not fit reid-model '{cfg.reid_model}': {e}") \
                    from e
            info = {"path": str(path), "loaded": True, **meta}
            log.info("loaded the pre-trained re-ID model from %s", path)
        else:
            records, labels = data.public()
            log.info("pre-training %s on %s (%d images, %d identities) for %d epochs",
                     cfg.reid_model, data.public_name, len(records), max(labels) + 1,
                     cfg.pretrain_epochs)
            model, phi, stats = fed.pretrain(cfg, records, labels, data.images(records))
            full = {k: v.detach().clone() for k, v in model.state_dict().items()}
            meta = {"public": data.public_name, "model": cfg.reid_model,
                    "epochs": cfg.pretrain_epochs, "seconds": stats["seconds"],
                    "images_per_s": stats["images_per_s"], "final-loss": stats["loss"]}
            save_pretrained(path, full, phi, meta)
            info = {"path": str(path), "loaded": False, **meta}
        shared = fed.shared_state(cfg, model)
        return pack_arrays(shared, phi if cfg.uses_public_data else None), info

    def server_model(self, cfg: Config, data: ReidWorkspace, arrays: ArrayRecord):
        """Theta_g as the server evaluates it (``reid-bn = "local"``: BN statistics re-estimated
        on the public set, since none travel)."""
        backbone, _ = unpack_arrays(arrays)
        public_images = None
        if cfg.reid_bn == "local":  # no statistics travel: the server's are the public set's
            public_images = data.images(data.public()[0])
        return fed.load_received(cfg, backbone, None, public_images)

    def evaluate_generic(self, cfg: Config, data: ReidWorkspace,
                         arrays: ArrayRecord) -> dict[str, float]:
        """Each unseen set's query / gallery with Theta_g (sets with random splits: the mean over
        their 10 splits, and its std as ``<set>.mAP_std``); the mean over sets as plain keys."""
        model = self.server_model(cfg, data, arrays)
        out: dict[str, float] = {}
        per: list[dict[str, float]] = []
        for name, splits in data.unseen_splits():
            runs = []
            for split in splits:  # 10 seeded random splits for VIPeR, GRID, iLIDS, PRID
                qf = fed.embed(cfg, model, data.images(split.query))
                gf = fed.embed(cfg, model, data.images(split.gallery))
                runs.append(fed.retrieval_metrics(cfg, qf, gf, split.query, split.gallery))
            res = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
            per.append(res)
            out.update({f"{name}.{k}": v for k, v in res.items()})
            if len(runs) > 1:
                out[f"{name}.splits"] = float(len(runs))
                for k in PER_SET:
                    out[f"{name}.{k}_std"] = statistics.stdev(r[k] for r in runs)
        for key in ("mAP", "rank1", "rank5", "rank10", "mINP"):
            vals = [r[key] for r in per if not math.isnan(r[key])]
            out[key] = sum(vals) / len(vals) if vals else math.nan
        return out

    def summary_table(self, report: dict[str, Any]) -> str:
        from fedfr.reid.report import table_7_5

        return table_7_5(report)

    # --- client side -----------------------------------------------------------------------------
    def export_nodes(self, cfg: Config, out: Path) -> list[Path]:
        return export_reid_nodes(cfg, out)

    def _workspace(self, cfg: Config, node: NodeInfo) -> ReidWorkspace:
        return node_workspace(cfg, node.node_config, node.partition_id, open_reid_workspace,
                              "reid", "reid-clients")

    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        labels, _ = split.train_labels()
        images = ws.images(split.train)
        backbone, phi = unpack_arrays(arrays)
        store = ClientStateStore(node.state_root, experiment_id, pid)
        state = store.load_before(server_round)
        public = features = None
        if cfg.uses_public_data:
            p_recs, p_labels = ws.public()
            p_images = ws.images(p_recs)
            public = (p_recs, p_images, torch.as_tensor(p_labels))
            features = _shared_public_features(cfg, ws, p_images)
        result = fed.local_round(cfg, backbone, phi, state, split.train, images,
                                 torch.as_tensor(labels), seeded_generator(cfg.seed, server_round,
                                                                           pid),
                                 server_round, public=public, public_features=features)
        store.save(server_round, result.state)
        weight = result.num_examples
        if cfg.aggregation_weight == "private+hn":
            weight += result.num_hard_negatives
        return TrainOutcome(
            arrays=pack_arrays(result.backbone, result.phi),
            counts={"num-examples": int(weight),
                    "num-hard-negatives": int(result.num_hard_negatives),
                    "num-steps": int(result.num_steps)},
            log={"private": result.num_examples, "loss": result.losses.get("total", math.nan)})

    def client_models(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                      experiment_id: str | None, models: list[str]):
        """(model name, ReidNet, DFC head Pi_l or None) for each requested model of this client:
        ``global`` = Theta_g as received, ``local`` = Theta_l, ``personal`` = [Theta_l, Pi_l]
        (Theta_g where the node has no state yet). Also the benchmark's CMC curves."""
        from fedfr.dfc import DFCHead

        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        backbone, _ = unpack_arrays(arrays)
        state = None
        if experiment_id is not None and server_round > 0:
            state = ClientStateStore(node.state_root, experiment_id, pid).load_before(
                server_round + 1)
        own = state.prev_backbone if state is not None else None
        out = []
        for name in models:
            head = None
            if name == "global" or own is None:
                train_images = ws.images(split.train) if cfg.reid_bn == "local" else None
                model = fed.load_received(cfg, backbone, own, train_images)
            else:
                model = fed.make_model(cfg)
                model.load_state_dict(own)
            if name == "personal" and state is not None and state.dfc is not None:
                dfc = DFCHead(model.feature_dim, state.w.shape[0])
                dfc.load_personal_state(state.dfc)
                head = dfc.pi
            out.append((name, model, head))
        return out

    def evaluate(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                 experiment_id: str | None, models: list[str]) -> dict[str, float]:
        """This client's query / gallery with each requested model; per-model means and the
        client's own ``<model>.<dataset>.<metric>`` (Table 7.5's per-client columns)."""
        ws = self._workspace(cfg, node)
        split = ws.client(node.partition_id)
        q_images, g_images = ws.images(split.query), ws.images(split.gallery)
        out: dict[str, float] = {}
        for name, model, head in self.client_models(cfg, node, arrays, server_round,
                                                    experiment_id, models):
            res = fed.retrieval_metrics(cfg, fed.embed(cfg, model, q_images, head),
                                        fed.embed(cfg, model, g_images, head),
                                        split.query, split.gallery)
            out.update({f"{name}.{k}": v for k, v in res.items()})
            out.update({f"{name}.{split.name}.{k}": res[k] for k in PER_SET})
        return out
