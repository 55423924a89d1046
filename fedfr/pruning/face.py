"""Pruning tasks built from fedfr's own data: the face model (CosFace on the public set D_g,
generic verification metrics on held-out identities) and image-folder classification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedfr.checkpoint import safe_load
from fedfr.errors import DataFormatError
from fedfr.face.data.folder import ImageFolderSource
from fedfr.face.data.transforms import to_float
from fedfr.face.evaluation.features import embed
from fedfr.face.evaluation.protocols import generic_protocol
from fedfr.face.evaluation.run import headline_levels
from fedfr.face.training.batches import augment, batch_indices, seeded_generator
from fedfr.hard_negatives import mean_class_features
from fedfr.losses import cosface_loss
from fedfr.pruning.task import ClassificationTask


def load_face_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(backbone state_dict, Phi or None) from a federation's ``final_model.pt``
    (``backbone.*`` [+ ``phi``] keys), a pre-trained checkpoint ({"backbone", "phi", "meta"})
    or a plain backbone state_dict."""
    ckpt = safe_load(Path(path))
    if not isinstance(ckpt, dict):
        raise DataFormatError(f"{path}: expected a dict of tensors (a fedfr checkpoint)")
    if "backbone" in ckpt and isinstance(ckpt["backbone"], dict):
        return ckpt["backbone"], ckpt.get("phi")
    if any(k.startswith("backbone.") for k in ckpt):
        sd = {k[len("backbone."):]: v for k, v in ckpt.items() if k.startswith("backbone.")}
        return sd, ckpt.get("phi")
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None
    raise DataFormatError(f"{path}: no backbone state_dict found (keys {sorted(ckpt)[:5]}...)")


class FaceTask:
    """CosFace fine-tuning on public images + generic protocol on held-out identities.

    public: uint8 (N,3,S,S) and labels (N,) in 0..K-1; generic: the same for evaluation.
    ``phi`` (K, d) initialises the class matrix (None: class means under ``init_model``).
    The headline ``metric`` is the smallest TAR@FAR the data size supports (chosen on the
    original model), so that before/after compare the same key.
    """

    def __init__(self, public: tuple[torch.Tensor, torch.Tensor],
                 generic: tuple[torch.Tensor, torch.Tensor], init_model: nn.Module,
                 phi: torch.Tensor | None = None, batch_size: int = 64, s: float = 30.0,
                 m: float = 0.4, seed: int = 0, eval_batch_size: int = 256) -> None:
        self.images, self.labels = public[0], public[1].long()
        self.gen_images, self.gen_labels = generic[0], generic[1].long()
        self.k = int(self.labels.max()) + 1
        self.batch_size, self.s, self.m, self.seed = batch_size, s, m, seed
        self.eval_batch_size = eval_batch_size
        if phi is None or tuple(phi.shape)[0] != self.k:
            feats = embed(init_model, self.images, batch_size=eval_batch_size)
            phi = mean_class_features(feats, self.labels, self.k)
        self.phi = nn.Parameter(phi.detach().clone().float())
        self.example_input = to_float(self.images[:1].clone())
        metrics = self.evaluate_all(init_model)
        keys = headline_levels(metrics, "tar", "num_impostor", count=1)
        self.metric = keys[0] if keys else "rank1"

    def train_batches(self, epoch: int):
        gen = seeded_generator(self.seed, epoch, 13)
        for idx in batch_indices(len(self.images), self.batch_size, gen, drop_last=True):
            yield augment(self.images[idx], gen), self.labels[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return cosface_loss(model(x), self.phi, y, s=self.s, m=self.m)

    def evaluate_all(self, model: nn.Module) -> dict[str, float]:
        feats = embed(model, self.gen_images, batch_size=self.eval_batch_size)
        return {k: float(v) for k, v in generic_protocol(feats, self.gen_labels).items()}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = self.evaluate_all(model)
        out[self.metric] = float(np.nan_to_num(out.get(self.metric, float("nan")), nan=0.0))
        return out

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return [self.phi]


def folder_classification_task(root: Path, size: int, train_per_class: int,
                               batch_size: int = 32, seed: int = 0,
                               max_per_class: int | None = None) -> ClassificationTask:
    """Classification over the identities of an image folder (one sub-folder per class):
    the first ``train_per_class`` images of each class train, the rest validate. Images are
    uint8 -> [-1, 1] floats of (3, size, size); training adds random horizontal flips."""
    src = ImageFolderSource(root)
    labels = np.asarray(src.labels)
    tr, va = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if max_per_class is not None:
            idx = idx[:max_per_class]
        if len(idx) <= train_per_class:
            raise DataFormatError(f"{root}: class {src.identity_names[c]!r} has {len(idx)} "
                                  f"images; need more than train-per-class={train_per_class}")
        tr += idx[:train_per_class].tolist()
        va += idx[train_per_class:].tolist()
    x_tr = to_float(src.load_many(tr, size))
    x_va = to_float(src.load_many(va, size))

    def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        f = torch.rand(x.shape[0], generator=gen) < 0.5
        x = x.clone()
        x[f] = x[f].flip(-1)
        return x

    return ClassificationTask(x_tr, torch.as_tensor(labels[tr]), x_va,
                              torch.as_tensor(labels[va]), batch_size=batch_size, seed=seed,
                              augment=flip)
