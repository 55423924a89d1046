"""Appearance embedders for tracking: ``embed(crops uint8 (N, H, W, 3) RGB) -> (N, D) float32``,
rows L2-normalised.

* :class:`ColourHistogramEmbedder`: per horizontal stripe of the crop a kernel-weighted HSV (or
  RGB) histogram, square-rooted (Hellinger) and concatenated; no model, for tests and as a
  motion-plus-colour baseline.
* :class:`ReidModelEmbedder`: a fedfr re-ID network (``fedfr.reid.models.build_reid_model``)
  loaded by path (:func:`load_reid_model`), crops resized to its input (256 x 128 by default),
  ImageNet-normalised, the BNNeck feature (``feature="after"``) or the pooled one.

Clips (the thesis's 4-frame track clips, §8.4): ``embed_clips(clips uint8 (N, T, H, W, 3)) ->
(N, D)``. An image model embeds each frame and averages the T features (then L2-normalises);
a video re-ID model overrides ``embed_clips`` with its clip forward pass
(:class:`VideoModelEmbedder`, loaded by path with :func:`load_video_embedder`): subclass
:class:`ClipEmbedder` or pass any object with ``embed_clips`` to
:class:`fedfr.tracking.track_features.TrackFeatureBank`. Crops of all cameras go through one
call (batched across cameras by the caller).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from fedfr.errors import ConfigError, DataFormatError


@runtime_checkable
class Embedder(Protocol):
    """The interface every embedder offers."""

    dim: int

    def embed(self, crops: np.ndarray) -> np.ndarray: ...

    def embed_clips(self, clips: np.ndarray) -> np.ndarray: ...


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def _check_crops(crops: np.ndarray, ndim: int = 4) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != ndim or crops.shape[-1] != 3:
        want = "(N, H, W, 3)" if ndim == 4 else "(N, T, H, W, 3)"
        raise ValueError(f"embedder input: expected uint8 {want}, got {crops.dtype} "
                         f"{crops.shape}")
    return crops


class ClipEmbedder:
    """Base class: ``embed_clips`` = mean of the per-frame ``embed`` features, re-normalised.
    A video model overrides ``embed_clips`` (and may implement ``embed`` as a 1-frame clip)."""

    dim: int = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        clips = _check_crops(clips, 5)
        n, t = clips.shape[:2]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        f = self.embed(clips.reshape(n * t, *clips.shape[2:]))
        return l2_normalise(f.reshape(n, t, -1).mean(axis=1))


class ColourHistogramEmbedder(ClipEmbedder):
    """Colour histograms of ``stripes`` horizontal stripes, pixels weighted by a kernel across
    the width (``1 - (u / kernel)^2``, u the offset from the centre line in box widths; the
    background at the box sides counts little), each stripe's histogram square-rooted
    (Hellinger) and the concatenation L2-normalised.

    ``space="hsv"`` (default): 8 hue bins x 2 saturation levels for coloured pixels (saturation
    >= 1/3) and 3 grey levels for the rest, K = 19 cells; robust to the brightness changes
    between cameras. ``space="rgb"``: a joint RGB histogram of ``bins`` levels per channel,
    K = bins**3. D = stripes * K."""

    def __init__(self, stripes: int = 3, space: str = "hsv", bins: int = 4,
                 kernel: float = 0.3):
        if stripes < 1 or space not in ("hsv", "rgb") or bins < 2 or not 0 < kernel <= 1:
            raise ConfigError(f"ColourHistogramEmbedder(stripes={stripes}, space={space!r}, "
                              f"bins={bins}, kernel={kernel}): expected stripes >= 1, space "
                              "hsv | rgb, bins >= 2, kernel in (0, 1]")
        self.stripes, self.space, self.bins, self.kernel = stripes, space, bins, kernel
        self.cells = 19 if space == "hsv" else bins ** 3
        self.dim = stripes * self.cells

    def _cells(self, crops: np.ndarray) -> np.ndarray:
        if self.space == "rgb":
            q = (crops.astype(np.int64) * self.bins) >> 8
            return (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2]
        x = crops.astype(np.float32) / 255.0
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        # elementwise max/min of the three planes: 2x faster than a reduction over axis -1
        mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
        d = mx - mn + 1e-6
        hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2,
                                                            (r - g) / d + 4)) / 6
        sat = d / (mx + 1e-6)
        hq = np.minimum((hue * 8).astype(np.int64), 7)
        sq = np.minimum((sat * 3).astype(np.int64), 2)
        vq = np.minimum((mx * 3).astype(np.int64), 2)
        return np.where(sq > 0, hq * 2 + (sq - 1), 16 + vq)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = _check_crops(crops)
        n, h, w = crops.shape[:3]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        cell = self._cells(crops)  # (N, H, W)
        u = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
        weight = np.maximum(0.0, 1.0 - (u / self.kernel) ** 2)
        edges = np.linspace(0, h, self.stripes + 1).round().astype(int)
        k = self.cells
        out = np.zeros((n, self.stripes, k), np.float64)
        for s in range(self.stripes):
            part = cell[:, edges[s]:max(edges[s + 1], edges[s] + 1)]
            idx = part + np.arange(n)[:, None, None] * k
            wts = np.broadcast_to(weight, part.shape)
            out[:, s] = np.bincount(idx.ravel(), wts.ravel(), minlength=n * k).reshape(n, k)
        out /= np.maximum(out.sum(axis=2, keepdims=True), 1e-12)
        return l2_normalise(np.sqrt(out).reshape(n, -1))


REID_MODEL_FORMAT = "fedfr-reid-model-1"


def save_reid_model(path: str | Path, model: Any, name: str,
                    build_kwargs: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> None:
    """Write a ReidNet so that :func:`load_reid_model` rebuilds it: ``name`` and
    ``build_kwargs`` of ``build_reid_model`` plus the state dict."""
    from fedfr.checkpoint import atomic_save

    atomic_save({"format": REID_MODEL_FORMAT, "name": name, "build_kwargs": build_kwargs or {},
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "meta": meta or {}}, Path(path))


def load_reid_model(path: str | Path, name: str | None = None, **build_kwargs: Any):
    """A re-ID network in eval mode from ``path``:

    * a file of :func:`save_reid_model` (name and build arguments inside), also one whose
      layers are narrower than the architecture's (a model pruned by
      ``fedfr prune`` with ``task='reid'``): the layers are shrunk to the stored shapes;
    * a pruned model of ``fedfr prune`` (``fedfr.pruning.io`` format, rebuilt at its pruned
      widths);
    * a re-ID federation's ``final_model.pt`` (``backbone.*`` arrays), a pre-training cache
      file (``backbone`` / ``phi``), a plain state dict (or ``{"state_dict": ...}`` /
      ``{"model": ...}``) of ``build_reid_model(name, **build_kwargs)``: ``name`` is then
      required (the run's ``reid-model``, e.g. ``small_reid``).

    A file that fits none raises DataFormatError naming it and what was expected."""
    import torch

    from fedfr.checkpoint import safe_load
    from fedfr.reid.models import build_reid_model

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such re-ID model file")
    rec = safe_load(path)
    if isinstance(rec, dict) and rec.get("format") == REID_MODEL_FORMAT:
        name, build_kwargs, state = rec["name"], dict(rec.get("build_kwargs", {})), \
            rec["state_dict"]
    elif isinstance(rec, dict) and "spec" in rec and "channels" in rec:
        from fedfr.pruning.io import load_pruned

        return load_pruned(path)[0].eval()
    else:
        state = None
        if isinstance(rec, dict):
            state = rec.get("state_dict", rec.get("model", rec.get("backbone", rec)))
        keys = [k for k in state if k != "phi"] if isinstance(state, dict) else []
        if keys and all(k.startswith("backbone.") for k in keys):  # a federation's arrays
            state = {k[len("backbone."):]: v for k, v in state.items()
                     if k.startswith("backbone.")}  # FedFR's Phi_g is not part of the net
        if not isinstance(state, dict) or not state or not all(
                isinstance(v, torch.Tensor) for v in state.values()):
            raise DataFormatError(f"{path}: not a re-ID model (expected a {REID_MODEL_FORMAT} "
                                  "file, a pruned model, a re-ID federation's final_model.pt "
                                  "or a state dict)")
        if name is None:
            raise DataFormatError(f"{path}: a bare state dict; give the architecture name "
                                  "(e.g. --reid-name small_reid)")
    model = build_reid_model(name, **build_kwargs)
    own = model.state_dict()
    narrower = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    try:
        if narrower:  # a pruned model: rebuild its layers at the stored widths
            from fedfr.pruning.io import shrink_to

            model = shrink_to(model, state)
        else:
            model.load_state_dict(state)
    except (RuntimeError, DataFormatError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise DataFormatError(f"{path}: state dict does not fit {name!r} ({first})") from exc
    return model.eval()


def fuse_conv_bn(model: Any) -> Any:
    """A copy of ``model`` (eval mode) with every BatchNorm2d that only follows a Conv2d folded
    into the convolution (torch.fx's graph fusion). A ReidNet's trunk (``model.backbone``) is
    traced and replaced; any other module is traced whole."""
    import copy

    from torch.fx.experimental.optimization import fuse

    trunk = getattr(model, "backbone", None)
    if trunk is None:
        return fuse(model.eval())
    model = copy.deepcopy(model).eval()
    model.backbone = fuse(model.backbone)
    return model


def stored_input_size(path: str | Path) -> tuple[int, int] | None:
    """The input (H, W) a :func:`save_reid_model` file records in ``meta["input"]``, if any."""
    from fedfr.checkpoint import safe_load

    rec = safe_load(Path(path))
    size = rec.get("meta", {}).get("input") if isinstance(rec, dict) and \
        rec.get("format") == REID_MODEL_FORMAT else None
    return (int(size[0]), int(size[1])) if size else None


class ReidModelEmbedder(ClipEmbedder):
    """A fedfr re-ID network as an embedder. ``model``: a ReidNet (``embed(x, feature=...)``)
    or any module mapping ImageNet-normalised (B, 3, H, W) to (B, D) or to (f, f_bn);
    ``size`` (H, W) the input; ``batch_size`` crops per forward pass. ``fuse_bn``: fold each
    BatchNorm that follows a convolution into it (:func:`fuse_conv_bn`; about 17 % less CPU
    for ``small_reid``; not the same arithmetic: features differ by ~1e-7)."""

    def __init__(self, model: Any, size: tuple[int, int] = (256, 128), feature: str = "after",
                 device: str = "cpu", batch_size: int = 64, half: bool = False,
                 fuse_bn: bool = False):
        import torch

        self.torch = torch
        model = model.eval()
        if fuse_bn:
            model = fuse_conv_bn(model)
        self.model = model.eval().to(device)
        self.size, self.feature, self.device = tuple(size), feature, device
        self.batch_size, self.half = batch_size, half
        if half:
            self.model = self.model.half()
        if feature not in ("after", "before"):
            raise ConfigError(f"ReidModelEmbedder: feature {feature!r}: expected after | before")
        with torch.inference_mode():
            self.dim = int(self._forward(np.zeros((1, *self.size, 3), np.uint8)).shape[1])

    @classmethod
    def from_path(cls, path: str | Path, name: str | None = None, **kwargs: Any
                  ) -> ReidModelEmbedder:
        """The model of ``path`` (:func:`load_reid_model`); its input size is ``size`` if
        given, else the one stored in the file's ``meta["input"]`` (H, W), else 256 x 128."""
        model = load_reid_model(path, name)
        if kwargs.get("size") is None:
            kwargs.pop("size", None)
            stored = stored_input_size(path)
            if stored is not None:
                kwargs["size"] = stored
        return cls(model, **kwargs)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) -> (B, D) float32, not normalised. The model is held in eval
        mode, so a ReidNet is called directly (its ``embed`` toggles every submodule's mode on
        each call); the arithmetic is that of ``embed``."""
        from fedfr.reid.data.transforms import normalize

        x = self.torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
        x = normalize(x).to(self.device)
        if self.half:
            x = x.half()
        out = self.model(x)
        if isinstance(out, tuple):  # a ReidNet: (f, f_bn)
            out = out[1] if self.feature == "after" else out[0]
        return out.float().cpu().numpy()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = _check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        if crops.shape[1:3] != self.size:
            crops = resize_crops(crops, self.size)
        outs = []
        with self.torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                outs.append(self._forward(crops[i:i + self.batch_size]))
        return l2_normalise(np.concatenate(outs))


class VideoModelEmbedder(ClipEmbedder):
    """A video re-ID net (NVAN / STE-NVAN / CF-AAN, pruned or not) as a clip embedder.

    ``model``: a callable mapping float (B, T, 3, H, W) clips, pre-processed as below, to (B, D)
    features (an exported model of ``load_exported_video_model``, or a ``VideoReidNet``'s
    ``embed``); ``clip_len`` T and ``size`` (H, W): the model's input; ``mean`` / ``std``: the
    normalisation after scaling pixels to [0, 1]. ``embed_clips(clips uint8 (N, T', h, w, 3))``:
    T' frames become T by RRS's test rule (the first frame of each of T chunks; a short clip
    repeats its last frame), each frame is resized to H x W (bilinear), the output rows are
    L2-normalised. ``embed(crops)``: each crop as a clip of T copies. Load one by path with
    :func:`load_video_embedder`.
    """

    def __init__(self, model: Any, clip_len: int, size: tuple[int, int],
                 mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                 std: tuple[float, ...] = (0.229, 0.224, 0.225), batch_size: int = 16,
                 name: str = "video model"):
        import torch

        if clip_len < 1 or len(size) != 2 or batch_size < 1:
            raise ConfigError(f"VideoModelEmbedder(clip_len={clip_len}, size={size}, "
                              f"batch_size={batch_size}): expected positive values")
        self.torch, self.model, self.name = torch, model, name
        self.clip_len, self.size, self.batch_size = int(clip_len), tuple(size), batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1)
        self.dim = int(self._forward(np.zeros((1, self.clip_len, *self.size, 3), np.uint8))
                       .shape[1])

    def _forward(self, clips: np.ndarray) -> np.ndarray:
        x = self.torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 1, 4, 2, 3).float()
        x = (x / 255.0 - self.mean) / self.std
        with self.torch.no_grad():
            return self.model(x).float().cpu().numpy()

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        from fedfr.reid.data.rrs import rrs_sample

        clips = _check_crops(clips, 5)
        n, t = clips.shape[:2]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        if t < 1:
            raise ValueError(f"{self.name}: clips need at least one frame, got {clips.shape}")
        clips = clips[:, rrs_sample(t, self.clip_len, "test")]
        if clips.shape[2:4] != self.size:
            flat = resize_crops(clips.reshape(-1, *clips.shape[2:]), self.size)
            clips = flat.reshape(n, self.clip_len, *self.size, 3)
        outs = [self._forward(clips[i:i + self.batch_size])
                for i in range(0, n, self.batch_size)]
        return l2_normalise(np.concatenate(outs))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = _check_crops(crops)
        return self.embed_clips(np.repeat(crops[:, None], self.clip_len, axis=1))


def load_video_embedder(path: str | Path, backend: str | None = None, **kwargs: Any
                        ) -> VideoModelEmbedder:
    """A :class:`VideoModelEmbedder` from ``path``: an export sidecar ``<name>.json`` of
    ``fedfr.reid.models.video.export`` (its TorchScript file, or ONNX with ``backend="onnx"``;
    clip length, input size, mean / std and feature normalisation read from the sidecar), or a
    ``.pt`` video re-ID model (``save_video_model``) or a pruned one (``fedfr prune --video``),
    run in eval mode with its training config's test feature. ``kwargs``: e.g. batch_size."""
    path = Path(path)
    if path.suffix == ".json":
        from fedfr.reid.models.video.export import load_exported_video_model

        exported = load_exported_video_model(path, backend)
        spec = exported.sidecar["input"]
        return VideoModelEmbedder(exported, exported.clip_len, exported.size,
                                  tuple(spec.get("mean", (0.485, 0.456, 0.406))),
                                  tuple(spec.get("std", (0.229, 0.224, 0.225))),
                                  name=str(path), **kwargs)
    from fedfr.reid.video.training import load_video_model

    model, rec = load_video_model(path)
    train = rec.get("train_config") or rec.get("meta", {}).get("train_config") or {}
    feature = train.get("test_feature", "after")
    normalize = bool(train.get("test_normalize", False))
    conf = model.config
    if train.get("normalize", True):
        mean_std = {}
    else:  # trained on pixel / 255 without ImageNet's mean / std
        mean_std = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    size = (train["height"], train["width"]) if "height" in train else conf["input_size"]

    def run(x: Any) -> Any:
        return model.embed(x, feature=feature, normalize=normalize)

    return VideoModelEmbedder(run, int(train.get("clip_len", conf["clip_len"])),
                              tuple(int(v) for v in size), name=str(path),
                              **{**mean_std, **kwargs})


def resize_crops(crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, h, w, 3) -> (N, H, W, 3) bilinear, ``size`` = (H, W)."""
    h, w = size
    return np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR))
                     for c in crops]) if len(crops) else np.zeros((0, h, w, 3), np.uint8)


def crop_boxes(image: np.ndarray, tlwh: np.ndarray, size: tuple[int, int] = (256, 128)
               ) -> np.ndarray:
    """Crops of ``image`` (H, W, 3) uint8 at boxes ``tlwh`` (N, 4) (0-based pixels, clipped to
    the image, at least 1 pixel), each resized to ``size`` (H, W): uint8 (N, H, W, 3)."""
    img_h, img_w = image.shape[:2]
    out = np.empty((len(tlwh), size[0], size[1], 3), np.uint8)
    # plain float arithmetic per box (numpy scalar calls cost more than the resize itself)
    for i, (x, y, w, h) in enumerate(np.asarray(tlwh, np.float64).reshape(-1, 4).tolist()):
        x0 = min(max(math.floor(x), 0), img_w - 1)
        y0 = min(max(math.floor(y), 0), img_h - 1)
        x1 = min(max(math.ceil(x + w), x0 + 1), img_w)
        y1 = min(max(math.ceil(y + h), y0 + 1), img_h)
        out[i] = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).resize(
            (size[1], size[0]), Image.BILINEAR))
    return out


def is_video_model_file(path: Path) -> bool:
    """A video re-ID model: an export sidecar (``.json``), a ``save_video_model`` file or a
    video net pruned by ``fedfr prune --video``."""
    if path.suffix == ".json":
        return True
    if not path.is_file():
        return False
    import torch

    from fedfr.reid.video.training import VIDEO_MODEL_FORMAT

    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or one with objects: not ours to judge here
        return False
    return isinstance(rec, dict) and (
        rec.get("format") == VIDEO_MODEL_FORMAT
        or (isinstance(rec.get("spec"), dict) and rec["spec"].get("kind") == "video-reid"))


def build_embedder(spec: str, **kwargs: Any) -> ClipEmbedder:
    """``"colour-hist"``, a video re-ID model (export sidecar ``.json``, ``save_video_model`` or
    pruned video file: :func:`load_video_embedder`, which reads its own input size), or a path to
    an image re-ID model file (``kwargs`` go to the embedder; a bare state dict needs
    ``name=``)."""
    if spec in ("colour-hist", "color-hist", "colour", "hist"):
        return ColourHistogramEmbedder(**kwargs)
    path = Path(spec)
    if is_video_model_file(path):
        return load_video_embedder(path)
    if path.suffix in (".pt", ".pth", ".ckpt") or path.exists():
        name = kwargs.pop("name", None)
        return ReidModelEmbedder.from_path(path, name, **kwargs)
    raise ConfigError(f"embedder {spec!r}: expected 'colour-hist' or a re-ID model file path")
