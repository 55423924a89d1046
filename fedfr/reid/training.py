"""The re-ID training engine: BoT's recipe (the thesis's head) for central, local-only and (with
``extra_loss``) federated local training, plus feature extraction.

One step: a P x K batch -> BoT augmentation -> model -> (f, f_bn); loss =
ce_weight * CE_LS(classifier(f_bn), y) + triplet_weight * triplet(f, y) [+ extra_loss(...)],
with the soft-margin batch-hard triplet by default (the thesis; ``triplet="hinge"`` is
torchreid's / BoT's margin 0.3). Optimiser: Adam (lr 3.5e-4, weight decay 5e-4) with BoT's linear
warm-up from 0.1 x lr over 10 epochs and x0.1 steps at epochs 40 and 70, or SGD (momentum 0.9).

Uses: central pre-training on a public set and the upper bound on the union of the clients
(``train_reid`` on one or several splits), local-only training (``train_reid`` on one client's
split, Table 7.5's "local supervised"), and a federated client's local step (``train_epochs``
with the received model, the client's own classifier, ``start_epoch`` = epochs done so far and
the method's regularisers in ``extra_loss``). See docs/reid-training.md.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from fedfr.errors import ConfigError
from fedfr.metric_losses import DISTANCES, batch_hard_triplet_loss, label_smoothing_ce
from fedfr.reid.data.dataset import ReidImageDataset
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.sampler import EPOCH_RULES, PKSampler
from fedfr.reid.data.transforms import ReidTransformConfig, ResizeToTensor, train_batch
from fedfr.reid.models import IdentityClassifier, ReidNet, build_reid_model

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")
TRIPLETS = ("soft", "hinge", "none")

#: extra_loss(model, images (B,3,H,W), f (B,d), f_bn (B,d), labels (B,)) -> scalar tensor
ExtraLoss = Callable[[ReidNet, Tensor, Tensor, Tensor, Tensor], Tensor]



def split_transform_keys(cls: type, values: dict[str, Any],
                         what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain keys (``-`` or ``_``) split into ``cls``'s own fields and ReidTransformConfig's
    (list values become tuples); an unknown key raises ConfigError naming it and ``what``."""
    own = {f.name for f in fields(cls)} - {"transform"}
    tr = {f.name for f in fields(ReidTransformConfig)}
    mine: dict[str, Any] = {}
    trans: dict[str, Any] = {}
    unknown = []
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in own:
            mine[name] = value
        elif name in tr:
            trans[name] = tuple(value) if isinstance(value, list) else value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {sorted(unknown)}; accepted: "
                          f"{sorted(own | tr)}")
    return mine, trans


@dataclass
class ReidTrainConfig:
    """Training switches; the defaults are the thesis's / BoT's values (see the docs).

    p x k: identities x images per batch (BoT 16 x 4 = 64); sampler_epoch: the PKSampler epoch
    rule; triplet: "soft" (thesis), "hinge" (margin ``margin``) or "none"; distance: the triplet's
    metric; warmup: linear from ``warmup_factor`` x lr to lr over ``warmup_epochs`` epochs;
    milestones / gamma: step decay (epochs, 0-based); classifier_lr_factor: the classifier's lr
    multiple (1 for BoT; SGD recipes such as FedReID's use 10); num_workers: DataLoader workers
    (0: load in this process); cache_images: keep decoded, resized uint8 images in memory;
    channels_last: NHWC convolutions; amp: mixed precision for the net's forward (float16 with a
    gradient scaler on CUDA, bfloat16 on the CPU), losses in float32.
    """

    transform: ReidTransformConfig = field(default_factory=ReidTransformConfig)
    p: int = 16
    k: int = 4
    sampler_epoch: str = "images"
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    classifier_lr_factor: float = 1.0
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    label_smoothing: float = 0.1
    triplet: str = "soft"
    margin: float = 0.3
    distance: str = "euclidean"
    ce_weight: float = 1.0
    triplet_weight: float = 1.0
    num_workers: int = 0
    cache_images: bool = True
    channels_last: bool = False
    amp: bool = False

    def __post_init__(self) -> None:
        checks = (("optimizer", OPTIMIZERS), ("triplet", TRIPLETS), ("distance", DISTANCES),
                  ("sampler_epoch", EPOCH_RULES))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"reid training {name}: expected one of {allowed}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("lr", "warmup_factor", "gamma", "classifier_lr_factor"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"reid training {name}: expected a positive number, "
                                  f"got {getattr(self, name)!r}")
        for name in ("weight_decay", "margin", "ce_weight", "triplet_weight", "warmup_epochs",
                     "num_workers"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"reid training {name}: expected a value >= 0, "
                                  f"got {getattr(self, name)!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"reid training label_smoothing: expected [0, 1), "
                              f"got {self.label_smoothing!r}")
        self.milestones = tuple(sorted(int(m) for m in self.milestones))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ReidTrainConfig:
        """A config from plain keys (``-`` or ``_``): this class's fields, plus the transform's
        (height, width, flip, pad, erasing, erase-area, erase-ratio, erase-value, normalize).
        Unknown keys raise ConfigError naming them."""
        mine, trans = split_transform_keys(cls, values, "reid training")
        if "milestones" in mine:
            mine["milestones"] = tuple(mine["milestones"])
        return cls(transform=ReidTransformConfig(**trans), **mine)


    def lr_factor(self, epoch: int) -> float:
        """The lr multiple at 0-based ``epoch``: BoT's warm-up times the step decay."""
        factor = 1.0
        if epoch < self.warmup_epochs:
            alpha = epoch / self.warmup_epochs
            factor = self.warmup_factor * (1.0 - alpha) + alpha
        return factor * self.gamma ** bisect.bisect_right(self.milestones, epoch)


def build_optimizer(model: ReidNet, classifier: IdentityClassifier,
                    cfg: ReidTrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD over the trainable parameters of the net (group 0) and the classifier
    (group 1, lr x classifier_lr_factor). The frozen BNNeck bias is not included."""
    groups = [
        {"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0},
        {"params": [p for p in classifier.parameters() if p.requires_grad],
         "lr_scale": cfg.classifier_lr_factor},
    ]
    for g in groups:
        g["lr"] = cfg.lr * g["lr_scale"]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def set_epoch_lr(opt: torch.optim.Optimizer, cfg: ReidTrainConfig, epoch: int) -> float:
    """Set every param group's lr to ``cfg.lr * cfg.lr_factor(epoch)`` times the group's
    ``lr_scale`` (``build_optimizer``'s classifier groups); returns the base lr."""
    lr = cfg.lr * cfg.lr_factor(epoch)
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    return lr


def _labels_tensor(labels: Sequence[int] | Tensor, n: int, num_classes: int) -> Tensor:
    y = torch.as_tensor(labels)
    if y.dim() != 1 or len(y) != n or y.is_floating_point():
        raise ValueError(f"labels: expected {n} integer labels (one per record), "
                         f"got shape {tuple(y.shape)} dtype {y.dtype}")
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels: expected values in [0, {num_classes - 1}] (the classifier "
                         f"has {num_classes} classes), got {int(y.min())}..{int(y.max())}")
    return y


def training_dataset(records: Sequence[ReidImage], cfg: ReidTrainConfig) -> ReidImageDataset:
    """The engine's dataset: decoded, resized uint8 (3, H, W) images, cached if configured.
    Build it once and pass it to every ``train_epochs`` call to decode each file only once."""
    return ReidImageDataset(records, ResizeToTensor(cfg.transform.height, cfg.transform.width),
                            cache=cfg.cache_images)


def _batches(ds: ReidImageDataset, batches: list[list[int]], workers: int):
    if workers == 0:
        for b in batches:
            yield b, torch.stack([ds[i][0] for i in b])
        return
    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers)
    for b, (x, _, _) in zip(batches, loader, strict=True):
        yield b, x


def train_epochs(model: ReidNet, classifier: IdentityClassifier,
                 records: Sequence[ReidImage], labels: Sequence[int] | Tensor,
                 cfg: ReidTrainConfig, *, epochs: int, device: str | torch.device = "cpu",
                 extra_loss: ExtraLoss | None = None, generator: torch.Generator | None = None,
                 start_epoch: int = 0, optimizer: torch.optim.Optimizer | None = None,
                 dataset: ReidImageDataset | None = None) -> dict[str, Any]:
    """Train ``model`` and ``classifier`` in place for ``epochs`` epochs of P x K batches.

    records: the training images; labels: (N,) class indices 0..C-1 for ``classifier`` (C
    classes), one per record. The lr of epoch e (e = start_epoch .. start_epoch + epochs - 1)
    follows ``cfg.lr_factor(e)``. generator: drives the sampler's seed and the augmentation
    (default: seeded with 0). optimizer: reuse one (default: a fresh ``build_optimizer``).
    dataset: a ``training_dataset(records, cfg)`` to reuse (its decoded-image cache).

    Returns floats: loss / ce / triplet / extra / accuracy (means over the last epoch's images),
    lr (last epoch's), steps, images, seconds, images_per_s, and ``history`` (one dict per epoch).
    """
    if type(epochs) is not int or epochs < 0:
        raise ConfigError(f"epochs: expected an int >= 0, got {epochs!r}")
    y_all = _labels_tensor(labels, len(records), classifier.num_classes)
    if classifier.dim != model.feature_dim:
        raise ValueError(f"classifier dim {classifier.dim} != model feature_dim "
                         f"{model.feature_dim}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    ds = dataset if dataset is not None else training_dataset(records, cfg)
    if len(ds) != len(records):
        raise ValueError(f"dataset has {len(ds)} items but there are {len(records)} records")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    sampler = PKSampler(y_all, cfg.p, cfg.k, seed=seed, epoch=cfg.sampler_epoch)
    model.to(device)
    classifier.to(device)
    if cfg.channels_last and not model.channels_last:
        model.use_channels_last(True)
    opt = optimizer if optimizer is not None else build_optimizer(model, classifier, cfg)
    margin = None if cfg.triplet == "soft" else cfg.margin
    dev_type = torch.device(device).type
    amp_dtype = torch.float16 if dev_type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(dev_type, enabled=cfg.amp and dev_type == "cuda")
    model.train()
    classifier.train()
    history: list[dict[str, float]] = []
    steps = images = 0
    t_start = time.perf_counter()
    for e in range(start_epoch, start_epoch + epochs):
        lr = set_epoch_lr(opt, cfg, e)
        sampler.set_epoch(e)
        sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss ce tri extra correct
        seen = 0
        t0 = time.perf_counter()
        for idx, x_u8 in _batches(ds, sampler.batches(), cfg.num_workers):
            y = y_all[idx].to(device)
            x = train_batch(x_u8, cfg.transform, generator).to(device)
            with torch.autocast(dev_type, dtype=amp_dtype, enabled=cfg.amp):
                f, f_bn = model(x)
                logits = classifier(f_bn)
            f, f_bn, logits = f.float(), f_bn.float(), logits.float()
            ce = label_smoothing_ce(logits, y, cfg.label_smoothing)
            loss = cfg.ce_weight * ce
            tri = torch.zeros((), device=f.device)
            if cfg.triplet != "none":
                tri = batch_hard_triplet_loss(f, y, margin=margin, metric=cfg.distance)
                loss = loss + cfg.triplet_weight * tri
            extra = torch.zeros((), device=f.device)
            if extra_loss is not None:
                extra = extra_loss(model, x, f, f_bn, y)
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            b = len(idx)
            with torch.no_grad():  # summed on the device: no host sync per step
                sums += torch.stack([loss.detach() * b, ce.detach() * b, tri.detach() * b,
                                     extra.detach() * b,
                                     (logits.argmax(1) == y).sum()]).to(sums.dtype)
            seen += b
            steps += 1
        images += seen
        means = (sums / max(seen, 1)).tolist()
        row = dict(zip(("loss", "ce", "triplet", "extra", "accuracy"), means, strict=True))
        row.update(epoch=e, lr=lr, images=seen, seconds=time.perf_counter() - t0)
        history.append(row)
        log.info("reid epoch %d: loss %.4f (ce %.4f, triplet %.4f), acc %.3f, lr %.2e, %.1f s",
                 e + 1, row["loss"], row["ce"], row["triplet"], row["accuracy"], lr,
                 row["seconds"])
    model.eval()
    classifier.eval()
    seconds = time.perf_counter() - t_start
    last = history[-1] if history else {}
    return {
        "loss": last.get("loss", float("nan")), "ce": last.get("ce", float("nan")),
        "triplet": last.get("triplet", float("nan")), "extra": last.get("extra", float("nan")),
        "accuracy": last.get("accuracy", float("nan")), "lr": last.get("lr", float("nan")),
        "steps": steps, "images": images, "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else float("nan"), "history": history,
    }


def union_train_set(splits: Sequence[ReidSplit]) -> tuple[list[ReidImage], list[int]]:
    """Train records of one or several splits and their class labels 0..C-1: identities are
    (split position, pid) pairs, numbered in order of split then sorted pid (for one split this
    equals ``ReidSplit.train_labels``)."""
    records: list[ReidImage] = []
    keys: list[tuple[int, int]] = []
    for s, split in enumerate(splits):
        records += split.train
        keys += [(s, r.pid) for r in split.train]
    mapping = {key: i for i, key in enumerate(sorted(set(keys)))}
    return records, [mapping[key] for key in keys]


def train_reid(splits: ReidSplit | Sequence[ReidSplit], cfg: ReidTrainConfig, *, epochs: int,
               model: ReidNet | None = None, model_name: str = "small_reid",
               model_kwargs: dict[str, Any] | None = None, seed: int = 0,
               device: str | torch.device = "cpu"
               ) -> tuple[ReidNet, IdentityClassifier, dict[str, Any]]:
    """Central or local-only training on the train part of ``splits`` (their union).

    model: start from this net (e.g. a pre-trained one, for local-only fine-tuning); default a
    fresh ``build_reid_model(model_name, **model_kwargs)``. A new classifier is made for the
    union's identities. Returns (model, classifier, ``train_epochs``'s stats).
    """
    splits = [splits] if isinstance(splits, ReidSplit) else list(splits)
    if not splits:
        raise ConfigError("train_reid: no splits given")
    records, labels = union_train_set(splits)
    if not records:
        raise ConfigError(f"train_reid: no training images in {[s.name for s in splits]}")
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
        torch.manual_seed(seed)
        net = model if model is not None else build_reid_model(model_name,
                                                               **(model_kwargs or {}))
        classifier = IdentityClassifier(net.feature_dim, max(labels) + 1)
    stats = train_epochs(net, classifier, records, labels, cfg, epochs=epochs, device=device,
                         generator=torch.Generator().manual_seed(seed))
    return net, classifier, stats


@torch.no_grad()
def extract_features(model: ReidNet, records: Sequence[ReidImage],
                     transform: Callable[[Any], Tensor], batch_size: int = 128, *,
                     device: str | torch.device = "cpu", normalize: bool = False,
                     feature: str = "after", flip: bool = False, num_workers: int = 0
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Test features of ``records``, in order: (features (N, D) float32 on the CPU, pids (N,),
    camids (N,)). transform: PIL -> float (3, H, W), e.g. ``build_transform(cfg)``; feature:
    "after" (f_bn, the default) or "before" (f); flip: add the feature of the mirrored image
    (FedReID's test-time flip; off by default, as in the thesis and BoT); normalize:
    L2-normalise the (summed) features."""
    ds = ReidImageDataset(records, transform)
    model.to(device)
    feats: list[Tensor] = []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for x, _, _ in loader:
        x = x.to(device)
        out = model.embed(x, feature=feature).float()
        if flip:
            out = out + model.embed(x.flip(-1), feature=feature).float()
        if normalize:
            out = torch.nn.functional.normalize(out, dim=1)
        feats.append(out.cpu())
    out = torch.cat(feats) if feats else torch.empty(0, model.feature_dim)
    return out, ds.pids, ds.camids
