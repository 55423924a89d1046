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
from fedfr.reid.video import federated as fed
from fedfr.reid.video.workspace import (
    VideoWorkspace,
    check_names,
    export_video_nodes,
    open_video_workspace,
    tracklets_digest,
)
from fedfr.reid.workspace import node_workspace
from fedfr.workloads.base import NodeInfo, TrainOutcome, Workload
from strategies.records import pack_arrays, unpack_arrays

log = logging.getLogger(__name__)

#: metrics of one query / gallery evaluation kept per tracklet set in the reports
PER_SET = ("mAP", "rank1")
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


_PUBLIC_FEATS: dict[tuple, torch.Tensor] = {}
_PUBLIC_LOCK = threading.Lock()


def _shared_public_features(cfg: Config, ws: VideoWorkspace, tracklets: list):
    """D_g's tracklet features under Theta_g^t, computed once per model per process."""
    from fedfr.face.evaluation.cache import model_digest

    def compute(model) -> torch.Tensor:
        key = (model_digest(model), ws.public_name, cfg.video_test_clips)
        with _PUBLIC_LOCK:
            if key in _PUBLIC_FEATS:
                return _PUBLIC_FEATS[key]
        f = fed.features(cfg, model, tracklets)
        with _PUBLIC_LOCK:
            _PUBLIC_FEATS.clear()
            _PUBLIC_FEATS[key] = f
        return f

    return compute


class VideoReidWorkload(Workload):
    """Federated video re-ID: FedAvg / FedPav and FedFR (hard negatives, contrastive, DFC)."""

    name = "video-reid"
    # FedFace's proxies are a face baseline; the test-time image flip is an image re-ID option
    supported = {"strategy": ("fedfr", "fedavg"), "eval-flip": (False,)}
    eval_models = ("global", "local", "personal")

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

    def personal_model(self, cfg: Config) -> str:
        return "personal" if cfg.dfc else "local"

    # --- server side -----------------------------------------------------------------------------
    def open_server_data(self, cfg: Config) -> VideoWorkspace:
        return open_video_workspace(cfg)

    def initial_arrays(self, cfg: Config, data: VideoWorkspace
                       ) -> tuple[ArrayRecord, dict[str, Any]]:
        path = pretrained_path(cfg, data)
        if path.exists():
            full, phi, meta = load_pretrained(path)
            model = fed.make_model(cfg)
            try:
                model.load_state_dict(full)
            except RuntimeError as e:
                raise ConfigError(f"{path}: does not fit video-model '{cfg.video_model}' on "
                                  f"'{cfg.video_backbone}': {e}") from e
            info = {"path": str(path), "loaded": True, **meta}
            log.info("loaded the pre-trained video re-ID model from %s", path)
        else:
            tracklets, labels = data.public()
            log.info("pre-training %s on %s (%d tracklets, %d identities) for %d epochs",
                     cfg.video_model, data.public_name, len(tracklets), max(labels) + 1,
                     cfg.pretrain_epochs)
            model, phi, stats = fed.pretrain(cfg, tracklets, labels)
            full = {k: v.detach().clone() for k, v in model.state_dict().items()}
            meta = {"public": data.public_name, "model": cfg.video_model,
                    "backbone": cfg.video_backbone, "epochs": cfg.pretrain_epochs,
                    "seconds": stats["seconds"], "clips_per_s": stats["clips_per_s"],
                    "final-loss": stats["loss"]}
            save_pretrained(path, full, phi, meta)
            info = {"path": str(path), "loaded": False, **meta}
        return pack_arrays(fed.shared_state(cfg, model),
                           phi if cfg.uses_public_data else None), info

    def server_model(self, cfg: Config, data: VideoWorkspace, arrays: ArrayRecord):
        """Theta_g as the server evaluates it (``reid-bn = "local"``: BN statistics re-estimated
        on the public tracklets, since none travel)."""
        backbone, _ = unpack_arrays(arrays)
        public = data.public()[0] if cfg.reid_bn == "local" else None
        return fed.load_received(cfg, backbone, None, public)

    def evaluate_generic(self, cfg: Config, data: VideoWorkspace,
                         arrays: ArrayRecord) -> dict[str, float]:
        """Each unseen set's query / gallery with Theta_g (iLIDS-VID, PRID2011: the mean over
        their 10 splits and its std as ``<set>.mAP_std``); the mean over sets as plain keys."""
        model = self.server_model(cfg, data, arrays)
        out: dict[str, float] = {}
        per: list[dict[str, float]] = []
        for name, splits in data.unseen_splits():
            runs = [fed.retrieval_metrics(cfg, fed.features(cfg, model, s.query),
                                          fed.features(cfg, model, s.gallery), s.query,
                                          s.gallery) for s in splits]
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

    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        labels, _ = split.train_labels()
        backbone, phi = unpack_arrays(arrays)
        store = ClientStateStore(node.state_root, experiment_id, pid)
        state = store.load_before(server_round)
        public = shared = None
        if cfg.uses_public_data:
            p_tracks, p_labels = ws.public()
            public = (p_tracks, torch.as_tensor(p_labels))
            shared = _shared_public_features(cfg, ws, p_tracks)
        result = fed.local_round(cfg, backbone, phi, state, list(split.train),
                                 torch.as_tensor(labels), fed.round_seed(cfg, server_round, pid),
                                 server_round, public=public, public_features=shared)
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
        """(model name, video net, DFC head Pi_l or None) for each requested model of this
        client: ``global`` = Theta_g as received, ``local`` = Theta_l, ``personal`` =
        [Theta_l, Pi_l] (Theta_g where the node has no state yet)."""
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
                model = fed.load_received(cfg, backbone, own, split.train)
            else:
                model = fed.make_model(cfg)
                model.load_state_dict(own)
                model.eval()
            if name == "personal" and state is not None and state.dfc is not None:
                dfc = DFCHead(model.feature_dim, state.w.shape[0])
                dfc.load_personal_state(state.dfc)
                head = dfc.pi
            out.append((name, model, head))
        return out

    def evaluate(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                 experiment_id: str | None, models: list[str]) -> dict[str, float]:
        """This client's query / gallery tracklets with each requested model; per-model means
        and the client's own ``<model>.<set>.<metric>`` (Table 7.5's per-client columns)."""
        ws = self._workspace(cfg, node)
        split = ws.client(node.partition_id)
        out: dict[str, float] = {}
        for name, model, head in self.client_models(cfg, node, arrays, server_round,
                                                    experiment_id, models):
            res = fed.retrieval_metrics(cfg, fed.features(cfg, model, split.query, head),
                                        fed.features(cfg, model, split.gallery, head),
                                        split.query, split.gallery)
            out.update({f"{name}.{k}": v for k, v in res.items()})
            out.update({f"{name}.{split.name}.{k}": res[k] for k in PER_SET})
        return out
