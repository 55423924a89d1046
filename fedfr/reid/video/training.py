"""Video re-ID training, test features and evaluation (thesis Ch. 2; seed-reid.md 0.2-0.5, A.3,
B.3, C.4), built from the image re-ID engine's pieces.

One step: a P x K batch of tracklets (``video_pk_sampler``: P identities x K tracklets, STE-NVAN's
rules) -> one RRS training clip of T frames per tracklet (``VideoClipDataset``: a random frame
per chunk, synchronous flip) -> [optional synchronous pad-crop, per-frame random erasing] ->
ImageNet normalisation -> model -> (f, f_bn); loss = ce_weight * CE_LS(classifier(f_bn), y) +
triplet_weight * triplet(f, y) [+ extra_loss(f, f_bn, y)], the soft-margin batch-hard triplet on
the pre-BN feature (thesis). Optimiser and lr schedule: ``fedfr.reid.training``'s (Adam; linear
warm-up; x gamma at the milestones).

Defaults are the thesis's NVAN / STE-NVAN recipe (A.3 / B.3 and the STE-NVAN code): Adam, lr
1e-4, weight decay 5e-5, x0.1 every 50 epochs (milestones 50, 100, 150 of 200), no warm-up, P x K
= 8 x 4, one epoch = every identity once, K tracklets drawn with replacement, flip only (no
pad-crop, no random erasing), no label smoothing, CE : triplet = 1 : 1, test feature f_bn of the
RRS test clip, Euclidean distance. Two deliberate departures, both options: ``clip_len`` defaults
to 4 (the thesis trains with T = 8; Table 2.2 has T = 4 and Ch. 8's tracker runs 4-frame clips)
and ``backbone`` to the CPU trunk ``small_reid`` (the thesis: ResNet-50). CF-AAN's recipe (C.4):
``clip_len=6, warmup_epochs=10, warmup_factor=0.01, milestones=(50, 100, 150, 200), erasing=0.5,
test_mode="all", test_normalize=True``. See docs/video-reid.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from fedfr.checkpoint import atomic_save, safe_load
from fedfr.errors import ConfigError, DataFormatError
from fedfr.metric_losses import batch_hard_triplet_loss, label_smoothing_ce
from fedfr.reid.data.dataset import load_image
from fedfr.reid.data.records import Tracklet, VideoSplit
from fedfr.reid.data.rrs import RRS_RULES, VideoClipDataset, synchronous_flip
from fedfr.reid.data.sampler import REPLACE_RULES, video_pk_sampler
from fedfr.reid.data.transforms import (
    ReidTransformConfig,
    normalize,
    pil_to_uint8,
    random_erasing,
    random_pad_crop,
)
from fedfr.reid.evaluation.mars import PROTOCOLS as MARS_PROTOCOLS
from fedfr.reid.evaluation.mars import evaluate_mars, split_labels
from fedfr.reid.evaluation.rank import features_to_rank
from fedfr.reid.models import IdentityClassifier
from fedfr.reid.models.net import TEST_FEATURES
from fedfr.reid.models.video import build_video_model, default_input_size
from fedfr.reid.models.video.net import VideoReidNet
from fedfr.reid.training import (
    ReidTrainConfig,
    build_optimizer,
    set_epoch_lr,
    split_transform_keys,
)

_log = logging.getLogger(__name__)

#: extra_loss(f (B, d), f_bn (B, d), labels (B,)) -> scalar tensor (e.g. FedFR's terms)
VideoExtraLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
#: extract_tracklet_features modes -> VideoClipDataset modes
FEATURE_MODES = {"rrs": "test", "all": "all_sampled", "all_continuous": "all_continuous"}
#: evaluate_video protocols: the MARS ones (need a MARS-layout split) and the plain one
QUERY_GALLERY = "query-gallery"
PROTOCOL_NAMES = (*MARS_PROTOCOLS, QUERY_GALLERY)


@dataclass
class VideoTrainConfig(ReidTrainConfig):
    """Video re-ID switches: ``ReidTrainConfig``'s fields (thesis video defaults) plus the model,
    clip and test settings.

    model / backbone: ``build_video_model``'s name and trunk; clip_len: T frames per RRS clip;
    rrs_rule: the chunking rule (``rrs.RRS_RULES``); sampler_replace: the P x K draw rule;
    epochs: for ``train_video``; seed: sampler, RRS draws, augmentation and initial weights;
    test_mode: "rrs" (the first frame of each chunk, one clip; NVAN / STE-NVAN) or "all" (every
    all-sampled clip, features averaged; CF-AAN) or "all_continuous"; test_feature: "after"
    (f_bn) or "before" (f); test_normalize: L2-normalise test features (CF-AAN); metric:
    "euclidean" or "cosine"; protocol: ``evaluate_video``'s default. The transform's height /
    width default to the backbone's input size (128 x 64 for small_reid, 256 x 128 for
    ResNet-50); its ``flip`` is the synchronous clip flip, ``pad`` a synchronous pad-crop,
    ``erasing`` per-frame random erasing. ``height`` / ``width`` read the transform's.
    """

    transform: ReidTransformConfig | None = None  # type: ignore[assignment]
    p: int = 8
    k: int = 4
    sampler_epoch: str = "identities"
    lr: float = 1e-4
    weight_decay: float = 5e-5
    warmup_epochs: int = 0
    warmup_factor: float = 0.01
    milestones: tuple[int, ...] = (50, 100, 150)
    label_smoothing: float = 0.0
    cache_images: bool = True
    model: str = "ste_nvan"
    backbone: str = "small_reid"
    clip_len: int = 4
    rrs_rule: str = "stenvan"
    sampler_replace: str = "always"
    epochs: int = 200
    seed: int = 0
    test_mode: str = "rrs"
    test_feature: str = "after"
    test_normalize: bool = False
    metric: str = "euclidean"
    protocol: str = "mars-official"
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transform is None:
            h, w = default_input_size(self.backbone)
            self.transform = ReidTransformConfig(height=h, width=w, pad=0, erasing=0.0)
        super().__post_init__()
        checks = (("rrs_rule", RRS_RULES), ("sampler_replace", REPLACE_RULES),
                  ("test_mode", tuple(FEATURE_MODES)), ("test_feature", TEST_FEATURES),
                  ("metric", ("euclidean", "cosine")), ("protocol", PROTOCOL_NAMES))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"video re-ID training {name}: expected one of {allowed}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("clip_len", "epochs"):
            v = getattr(self, name)
            if type(v) is not int or v < (1 if name == "clip_len" else 0):
                raise ConfigError(f"video re-ID training {name}: expected a positive int, "
                                  f"got {v!r}")
        if self.sampler_replace == "always" and self.sampler_epoch != "identities":
            raise ConfigError("video re-ID training: sampler_replace='always' needs "
                              "sampler_epoch='identities'")
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"video re-ID training model_kwargs: expected a mapping, got "
                              f"{type(self.model_kwargs).__name__}")

    @property
    def height(self) -> int:
        return self.transform.height

    @property
    def width(self) -> int:
        return self.transform.width

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> VideoTrainConfig:
        """A config from plain keys (``-`` or ``_``): this class's fields plus the transform's
        (height, width, flip, pad, erasing, ...); height / width default to the backbone's
        input size, pad and erasing to 0. Unknown keys raise ConfigError naming them."""
        mine, trans = split_transform_keys(cls, dict(values), "video re-ID training")
        if "milestones" in mine:
            mine["milestones"] = tuple(mine["milestones"])
        h, w = default_input_size(mine.get("backbone", cls.backbone))
        trans = {"height": h, "width": w, "pad": 0, "erasing": 0.0, **trans}
        return cls(transform=ReidTransformConfig(**trans), **mine)


# --- data -----------------------------------------------------------------------------------
class CachedClipDataset(VideoClipDataset):
    """``VideoClipDataset`` whose decoded, resized uint8 frames are kept in memory (``cache``:
    path -> (3, H, W); pass one dict to several datasets to share it). Same items."""

    def __init__(self, *args: Any, cache: dict | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.cache = {} if cache is None else cache

    def frame(self, path: Any) -> Tensor:
        x = self.cache.get(path)
        if x is None:
            x = pil_to_uint8(load_image(path), self.height, self.width)
            self.cache[path] = x
        return x

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        t = self.tracklets[index]
        idx, flip = self.indices(index)
        frames = torch.stack([self.frame(t.paths[j]) for j in idx.reshape(-1).tolist()])
        frames = synchronous_flip(frames, flip).reshape(*idx.shape, *frames.shape[1:])
        if self.transform is not None:
            frames = self.transform(frames)
        return frames, t.pid, t.camid


def clip_dataset(tracklets: Sequence[Tracklet], cfg: VideoTrainConfig, mode: str, *,
                 seed: int | None = None, cache: dict | None = None) -> VideoClipDataset:
    """The clips ``cfg`` trains or tests on (uint8 items); frames cached if cfg.cache_images."""
    kw = dict(rule=cfg.rrs_rule, height=cfg.height, width=cfg.width, flip=cfg.transform.flip,
              seed=cfg.seed if seed is None else seed)
    if cfg.cache_images:
        return CachedClipDataset(tracklets, cfg.clip_len, mode, cache=cache, **kw)
    return VideoClipDataset(tracklets, cfg.clip_len, mode, **kw)


def train_clips(x_u8: Tensor, cfg: VideoTrainConfig, generator: torch.Generator) -> Tensor:
    """uint8 (B, T, 3, H, W) (already flipped) -> augmented, normalised float clips: the pad-crop
    is one offset per clip (all frames alike), random erasing per frame."""
    b, t, c, h, w = x_u8.shape
    tr = cfg.transform
    if tr.pad:
        x_u8 = random_pad_crop(x_u8.reshape(b, t * c, h, w), tr.pad, generator)
    x = normalize(x_u8.reshape(b * t, c, h, w), tr.normalize)
    x = random_erasing(x, tr.erasing, tr.erase_area, tr.erase_ratio, tr.erase_value, generator)
    return x.reshape(b, t, c, h, w)


def eval_clips(x_u8: Tensor, cfg: VideoTrainConfig) -> Tensor:
    """uint8 (..., 3, H, W) -> normalised floats of the same shape."""
    shape = x_u8.shape
    return normalize(x_u8.reshape(-1, *shape[-3:]), cfg.transform.normalize).reshape(shape)


def tracklet_labels(tracklets: Sequence[Tracklet]) -> tuple[list[int], dict[int, int]]:
    """Class labels 0..C-1 (in order of sorted pid) and the pid -> label map."""
    mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [mapping[t.pid] for t in tracklets], mapping


# --- model ----------------------------------------------------------------------------------
def build_video_net(cfg: VideoTrainConfig) -> VideoReidNet:
    """``build_video_model(cfg.model, backbone=cfg.backbone, clip_len=cfg.clip_len,
    input_size=(cfg.height, cfg.width), **cfg.model_kwargs)``."""
    return build_video_model(cfg.model, backbone=cfg.backbone, clip_len=cfg.clip_len,
                             input_size=(cfg.height, cfg.width), **cfg.model_kwargs)


def build_video_classifier(model: VideoReidNet, num_classes: int) -> IdentityClassifier:
    """The identity classifier on ``model``'s feature (bias-free FC, N(0, 0.001), as image re-ID);
    kept apart from the model (private to a federated client)."""
    return IdentityClassifier(int(model.feature_dim), int(num_classes))


# --- training -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pid:
    """A label in the shape ``video_pk_sampler`` groups by."""

    pid: int


def _clip_batches(ds: VideoClipDataset, batches: list[list[int]], workers: int):
    """(indices, uint8 clips (B, T, 3, H, W)) per batch, loaded here or by ``workers``
    DataLoader processes (each with its own frame cache)."""
    if workers == 0:
        for b in batches:
            yield b, torch.stack([ds[i][0] for i in b])
        return
    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers)
    for b, (x, _, _) in zip(batches, loader, strict=True):
        yield b, x


def video_loss(cfg: VideoTrainConfig, logits: Tensor, f: Tensor, y: Tensor
               ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, ce, triplet): ce_weight * CE_LS(logits (B, C), y) + triplet_weight * batch-hard
    triplet on f (B, d) (soft margin unless cfg.triplet == "hinge"; none if "none")."""
    ce = label_smoothing_ce(logits, y, cfg.label_smoothing)
    loss = cfg.ce_weight * ce
    tri = torch.zeros((), device=f.device)
    if cfg.triplet != "none":
        margin = None if cfg.triplet == "soft" else cfg.margin
        tri = batch_hard_triplet_loss(f, y, margin=margin, metric=cfg.distance)
        loss = loss + cfg.triplet_weight * tri
    return loss, ce, tri


def train_video_epochs(model: VideoReidNet, classifier: IdentityClassifier,
                       tracklets: Sequence[Tracklet], cfg: VideoTrainConfig, *, epochs: int,
                       device: str | torch.device = "cpu", seed: int | None = None,
                       log: Callable[[dict[str, Any]], None] | None = None,
                       extra_loss: VideoExtraLoss | None = None,
                       labels: Sequence[int] | None = None, start_epoch: int = 0,
                       optimizer: torch.optim.Optimizer | None = None,
                       dataset: VideoClipDataset | None = None) -> dict[str, Any]:
    """Train ``model`` and ``classifier`` in place for ``epochs`` epochs of P x K tracklet batches.

    tracklets: the training tracklets; labels: (N,) class indices 0..C-1 (default: by sorted pid,
    ``tracklet_labels``); C must equal ``classifier.num_classes``. seed (default cfg.seed): the
    sampler, RRS draws, flips and augmentation. The lr of epoch e (start_epoch ..) is
    ``cfg.lr * cfg.lr_factor(e)``. log: called with each epoch's row. extra_loss(f, f_bn, y): an
    added scalar (the federated method's terms). optimizer: reuse one (default: a fresh
    ``build_optimizer``). dataset: a ``clip_dataset(tracklets, cfg, "train")`` to reuse its
    frame cache.

    Returns floats: loss / ce / triplet / extra / accuracy (means over the last epoch's clips),
    lr, steps, clips, seconds, clips_per_s, and ``history`` (one dict per epoch).
    """
    if type(epochs) is not int or epochs < 0:
        raise ConfigError(f"epochs: expected an int >= 0, got {epochs!r}")
    if not tracklets:
        raise ConfigError("train_video_epochs: no training tracklets")
    seed = cfg.seed if seed is None else int(seed)
    y_list = tracklet_labels(tracklets)[0] if labels is None else [int(v) for v in labels]
    if len(y_list) != len(tracklets):
        raise ValueError(f"labels: expected {len(tracklets)} (one per tracklet), "
                         f"got {len(y_list)}")
    y_all = torch.as_tensor(y_list, dtype=torch.long)
    if int(y_all.min()) < 0 or int(y_all.max()) >= classifier.num_classes:
        raise ValueError(f"labels: expected values in [0, {classifier.num_classes - 1}] (the "
                         f"classifier's classes), got {int(y_all.min())}..{int(y_all.max())}")
    if classifier.dim != model.feature_dim:
        raise ValueError(f"classifier dim {classifier.dim} != model feature_dim "
                         f"{model.feature_dim}")
    ds = dataset if dataset is not None else clip_dataset(tracklets, cfg, "train", seed=seed)
    if len(ds) != len(tracklets) or ds.mode != "train":
        raise ValueError(f"dataset: expected a train-mode clip dataset of {len(tracklets)} "
                         f"tracklets, got {ds.mode!r} with {len(ds)}")
    sampler = video_pk_sampler([_Pid(int(v)) for v in y_list], cfg.p, cfg.k, seed=seed,
                               epoch=cfg.sampler_epoch, replace=cfg.sampler_replace)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    classifier.to(device)
    opt = optimizer if optimizer is not None else build_optimizer(model, classifier, cfg)
    dev_type = torch.device(device).type
    amp_dtype = torch.float16 if dev_type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(dev_type, enabled=cfg.amp and dev_type == "cuda")
    model.train()
    classifier.train()
    history: list[dict[str, Any]] = []
    steps = clips = 0
    t_start = time.perf_counter()
    for e in range(start_epoch, start_epoch + epochs):
        lr = set_epoch_lr(opt, cfg, e)
        sampler.set_epoch(e)
        ds.set_epoch(e)
        sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss ce tri extra correct
        seen = 0
        t0 = time.perf_counter()
        for idx, x_u8 in _clip_batches(ds, sampler.batches(), cfg.num_workers):
            x = train_clips(x_u8, cfg, generator).to(device)
            y = y_all[idx].to(device)
            with torch.autocast(dev_type, dtype=amp_dtype, enabled=cfg.amp):
                f, f_bn = model(x)
                logits = classifier(f_bn)
            f, f_bn, logits = f.float(), f_bn.float(), logits.float()
            loss, ce, tri = video_loss(cfg, logits, f, y)
            extra = torch.zeros((), device=f.device)
            if extra_loss is not None:
                extra = extra_loss(f, f_bn, y)
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            b = len(idx)
            with torch.no_grad():
                sums += torch.stack([loss.detach() * b, ce.detach() * b, tri.detach() * b,
                                     extra.detach() * b,
                                     (logits.argmax(1) == y).sum()]).to(sums.dtype)
            seen += b
            steps += 1
        clips += seen
        means = (sums / max(seen, 1)).tolist()
        row: dict[str, Any] = dict(zip(("loss", "ce", "triplet", "extra", "accuracy"), means,
                                       strict=True))
        row.update(epoch=e, lr=lr, clips=seen, seconds=time.perf_counter() - t0)
        history.append(row)
        _log.info("video re-ID epoch %d: loss %.4f (ce %.4f, triplet %.4f), acc %.3f, lr %.2e, "
                  "%.1f s", e + 1, row["loss"], row["ce"], row["triplet"], row["accuracy"], lr,
                  row["seconds"])
        if log is not None:
            log(row)
    model.eval()
    classifier.eval()
    seconds = time.perf_counter() - t_start
    last = history[-1] if history else {}
    out = {key: last.get(key, float("nan"))
           for key in ("loss", "ce", "triplet", "extra", "accuracy", "lr")}
    out.update(steps=steps, clips=clips, seconds=seconds,
               clips_per_s=clips / seconds if seconds > 0 else float("nan"), history=history)
    return out


def train_video(data: VideoSplit | Sequence[Tracklet], cfg: VideoTrainConfig, *,
                epochs: int | None = None, model: VideoReidNet | None = None,
                device: str | torch.device = "cpu", seed: int | None = None,
                log: Callable[[dict[str, Any]], None] | None = None
                ) -> tuple[VideoReidNet, IdentityClassifier, dict[str, Any]]:
    """Central training on a split's train tracklets (or a list): a fresh ``build_video_net(cfg)``
    (or ``model``) and classifier, seeded by ``seed`` (default cfg.seed), for ``epochs``
    (default cfg.epochs). Returns (model, classifier, ``train_video_epochs``'s stats)."""
    tracklets = list(data.train if isinstance(data, VideoSplit) else data)
    if not tracklets:
        raise ConfigError("train_video: no training tracklets")
    seed = cfg.seed if seed is None else int(seed)
    labels, mapping = tracklet_labels(tracklets)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
        torch.manual_seed(seed)
        net = model if model is not None else build_video_net(cfg)
        classifier = build_video_classifier(net, len(mapping))
    stats = train_video_epochs(net, classifier, tracklets, cfg,
                               epochs=cfg.epochs if epochs is None else epochs, device=device,
                               seed=seed, log=log, labels=labels)
    return net, classifier, stats


# --- checkpoints ----------------------------------------------------------------------------
VIDEO_MODEL_FORMAT = "fedfr-video-reid/1"


def config_mapping(cfg: VideoTrainConfig) -> dict[str, Any]:
    """``cfg`` as plain keys that ``VideoTrainConfig.from_mapping`` reads back."""
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "transform"}
    out.update(dataclasses.asdict(cfg.transform))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def save_video_model(path: str | Path, model: VideoReidNet, cfg: VideoTrainConfig | None = None,
                     meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (its build config and state dict) and the training config, so that
    ``load_video_model`` rebuilds it; returns the path."""
    path = Path(path)
    atomic_save({"format": VIDEO_MODEL_FORMAT, "config": dict(model.config),
                 "train_config": config_mapping(cfg) if cfg is not None else None,
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "meta": meta or {}}, path)
    return path


def load_video_model(path: str | Path) -> tuple[VideoReidNet, dict[str, Any]]:
    """(model in eval mode, the file's record) from a ``save_video_model`` file or a pruned
    video model of ``fedfr prune`` (``fedfr.pruning.io`` format, rebuilt at its pruned widths).
    DataFormatError naming the file if it is neither."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such video re-ID model file")
    rec = safe_load(path)
    if isinstance(rec, dict) and rec.get("format") == VIDEO_MODEL_FORMAT:
        config = dict(rec["config"])
        model = build_video_model(config.pop("name"), **config)
        try:
            model.load_state_dict(rec["state_dict"])
        except RuntimeError as exc:
            raise DataFormatError(f"{path}: state dict does not fit {rec['config']['name']} "
                                  f"({str(exc).splitlines()[0][:200]})") from exc
        return model.eval(), rec
    if isinstance(rec, dict) and isinstance(rec.get("spec"), dict) and \
            rec["spec"].get("kind") == "video-reid":
        from fedfr.pruning.io import load_pruned

        model, rec = load_pruned(path)
        return model.eval(), rec
    raise DataFormatError(f"{path}: not a video re-ID model (expected a {VIDEO_MODEL_FORMAT} "
                          f"file or a pruned model with spec kind 'video-reid')")


# --- features and evaluation ----------------------------------------------------------------
@torch.no_grad()
def extract_tracklet_features(model: VideoReidNet, tracklets: Sequence[Tracklet],
                              cfg: VideoTrainConfig, *, mode: str | None = None, batch: int = 32,
                              device: str | torch.device = "cpu",
                              cache: dict | None = None) -> np.ndarray:
    """Test features (N, D) float32 of ``tracklets``, in order.

    mode (default cfg.test_mode): "rrs" = the RRS test clip (first frame of each of T chunks;
    NVAN / STE-NVAN), "all" = every all-sampled clip (clip k = k-th frame of every chunk),
    features averaged (CF-AAN's ``test_all_sampled``), "all_continuous" = consecutive T-frame
    clips, averaged. Feature cfg.test_feature (f_bn by default), L2-normalised after averaging
    if cfg.test_normalize. batch: clips per forward pass.
    """
    mode = cfg.test_mode if mode is None else mode
    if mode not in FEATURE_MODES:
        raise ConfigError(f"extract_tracklet_features mode {mode!r}: expected one of "
                          f"{tuple(FEATURE_MODES)}")
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"extract_tracklet_features batch: expected a positive int, "
                          f"got {batch!r}")
    was_training = model.training
    model.to(device).eval()
    dim = int(model.feature_dim)
    if not tracklets:
        return np.zeros((0, dim), np.float32)
    ds = clip_dataset(tracklets, cfg, FEATURE_MODES[mode], cache=cache)
    sums = torch.zeros(len(ds), dim, dtype=torch.float64)
    counts = torch.zeros(len(ds), dtype=torch.float64)
    pending: list[Tensor] = []
    owners: list[int] = []

    def flush() -> None:
        x = eval_clips(torch.stack(pending), cfg).to(device)
        f = model.embed(x, feature=cfg.test_feature).double().cpu()
        own = torch.as_tensor(owners)
        sums.index_add_(0, own, f)
        counts.index_add_(0, own, torch.ones(len(owners), dtype=torch.float64))
        pending.clear()
        owners.clear()

    try:
        for i in range(len(ds)):
            frames = ds[i][0]
            for clip in (frames.unsqueeze(0) if frames.dim() == 4 else frames):
                pending.append(clip)
                owners.append(i)
                if len(pending) == batch:
                    flush()
        if pending:
            flush()
    finally:
        model.train(was_training)
    feats = (sums / counts[:, None]).float()
    if cfg.test_normalize:
        feats = torch.nn.functional.normalize(feats, dim=1)
    return feats.numpy()


def _percent(summary: dict[str, Any], protocol: str, mode: str, metric: str) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": protocol, "mode": mode, "metric": metric}
    for key in ("R1", "R5", "R10", "R20", "mAP", "mINP"):
        if key in summary:
            out[key] = 100.0 * float(summary[key])
    out.update(queries=int(summary["queries"]), valid=int(summary["valid"]))
    return out


def evaluate_video_features(features: np.ndarray | Tensor, data: Any, cfg: VideoTrainConfig, *,
                            protocol: str | None = None, mode: str | None = None
                            ) -> dict[str, Any]:
    """``evaluate_video`` on features already extracted: of ``data.test`` (a MARS protocol) or
    of query + gallery concatenated (``"query-gallery"``)."""
    protocol = cfg.protocol if protocol is None else protocol
    mode = cfg.test_mode if mode is None else mode
    if protocol not in PROTOCOL_NAMES:
        raise ConfigError(f"video re-ID protocol {protocol!r}: expected one of {PROTOCOL_NAMES}")
    feats = torch.as_tensor(np.asarray(features, np.float32))
    if protocol == QUERY_GALLERY:
        query, gallery = _query_gallery(data)
        nq = len(query)
        if feats.shape[0] != nq + len(gallery):
            raise ValueError(f"features: expected {nq + len(gallery)} rows (query + gallery), "
                             f"got {feats.shape[0]}")
        res = features_to_rank(feats[:nq], feats[nq:], [t.pid for t in query],
                               [t.pid for t in gallery], [t.camid for t in query],
                               [t.camid for t in gallery], metric=cfg.metric,
                               max_rank=min(50, max(1, len(gallery))))
        out = _percent(res.summary((1, 5, 10)), protocol, mode, cfg.metric)
        out["gallery"] = len(gallery)
        return out
    if not isinstance(data, VideoSplit):
        raise ConfigError(f"video re-ID protocol {protocol!r} needs a MARS-layout VideoSplit "
                          f"(test list and query_index); use {QUERY_GALLERY!r} for a query / "
                          f"gallery pair")
    labels = split_labels(data)  # ConfigError naming the split when it has no test list
    if feats.shape[0] != len(data.test):
        raise ValueError(f"features: expected {len(data.test)} rows (split.test), "
                         f"got {feats.shape[0]}")
    if MARS_PROTOCOLS[protocol].cleaned:
        if labels["ambis"] is None:
            raise ConfigError(f"{data.name}: protocol {protocol!r} needs cleaned labels (read "
                              f"the split with clean=True)")
        res = evaluate_mars(feats, labels["pids"], labels["camids"], labels["query_index"],
                            protocol, ambis=labels["ambis"], orig_pids=labels["orig_pids"],
                            metric=cfg.metric)
    else:
        res = evaluate_mars(feats, labels["orig_pids"], labels["camids"], labels["query_index"],
                            protocol, metric=cfg.metric)
    out = _percent(res.summary((1, 5, 10)), res.protocol, mode, res.metric)
    out["gallery"] = res.num_gallery
    return out


def _query_gallery(data: Any) -> tuple[list[Tracklet], list[Tracklet]]:
    if isinstance(data, VideoSplit):
        return list(data.query), list(data.gallery)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return list(data[0]), list(data[1])
    raise ConfigError(f"video re-ID evaluation: expected a VideoSplit or a (query, gallery) "
                      f"pair, got {type(data).__name__}")


def evaluate_video(model: VideoReidNet, data: VideoSplit | tuple[Sequence[Tracklet],
                                                                  Sequence[Tracklet]],
                   cfg: VideoTrainConfig, *, protocol: str | None = None,
                   mode: str | None = None, batch: int = 32,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """R1 / R5 / R10 / mAP / mINP in % of ``model`` on ``data``, with the protocol's name.

    protocol (default cfg.protocol): a MARS protocol (``fedfr.reid.evaluation.mars``: features of
    every ``split.test`` tracklet, the protocol builds query and gallery) or ``"query-gallery"``
    (the split's query and gallery, or a (query, gallery) pair; same id and camera junk, pid -1
    junk; DukeV / iLIDS-VID / PRID2011). mode: as ``extract_tracklet_features``.
    """
    protocol = cfg.protocol if protocol is None else protocol
    mode = cfg.test_mode if mode is None else mode
    if protocol not in PROTOCOL_NAMES:
        raise ConfigError(f"video re-ID protocol {protocol!r}: expected one of {PROTOCOL_NAMES}")
    if protocol == QUERY_GALLERY:
        query, gallery = _query_gallery(data)
        tracklets = query + gallery
    elif isinstance(data, VideoSplit):
        split_labels(data)
        tracklets = list(data.test)
    else:
        raise ConfigError(f"video re-ID protocol {protocol!r} needs a MARS-layout VideoSplit")
    feats = extract_tracklet_features(model, tracklets, cfg, mode=mode, batch=batch,
                                      device=device)
    return evaluate_video_features(feats, data, cfg, protocol=protocol, mode=mode)
