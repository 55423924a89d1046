"""Export a video re-ID model to TorchScript and ONNX, with a JSON sidecar naming its pre- and
post-processing, so that another program (the tracking module) can run it by path.

The exported graph maps ``clip`` (B, T, 3, H, W) float32, RGB in [0, 1] normalised by ImageNet's
mean / std, to ``feature`` (B, d): the BNNeck output f_bn (``feature="after"``, the thesis's test
feature) or the pooled feature f (``"before"``), L2-normalised inside the graph if ``normalize``.
Batch is dynamic; T, H and W are those of the export. Each file is reloaded and run once on a
random clip: the largest absolute difference from the eager model is written to the sidecar, and
an error is raised if it exceeds ``atol``. ONNX is checked with onnxruntime (extra ``export``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError, DataFormatError, FedFRError
from fedfr.reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fedfr.reid.models.net import TEST_FEATURES
from fedfr.reid.models.video.net import VideoReidNet

FORMATS = ("torchscript", "onnx")


class ExportMismatchError(FedFRError):
    """An exported file's output differs from the eager model's by more than the tolerance."""


class FeatureHead(nn.Module):
    """(B, T, 3, H, W) -> (B, d): one test feature of a VideoReidNet (eval mode)."""

    def __init__(self, model: VideoReidNet, feature: str = "after", normalize: bool = False
                 ) -> None:
        super().__init__()
        if feature not in TEST_FEATURES:
            raise ConfigError(f"export: feature must be one of {TEST_FEATURES}, got {feature!r}")
        self.model, self.feature, self.normalize = model, feature, normalize

    def forward(self, clip: Tensor) -> Tensor:
        f, f_bn = self.model(clip)
        out = f_bn if self.feature == "after" else f
        return F.normalize(out, dim=1) if self.normalize else out


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError("export: checking the ONNX file needs the package 'onnxruntime' "
                          "(extra 'export'; run `make install`)") from exc
    return onnxruntime


def export_video_model(model: VideoReidNet, out_dir: str | Path,
                       formats: tuple[str, ...] | list[str] = ("torchscript", "onnx"), *,
                       clip_len: int | None = None, input_size: tuple[int, int] | None = None,
                       feature: str = "after", normalize: bool = False, opset: int = 17,
                       atol: float = 1e-4, stem: str | None = None,
                       meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``<stem>.ts`` (TorchScript, traced) and / or ``<stem>.onnx`` plus ``<stem>.json``
    (the sidecar) to ``out_dir``; returns {format or "sidecar": path}.

    clip_len / input_size default to the model's build config (``model.config``); ``meta``
    (e.g. a pruned model's channels and FLOPs) is written to the sidecar as ``meta``.
    Raises ConfigError for an unknown format and ExportMismatchError if a reloaded file's output
    differs from the eager model's by more than ``atol``.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"export: formats must be a non-empty subset of {FORMATS}, got "
                          f"{list(formats)!r}")
    cfg = dict(getattr(model, "config", {}) or {})
    t = clip_len or cfg.get("clip_len")
    size = tuple(input_size or cfg.get("input_size") or ())
    if not t or len(size) != 2:
        raise ConfigError("export: clip_len and input_size are needed (the model has no build "
                          "config; pass them)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or cfg.get("name", model.name)
    head = FeatureHead(model, feature, normalize).cpu().eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(1, t, 3, *size, generator=gen)
    check = torch.randn(2, t, 3, *size, generator=gen)  # another batch size: dynamic batch
    with torch.no_grad():
        expected = head(check)
    paths: dict[str, Path] = {}
    diffs: dict[str, float] = {}
    if "torchscript" in formats:
        path = out_dir / f"{stem}.ts"
        with torch.no_grad():
            traced = torch.jit.trace(head, example, check_trace=False)
        traced.save(str(path))
        with torch.no_grad():
            got = torch.jit.load(str(path))(check)
        diffs["torchscript"] = float((got - expected).abs().max())
        paths["torchscript"] = path
    if "onnx" in formats:
        ort = _onnxruntime()
        path = out_dir / f"{stem}.onnx"
        with torch.no_grad():
            torch.onnx.export(head, (example,), str(path), input_names=["clip"],
                              output_names=["feature"], opset_version=opset,
                              dynamic_axes={"clip": {0: "batch"}, "feature": {0: "batch"}},
                              dynamo=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(["feature"], {"clip": check.numpy()})[0])
        diffs["onnx"] = float((got - expected).abs().max())
        paths["onnx"] = path
    for fmt, diff in diffs.items():
        if not diff <= atol:
            raise ExportMismatchError(f"export: {paths[fmt]}: output differs from the eager "
                                      f"model by {diff:.3g} (> {atol})")
    sidecar: dict[str, Any] = {
        "format_version": 1,
        "model": cfg,
        "files": {fmt: p.name for fmt, p in paths.items()},
        "input": {"name": "clip", "layout": "B,T,3,H,W", "dtype": "float32",
                  "clip_len": int(t), "height": int(size[0]), "width": int(size[1]),
                  "dynamic": ["B"], "color": "RGB", "scale": "pixel / 255",
                  "resize": "each frame to HxW (bilinear, aspect ratio not kept)",
                  "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                  "frames": "T frames per clip: RRS test mode (first frame of each of T equal "
                            "chunks) or consecutive clips of T frames, features averaged"},
        "output": {"name": "feature", "dim": int(expected.shape[1]),
                   "which": "f_bn (BNNeck output)" if feature == "after"
                   else "f (pooled feature before BNNeck)",
                   "l2_normalized": bool(normalize),
                   "compare": "Euclidean distance" + ("" if normalize else
                                                     " (L2-normalise first for cosine ranking)")},
        "checks": {f"{fmt}_max_abs_diff": d for fmt, d in diffs.items()},
        "opset": opset if "onnx" in formats else None,
        "torch": torch.__version__,
    }
    if meta:
        sidecar["meta"] = meta
    side = out_dir / f"{stem}.json"
    side.write_text(json.dumps(sidecar, indent=1))
    paths["sidecar"] = side
    return paths


class ExportedVideoModel:
    """An exported video model loaded by path: ``model(clips)`` maps (B, T, 3, H, W) float32
    clips, pre-processed as ``sidecar["input"]`` says, to (B, d) features (a torch Tensor).

    ``backend``: "torchscript" (torch.jit.load) or "onnx" (onnxruntime, CPU).
    """

    def __init__(self, sidecar_path: str | Path, backend: str | None = None) -> None:
        path = Path(sidecar_path)
        try:
            side = json.loads(path.read_text())
            files, spec = side["files"], side["input"]
            self.clip_len, self.size = int(spec["clip_len"]), (int(spec["height"]),
                                                               int(spec["width"]))
        except FileNotFoundError as exc:
            raise DataFormatError(f"{path}: export sidecar not found") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise DataFormatError(f"{path}: not a video-model export sidecar (expected JSON "
                                  f"with 'files' and 'input' clip_len / height / width): "
                                  f"{exc}") from exc
        backend = backend or ("torchscript" if "torchscript" in files else "onnx")
        if backend not in files:
            raise ConfigError(f"{path}: no {backend!r} file in this export (has {sorted(files)})")
        self.sidecar, self.backend = side, backend
        file = path.parent / files[backend]
        if not file.is_file():
            raise DataFormatError(f"{file}: exported model file missing (named in {path})")
        if backend == "torchscript":
            self._ts = torch.jit.load(str(file), map_location="cpu")
        else:
            ort = _onnxruntime()
            self._ort = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])

    def __call__(self, clips: Tensor) -> Tensor:
        shape = tuple(clips.shape)
        if len(shape) != 5 or shape[1:] != (self.clip_len, 3, *self.size):
            raise ValueError(f"exported {self.sidecar.get('model', {}).get('name', 'model')}: "
                             f"expected clips (B, {self.clip_len}, 3, {self.size[0]}, "
                             f"{self.size[1]}), got {shape}")
        x = clips.detach().to("cpu", torch.float32)
        if self.backend == "torchscript":
            with torch.no_grad():
                return self._ts(x)
        return torch.from_numpy(self._ort.run(["feature"], {"clip": x.numpy()})[0])


def load_exported_video_model(sidecar_path: str | Path, backend: str | None = None
                              ) -> ExportedVideoModel:
    """Load ``<name>.json`` written by ``export_video_model`` and its TorchScript (default when
    present) or ONNX file; DataFormatError naming the file if it is missing or malformed."""
    return ExportedVideoModel(sidecar_path, backend)
