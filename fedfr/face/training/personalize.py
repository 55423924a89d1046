"""Two-stage personalisation after federated training (Yu et al. 2020; dissertation Table 7.2).

Stage 1 is an ordinary federation (the paper: hard negatives + contrastive, no DFC). Stage 2 runs
on each client alone, from the final global backbone Theta_g:

- ``finetune``: CosFace (eq. 7.3) over [W_l ; Phi_g] on the client's private training images
  plus the public hard negatives D_HN sampled under Theta_g (t_HN; all of D_g with
  ``hard-negatives = false``; private data only when the run has no public data);
- ``kd``: the same plus  kd_weight * T^2 * KL(softmax(z_g / T) || softmax(z / T)),  where
  z = s * cos(Theta(x), [W ; Phi]) are the student's logits (no margin) and z_g the logits of
  the frozen global model Theta_g with the initial class matrix (the teacher).

W_l starts from the client's stored proxies (its personal state) or, if it never trained, from
the mean features of its identities. Nothing here leaves the client: the personalised model
serves the personalised evaluation on the node.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.face.evaluation.features import embed
from fedfr.face.training.batches import augment, batch_indices
from fedfr.face.training.local import LocalData, PersonalState
from fedfr.hard_negatives import mean_class_features, select_hard_negatives
from fedfr.losses import cosface_loss, cosine_logits

METHODS = ("finetune", "kd")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch (B,K) -> ()."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"logits: expected two (B, K) tensors of one shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * t * t


def personalize(method: str, model_fn: Callable[[], nn.Module],
                global_backbone: dict[str, Tensor], phi: Tensor | None, data: LocalData, cfg,
                state: PersonalState | None, generator: torch.Generator,
                public_images: Tensor | None = None,
                public_labels: Tensor | None = None) -> tuple[nn.Module, dict[str, float]]:
    """Stage 2 of Yu et al. on one client; returns (personalised backbone in eval mode, info).

    data: the client's private training set; phi (K_g,d) and the public tensors are optional
    (without them only private data is used). info: steps, hard negatives, mean losses.
    """
    if method not in METHODS:
        raise ValueError(f"personalisation method {method!r}: expected one of {METHODS}")
    model = model_fn()
    model.load_state_dict(global_backbone)
    teacher = model_fn()
    teacher.load_state_dict(global_backbone)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    k_l = data.num_classes
    local_feats = embed(teacher, data.images, batch_size=cfg.eval_batch_size)
    w0 = state.w if state is not None else mean_class_features(local_feats, data.labels, k_l)
    images, labels, proxies0 = data.images, data.labels.long(), w0.float()
    n_hn = 0
    if phi is not None and public_images is not None and public_labels is not None:
        if cfg.hard_negatives:
            pub_feats = embed(teacher, public_images, batch_size=cfg.eval_batch_size)
            hn = select_hard_negatives(pub_feats, local_feats, cfg.hn_threshold)
        else:
            hn = torch.arange(len(public_images))
        n_hn = len(hn)
        images = torch.cat([images, public_images[hn]])
        labels = torch.cat([labels, k_l + public_labels[hn].long()])
        proxies0 = torch.cat([proxies0, phi.float()])
    weight = nn.Parameter(proxies0.clone())
    opt = torch.optim.SGD(list(model.parameters()) + [weight], lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    model.train()
    sums = {"cos": 0.0, "kd": 0.0}
    steps = seen = 0
    for _ in range(cfg.personalize_epochs):
        for idx in batch_indices(len(images), cfg.batch_size, generator):
            x = augment(images[idx], generator)
            f = model(x)
            loss = cosface_loss(f, weight, labels[idx], s=cfg.cosface_s, m=cfg.cosface_m)
            sums["cos"] += loss.item() * len(idx)
            if method == "kd":
                with torch.no_grad():
                    z_t = cfg.cosface_s * cosine_logits(teacher(x), proxies0)
                l_kd = kd_loss(cfg.cosface_s * cosine_logits(f, weight), z_t, cfg.kd_temperature)
                loss = loss + cfg.kd_weight * l_kd
                sums["kd"] += l_kd.item() * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            seen += len(idx)
    model.eval()
    info = {"steps": float(steps), "hard_negatives": float(n_hn),
            **{f"loss_{k}": v / max(seen, 1) for k, v in sums.items()}}
    return model, info
