"""What the image and the video re-ID workloads share (Sec. 7.7's federation, FedFR on it).

``BaseReidWorkload`` holds the one path both take: pre-training or loading Theta_g^0 / Phi_g^0,
the server's Theta_g and the generic protocol, the client's train reply and its personalised
protocol (Theta_g, Theta_l, [Theta_l, Pi_l]). A subclass says what differs: its federated module
``fed`` (``fedfr.reid.federated`` or ``fedfr.reid.video.federated``: make_model, load_received,
shared_state, retrieval_metrics), how its records become test features (``_features``) and BN
samples (``_bn_samples``), its pre-training (``_pretrain``) and its local round (``_local_round``).
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedfr.checkpoint import load_pretrained, save_pretrained
from fedfr.client_state import ClientStateStore
from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.workloads.base import NodeInfo, TrainOutcome, Workload
from strategies.records import pack_arrays, unpack_arrays

log = logging.getLogger(__name__)

#: metrics of one query / gallery evaluation kept per dataset / tracklet set in the reports
PER_SET = ("mAP", "rank1")
#: metrics averaged over the unseen sets as the generic protocol's plain keys
GENERIC_MEANS = ("mAP", "rank1", "rank5", "rank10", "mINP")

_PUBLIC_FEATS: dict[tuple, torch.Tensor] = {}
_PUBLIC_LOCK = threading.Lock()


def train_outcome(cfg: Config, result: Any) -> TrainOutcome:
    """The train reply of a local round's ``ReidRoundResult``: the backbone (and Phi with FedFR),
    the aggregation weight (+ the hard negatives with ``aggregation-weight = "private+hn"``)."""
    weight = result.num_examples
    if cfg.aggregation_weight == "private+hn":
        weight += result.num_hard_negatives
    return TrainOutcome(
        arrays=pack_arrays(result.backbone, result.phi),
        counts={"num-examples": int(weight),
                "num-hard-negatives": int(result.num_hard_negatives),
                "num-steps": int(result.num_steps)},
        log={"private": result.num_examples, "loss": result.losses.get("total", math.nan)})


class BaseReidWorkload(Workload):
    """Federated re-ID on one kind of record (images or tracklets): FedAvg / FedPav and FedFR
    (hard negatives, contrastive, DFC). Subclasses set ``fed`` and the hooks (module doc)."""

    #: the federated module: make_model, load_received, shared_state, retrieval_metrics
    fed: ClassVar[ModuleType]
    #: "re-ID" / "video re-ID" in log lines; "images" / "tracklets" (what a public set holds)
    title: ClassVar[str]
    unit: ClassVar[str]
    eval_models = ("global", "local", "personal")

    def personal_model(self, cfg: Config) -> str:
        return "personal" if cfg.dfc else "local"

    # --- what differs between image and video re-ID ----------------------------------------------
    @abstractmethod
    def _workspace(self, cfg: Config, node: NodeInfo) -> Any:
        """This client's workspace (in a deployment: only its node's exported folder)."""

    @abstractmethod
    def pretrained_path(self, cfg: Config, data: Any) -> Path:
        """Where Theta_g^0 / Phi_g^0 are cached (or ``pretrained-path``)."""

    @abstractmethod
    def _model_name(self, cfg: Config) -> str:
        """The run's model as a refusal names it (``reid-model 'small_reid'``)."""

    @abstractmethod
    def _pretrain(self, cfg: Config, data: Any) -> tuple[torch.nn.Module, torch.Tensor, dict]:
        """(Theta_g^0, Phi_g^0, the cache file's metadata) trained on the public set."""

    @abstractmethod
    def _features(self, cfg: Config, ws: Any, model: torch.nn.Module, records: list,
                  head: torch.nn.Module | None = None) -> torch.Tensor:
        """L2-normalised test features (N, d) of ``records`` (Pi(f_bn) with a DFC head)."""

    @abstractmethod
    def _bn_samples(self, ws: Any, records: list) -> Any:
        """What ``fed.load_received`` estimates BN statistics on, for ``records``."""

    @abstractmethod
    def _feature_options(self, cfg: Config) -> tuple:
        """The run-config values besides the model that change the public features."""

    @abstractmethod
    def _local_round(self, cfg: Config, ws: Any, split: Any, backbone: dict, phi: Any,
                     state: Any, server_round: int, partition_id: int) -> Any:
        """One local round of client ``partition_id`` on ``split`` -> ``ReidRoundResult``."""

    # --- shared helpers --------------------------------------------------------------------------
    def _public_features(self, cfg: Config, ws: Any) -> Callable[[torch.nn.Module], torch.Tensor]:
        """D_g's features under Theta_g^t, computed once per model per process (every client of
        a round in this process receives the same Theta_g^t); only the newest model's are kept."""
        from fedfr.face.evaluation.cache import model_digest

        records = ws.public()[0]

        def compute(model: torch.nn.Module) -> torch.Tensor:
            key = (self.name, model_digest(model), ws.public_name, *self._feature_options(cfg))
            with _PUBLIC_LOCK:
                if key in _PUBLIC_FEATS:
                    return _PUBLIC_FEATS[key]
            f = self._features(cfg, ws, model, records)
            with _PUBLIC_LOCK:
                _PUBLIC_FEATS.clear()
                _PUBLIC_FEATS[key] = f
            return f

        return compute

    # --- server side -----------------------------------------------------------------------------
    def initial_arrays(self, cfg: Config, data: Any) -> tuple[ArrayRecord, dict[str, Any]]:
        path = self.pretrained_path(cfg, data)
        if path.exists():
            full, phi, meta = load_pretrained(path)
            model = self.fed.make_model(cfg)
            try:
                model.load_state_dict(full)
            except RuntimeError as e:
                raise ConfigError(f"{path}: does not fit {self._model_name(cfg)}: {e}") from e
            info = {"path": str(path), "loaded": True, **meta}
            log.info("loaded the pre-trained %s model from %s", self.title, path)
        else:
            records, labels = data.public()
            log.info("pre-training %s on %s (%d %s, %d identities) for %d epochs",
                     self._model_name(cfg), data.public_name, len(records), self.unit,
                     max(labels) + 1, cfg.pretrain_epochs)
            model, phi, meta = self._pretrain(cfg, data)
            full = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_pretrained(path, full, phi, meta)
            info = {"path": str(path), "loaded": False, **meta}
        return pack_arrays(self.fed.shared_state(cfg, model),
                           phi if cfg.uses_public_data else None), info

    def server_model(self, cfg: Config, data: Any, arrays: ArrayRecord):
        """Theta_g as the server evaluates it (``reid-bn = "local"``: BN statistics re-estimated
        on the public set, since none travel)."""
        backbone, _ = unpack_arrays(arrays)
        public = self._bn_samples(data, data.public()[0]) if cfg.reid_bn == "local" else None
        return self.fed.load_received(cfg, backbone, None, public)

    def evaluate_generic(self, cfg: Config, data: Any, arrays: ArrayRecord) -> dict[str, float]:
        """Each unseen set's query / gallery with Theta_g (sets with random splits: the mean over
        their 10 splits, and its std as ``<set>.mAP_std``); the mean over sets as plain keys."""
        model = self.server_model(cfg, data, arrays)
        out: dict[str, float] = {}
        per: list[dict[str, float]] = []
        for name, splits in data.unseen_splits():
            runs = [self.fed.retrieval_metrics(cfg, self._features(cfg, data, model, s.query),
                                               self._features(cfg, data, model, s.gallery),
                                               s.query, s.gallery) for s in splits]
            res = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
            per.append(res)
            out.update({f"{name}.{k}": v for k, v in res.items()})
            if len(runs) > 1:
                out[f"{name}.splits"] = float(len(runs))
                for k in PER_SET:
                    out[f"{name}.{k}_std"] = statistics.stdev(r[k] for r in runs)
        for key in GENERIC_MEANS:
            vals = [r[key] for r in per if not math.isnan(r[key])]
            out[key] = sum(vals) / len(vals) if vals else math.nan
        return out

    # --- client side -----------------------------------------------------------------------------
    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        pid = node.partition_id
        ws = self._workspace(cfg, node)
        split = ws.client(pid)
        backbone, phi = unpack_arrays(arrays)
        store = ClientStateStore(node.state_root, experiment_id, pid)
        state = store.load_before(server_round)
        result = self._local_round(cfg, ws, split, backbone, phi, state, server_round, pid)
        store.save(server_round, result.state)
        return train_outcome(cfg, result)

    def client_models(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                      experiment_id: str | None, models: list[str]):
        """(model name, net in eval mode, DFC head Pi_l or None) for each requested model of
        this client: ``global`` = Theta_g as received, ``local`` = Theta_l, ``personal`` =
        [Theta_l, Pi_l] (Theta_g where the node has no state yet). Also the benchmark's CMC
        curves."""
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
                own_data = self._bn_samples(ws, split.train) if cfg.reid_bn == "local" else None
                model = self.fed.load_received(cfg, backbone, own, own_data)
            else:
                model = self.fed.make_model(cfg)
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
        """This client's query / gallery with each requested model; per-model means and the
        client's own ``<model>.<set>.<metric>`` (Table 7.5's per-client columns)."""
        ws = self._workspace(cfg, node)
        split = ws.client(node.partition_id)
        out: dict[str, float] = {}
        for name, model, head in self.client_models(cfg, node, arrays, server_round,
                                                    experiment_id, models):
            qf = self._features(cfg, ws, model, split.query, head)
            gf = self._features(cfg, ws, model, split.gallery, head)
            res = self.fed.retrieval_metrics(cfg, qf, gf, split.query, split.gallery)
            out.update({f"{name}.{k}": v for k, v in res.items()})
            out.update({f"{name}.{split.name}.{k}": res[k] for k in PER_SET})
        return out
