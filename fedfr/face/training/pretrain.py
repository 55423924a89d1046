"""Central CosFace training: pre-training of Theta_g^0 / Phi_g^0 on D_g, and the upper bound."""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from fedfr.checkpoint import digest_of, load_pretrained, save_pretrained
from fedfr.config import resolve_path
from fedfr.errors import ConfigError, first_detail
from fedfr.face.evaluation.features import embed
from fedfr.face.models import model_from_config
from fedfr.face.training.batches import augment, batch_indices, seeded_generator
from fedfr.hard_negatives import mean_class_features
from fedfr.losses import cosface_loss

log = logging.getLogger(__name__)


def train_cosface(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  *, epochs: int, lr: float, batch_size: int, momentum: float = 0.9,
                  weight_decay: float = 5e-4, s: float = 30.0, m: float = 0.4, seed: int = 0,
                  proxies: torch.Tensor | None = None, progress: bool = True,
                  cosine_schedule: bool = True) -> torch.Tensor:
    """Train ``model`` and a class matrix with CosFace (eq. 7.1) on one labelled set.

    images: uint8 (N,3,S,S); labels: (N,) in 0..num_classes-1. ``proxies`` (num_classes, d)
    initialises the class matrix (default: mean features of each class under the initial model).
    With ``cosine_schedule`` the learning rate decays over all steps (our choice for short CPU
    pre-training; the paper pre-trains elsewhere), else it is constant.
    Returns the trained class matrix (num_classes, d).
    """
    labels = labels.long()
    if proxies is None:
        feats = embed(model, images, batch_size=256)
        proxies = mean_class_features(feats, labels, num_classes)
    weight = nn.Parameter(proxies.clone().float())
    params = list(model.parameters()) + [weight]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(images) // batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
             if cosine_schedule else None)
    gen = seeded_generator(seed, 7)
    model.train()
    for epoch in range(epochs):
        t0, total, count = time.perf_counter(), 0.0, 0
        for idx in batch_indices(len(images), batch_size, gen, drop_last=True):
            loss = cosface_loss(model(augment(images[idx], gen)), weight, labels[idx], s=s, m=m)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        if progress:
            log.info("central CosFace epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, epochs,
                     total / max(count, 1), time.perf_counter() - t0)
    model.eval()
    return weight.detach().clone()


def pretrained_checkpoint_path(cfg, split_digest: str):
    """Where Theta_g^0 / Phi_g^0 live: ``pretrained-path`` or the cache, keyed by digest."""
    if cfg.pretrained_path:
        return resolve_path(cfg.pretrained_path)
    key = digest_of({
        "split": split_digest, "model": cfg.model, "embedding-size": cfg.embedding_size,
        "image-size": cfg.image_size, "epochs": cfg.pretrain_epochs, "lr": cfg.pretrain_lr,
        "batch-size": cfg.pretrain_batch_size, "s": cfg.cosface_s, "m": cfg.cosface_m,
        "momentum": cfg.momentum, "weight-decay": cfg.weight_decay, "seed": cfg.seed,
    })
    return cfg.cache_path / "pretrained" / f"{cfg.model}-{key}.pt"


def load_or_pretrain(cfg, ws) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict]:
    """Theta_g^0 (state_dict) and Phi_g^0 (K_g, d): loaded if the checkpoint exists, else
    pre-trained centrally on D_g with CosFace and saved there. Returns (backbone, phi, info)."""
    path = pretrained_checkpoint_path(cfg, ws.split.digest())
    k_g = len(ws.split.public_identities)
    if path.exists():
        backbone, phi, meta = load_pretrained(path)
        if tuple(phi.shape) != (k_g, cfg.embedding_size):
            raise ConfigError(f"{path}: Phi has shape {tuple(phi.shape)}, but this split has "
                              f"K_g={k_g} public identities and embedding-size "
                              f"{cfg.embedding_size}")
        try:
            model_from_config(cfg).load_state_dict(backbone)
        except RuntimeError as e:
            raise ConfigError(f"{path}: backbone does not fit model '{cfg.model}' "
                              f"(embedding-size {cfg.embedding_size}, image-size "
                              f"{cfg.image_size}): {first_detail(e)}") from e
        log.info("loaded pre-trained model from %s", path)
        return backbone, phi, {"path": str(path), "loaded": True, **meta}
    log.info("pre-training %s on D_g (%d identities) for %d epochs -> %s", cfg.model, k_g,
             cfg.pretrain_epochs, path)
    torch.manual_seed(cfg.seed)
    model = model_from_config(cfg)
    images, labels = ws.public()
    t0 = time.perf_counter()
    phi = train_cosface(model, images, labels, k_g, epochs=cfg.pretrain_epochs,
                        lr=cfg.pretrain_lr, batch_size=cfg.pretrain_batch_size,
                        momentum=cfg.momentum, weight_decay=cfg.weight_decay, s=cfg.cosface_s,
                        m=cfg.cosface_m, seed=cfg.seed)
    meta = {"split-digest": ws.split.digest(), "model": cfg.model,
            "epochs": cfg.pretrain_epochs, "seconds": time.perf_counter() - t0}
    backbone = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_pretrained(path, backbone, phi, meta)
    return backbone, phi, {"path": str(path), "loaded": False, **meta}
