"""The face workload (``task = "face"``, the default): FedFR on faces, as before the seam.

It wraps the face domain's modules (``fedfr/face/``): data from ``fedfr.face.workspace`` (or a
node's ``fedfr export`` folder, ``fedfr.node_data``), models from ``fedfr.face.models``, CosFace
pre-training (``fedfr.face.training.pretrain``), the FedFR / FedAvg / FedFace local round
(``fedfr.face.training.local``), and the generic / personalised open-set protocols of
``fedfr.face.evaluation``. Messages: ``backbone.*`` [+ ``phi`` with FedFR] (+ ``proxies`` in
FedFace's reply, its stated privacy cost).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from flwr.app import Array, ArrayRecord

from fedfr.client_state import ClientStateStore
from fedfr.config import EVAL_MODELS, Config
from fedfr.dfc import DFCHead
from fedfr.face.data.export import export_node_data
from fedfr.face.evaluation.run import (
    embed_eval,
    embed_other_clients,
    evaluate_generic,
    personalized_metrics,
)
from fedfr.face.models.template import model_factory
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.local import LocalData, PersonalState, train_local_round
from fedfr.face.training.personalize import METHODS as PERSONALIZERS
from fedfr.face.training.personalize import personalize
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import Workspace, open_workspace
from fedfr.feature_cache import shared_public_features
from fedfr.node_data import open_node_workspace
from fedfr.workloads.base import NodeInfo, TrainOutcome, Workload
from strategies.fedface import PROXIES_KEY
from strategies.records import pack_arrays, unpack_arrays

log = logging.getLogger("clients.app")


def node_workspace(cfg: Config, node: NodeInfo):
    """node-config ``data-dir`` (a ``fedfr export`` folder): only this node's own partition and
    the public set; otherwise the whole dataset (simulation; ``data-root`` overrides the path).
    Raises ``NodeDataError`` for an unusable folder."""
    data_dir = str(node.node_config.get("data-dir", "") or "")
    if data_dir:
        return open_node_workspace(cfg, data_dir, node.partition_id)
    data_root = str(node.node_config.get("data-root", "")) or None
    return open_workspace(cfg, data_root=data_root)


def with_server_proxies(state: PersonalState | None, proxies, k_l: int, d: int) -> PersonalState:
    """FedFace: the client's proxies after the server's spread-out step replace its own W_l."""
    w = torch.as_tensor(proxies, dtype=torch.float32)
    if tuple(w.shape) != (k_l, d):
        raise ValueError(f"FedFace: the server sent proxies of shape {tuple(w.shape)}, this client "
                         f"has {k_l} identities x embedding size {d}")
    if state is None:
        return PersonalState(w=w)
    state.w = w
    return state


def personal_models(cfg: Config, global_backbone: dict[str, torch.Tensor],
                    state: PersonalState | None, names: list[str]):
    """Yield (name, backbone module, head or None) for the requested evaluation models.

    global = Theta_g; local = Theta_l (the client's last local model, Theta_g if it never
    trained); personal = [Theta_l, Pi_l] with DFC, else Theta_l (Table 7.3's three rows).
    """
    make = model_factory(cfg)
    for name in names:
        if name not in ("global", "local", "personal"):
            raise ValueError(f"unknown evaluation model {name!r} (global, local, personal; "
                             f"{', '.join(PERSONALIZERS)} are trained by the evaluate handler)")
        model = make()
        head = None
        if name == "global" or state is None or state.prev_backbone is None:
            model.load_state_dict(global_backbone)
        else:
            model.load_state_dict(state.prev_backbone)
        if name == "personal" and state is not None and state.dfc is not None:
            dfc = DFCHead(cfg.embedding_size, state.w.shape[0])
            dfc.load_personal_state(state.dfc)
            head = dfc.pi
        yield name, model, head


class FaceWorkload(Workload):
    """FedFR on faces (dissertation Ch. 7): every strategy and switch of the run config."""

    name = "face"
    supported: dict[str, tuple[Any, ...]] = {}  # faces support every method switch
    eval_models = EVAL_MODELS

    def personal_model(self, cfg: Config) -> str:
        return "personal" if cfg.dfc else "local"

    # --- server side -----------------------------------------------------------------------------
    def open_server_data(self, cfg: Config) -> Workspace:
        return open_workspace(cfg)

    def initial_arrays(self, cfg: Config, data: Workspace) -> tuple[ArrayRecord, dict[str, Any]]:
        backbone0, phi0, pre_info = load_or_pretrain(cfg, data)
        return pack_arrays(backbone0, phi0 if cfg.uses_public_data else None), pre_info

    def evaluate_generic(self, cfg: Config, data: Workspace,
                         arrays: ArrayRecord) -> dict[str, float]:
        backbone, _ = unpack_arrays(arrays)
        return evaluate_generic(cfg, data, backbone)

    def export_nodes(self, cfg: Config, out: Path) -> list[Path]:
        """Each client's partition + D_g as RecordIO under ``out/client-NNNN`` (``fedfr export``),
        re-exported only when the split digest changed."""
        ws = open_workspace(cfg)
        stamp = out / "split-digest.txt"
        dirs = [out / f"client-{i:04d}" for i in range(cfg.num_clients)]
        if stamp.exists() and stamp.read_text().strip() == ws.split.digest() \
                and all((d / "node.json").exists() for d in dirs):
            return dirs
        dirs = export_node_data(ws.source, ws.split, out, fmt="recordio")
        stamp.write_text(ws.split.digest() + "\n")
        return dirs

    # --- client side -----------------------------------------------------------------------------
    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        """One local round (FedFR or the FedAvg / FedFace baselines) on the node's data."""
        pid = node.partition_id
        ws = node_workspace(cfg, node)
        data = ws.client(pid)
        backbone, phi = unpack_arrays(arrays)
        store = ClientStateStore(node.state_root, experiment_id, pid)
        state = store.load_before(server_round)
        if cfg.strategy == "fedface" and PROXIES_KEY in arrays:
            state = with_server_proxies(state, arrays[PROXIES_KEY].numpy(),
                                        data.num_classes, cfg.embedding_size)
        public_images = public_labels = public_features = None
        if cfg.uses_public_data:
            public_images, public_labels = ws.public()
            if cfg.hard_negatives:  # D_g's features under Theta_g^t: once per round per machine
                public_features = shared_public_features(
                    cfg, backbone, public_images, server_round,
                    data_key=f"{ws.data_digest()}-{node.node_config.get('data-root', '')}")
        result = train_local_round(
            model_factory(cfg), backbone, phi,
            LocalData(data.train_images, data.train_labels, data.num_classes), cfg, state,
            seeded_generator(cfg.seed, server_round, pid),
            public_images=public_images, public_labels=public_labels,
            public_features=public_features, server_round=server_round)
        store.save(server_round, result.state)
        weight = result.num_examples
        if cfg.aggregation_weight == "private+hn":
            weight += result.num_hard_negatives
        out = pack_arrays(result.backbone, result.phi)
        if cfg.strategy == "fedface":  # FedFace's privacy cost: the proxies leave the client
            out[PROXIES_KEY] = Array(result.state.w.detach().float().contiguous().numpy())
        return TrainOutcome(
            arrays=out,
            counts={"num-examples": int(weight),
                    "num-hard-negatives": int(result.num_hard_negatives),
                    "num-steps": int(result.num_steps)},
            log={"private": result.num_examples,
                 "loss": result.losses.get("total", float("nan"))})

    def evaluate(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                 experiment_id: str | None, models: list[str]) -> dict[str, float]:
        """The personalised protocol (fedfr-spec.md) on this client; scalar metrics only."""
        pid = node.partition_id
        ws = node_workspace(cfg, node)
        data = ws.client(pid)
        public_impostors = ws.public()[0] if cfg.personal_impostors == "public" else None
        backbone, phi = unpack_arrays(arrays)
        state = None
        if experiment_id is not None and server_round > 0:
            store = ClientStateStore(node.state_root, experiment_id, pid)
            state = store.load_before(server_round + 1)
        out: dict[str, float] = {}
        evaluated = list(personal_models(cfg, backbone, state,
                                         [n for n in models if n not in PERSONALIZERS]))
        for method in [n for n in models if n in PERSONALIZERS]:
            public_images = public_labels = None
            if cfg.uses_public_data and phi is not None:
                public_images, public_labels = ws.public()
            model, info = personalize(
                method, model_factory(cfg), backbone, phi,
                LocalData(data.train_images, data.train_labels, data.num_classes), cfg, state,
                seeded_generator(cfg.seed, server_round, pid, 17), public_images, public_labels)
            log.info("client %d: %s personalisation, %d steps, %d hard negatives", pid, method,
                     info["steps"], info["hard_negatives"])
            evaluated.append((method, model, None))
        for name, model, head in evaluated:
            if public_impostors is not None:
                other_feats = embed_eval(cfg, model, public_impostors, head)
            else:  # Theta_g is the same for every client: others' features are shared in-process
                other_feats = embed_other_clients(cfg, ws, model, pid, head,
                                                  share=name == "global")
            res = personalized_metrics(embed_eval(cfg, model, data.test_images, head),
                                       data.test_labels,
                                       embed_eval(cfg, model, data.train_images, head),
                                       data.train_labels, other_feats)
            out.update({f"{name}.{k}": v for k, v in res.items()})
        return out

