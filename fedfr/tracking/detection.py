"""The detector interface and its adapters.

``Detector.detect(frames) -> list[Detections]``: one call per tick with the frames of several
cameras (batched), one ``Detections`` per frame, boxes ``xyxy`` in the frame's pixels. Detectors
must keep scores down to 0.1: BYTE's second stage associates the low boxes (0.1 < s < 0.5).

Adapters: ``PrecomputedDetector`` (MOTChallenge ``det.txt``), ``GroundTruthNoiseDetector`` (a
seeded stand-in for tests: ground truth with jitter, misses and false alarms, scores falling with
visibility), ``ExportedDetector`` (a TorchScript ``.pt`` or ONNX ``.onnx`` file by path, ONNX
through onnxruntime) and ``TorchvisionDetector`` (a torchvision detection model built with
``weights=None, weights_backbone=None``: no download; untrained until a checkpoint is given).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.tracking.motchallenge import PEDESTRIAN, read_ground_truth, read_rows, rows_by_frame
from fedfr.tracking.optional import optional_import
from fedfr.tracking.sources import Frame


@dataclass
class Detections:
    """Detections of one frame: ``boxes`` (N, 4) float32 x1, y1, x2, y2 in pixels, ``scores``
    (N,) float32 in [0, 1], ``classes`` (N,) int64 (1 = person)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.classes)):
            raise ValueError(
                f"Detections: {len(self.boxes)} boxes, {len(self.scores)} scores, "
                f"{len(self.classes)} classes"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    @classmethod
    def from_tlwh(cls, tlwh: np.ndarray, scores: np.ndarray,
                  classes: np.ndarray | None = None) -> Detections:
        tlwh = np.asarray(tlwh, np.float64).reshape(-1, 4)
        boxes = np.concatenate([tlwh[:, :2], tlwh[:, :2] + tlwh[:, 2:]], axis=1)
        if classes is None:
            classes = np.full(len(boxes), PEDESTRIAN)
        return cls(boxes, scores, classes)

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask], self.classes[mask])


class Detector:
    """Boxes, scores and classes for a batch of frames (any cameras), one result per frame."""

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:  # pragma: no cover
        raise NotImplementedError


def _per_camera(paths: str | Path | Mapping[str, str | Path]) -> dict[str | None, Path]:
    if isinstance(paths, Mapping):
        return {str(k): Path(v) for k, v in paths.items()}
    return {None: Path(paths)}


class PrecomputedDetector(Detector):
    """Detections read from MOTChallenge ``det.txt`` files, one per camera.

    ``paths``: one file (used for every camera) or {camera: file}. Rows:
    ``frame, -1, left, top, width, height, score, ...``; rows with score below ``min_score`` are
    dropped (default 0: keep all, BYTE ignores <= 0.1 itself).
    """

    def __init__(self, paths: str | Path | Mapping[str, str | Path], min_score: float = 0.0):
        self.tables: dict[str | None, dict[int, np.ndarray]] = {}
        for cam, path in _per_camera(paths).items():
            rows = read_rows(path, 7)
            rows = rows[rows[:, 6] >= min_score]
            self.tables[cam] = rows_by_frame(rows)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        for frame in frames:
            table = self.tables.get(frame.camera, self.tables.get(None))
            if table is None:
                raise ConfigError(f"PrecomputedDetector: no det.txt for camera {frame.camera!r}")
            rows = table.get(frame.index)
            if rows is None:
                out.append(Detections.empty())
            else:
                out.append(Detections.from_tlwh(rows[:, 2:6], rows[:, 6]))
        return out


@dataclass(frozen=True)
class NoiseModel:
    """The stand-in detector's noise: box jitter (std as a fraction of box size), misses with
    probability ``miss_base + miss_occluded * (1 - visibility)**2``, ``false_alarms`` per frame
    (Poisson mean), and score ``score_base + score_visible * visibility + N(0, score_std)``,
    clipped to [0.01, 1]; so occluded people get low scores that only BYTE's second stage uses."""

    jitter: float = 0.03
    miss_base: float = 0.02
    miss_occluded: float = 0.6
    false_alarms: float = 0.2
    score_base: float = 0.1
    score_visible: float = 0.85
    score_std: float = 0.05


class GroundTruthNoiseDetector(Detector):
    """A seeded detector built from MOT ground truth (``gt.txt`` per camera).

    Only considered pedestrians (flag != 0, class 1 or class -1 for MOT15-style files) are
    detected. Each (camera, frame) draws from its own generator seeded by (seed, camera, frame),
    so results do not depend on call order or batching. ``image_size`` (W, H) bounds the false
    alarms (default: the extent of the ground truth).
    """

    def __init__(self, gt_paths: str | Path | Mapping[str, str | Path], seed: int = 0,
                 noise: NoiseModel | None = None, image_size: tuple[int, int] | None = None):
        self.seed = seed
        self.noise = noise or NoiseModel()
        self.tables: dict[str | None, dict[int, np.ndarray]] = {}
        self.extent: dict[str | None, tuple[float, float]] = {}
        for cam, path in _per_camera(gt_paths).items():
            gt = read_ground_truth(path)
            keep = (gt[:, 6] != 0) & np.isin(gt[:, 7], (PEDESTRIAN, -1))
            gt = gt[keep]
            self.tables[cam] = rows_by_frame(gt)
            if image_size is not None:
                self.extent[cam] = (float(image_size[0]), float(image_size[1]))
            elif len(gt):
                self.extent[cam] = (float((gt[:, 2] + gt[:, 4]).max()),
                                    float((gt[:, 3] + gt[:, 5]).max()))
            else:
                self.extent[cam] = (640.0, 480.0)

    def _rng(self, camera: str, frame: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(camera.encode()), frame])

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        nm = self.noise
        out = []
        for frame in frames:
            key = frame.camera if frame.camera in self.tables else None
            if key not in self.tables:
                raise ConfigError(f"GroundTruthNoiseDetector: no gt for camera {frame.camera!r}")
            rng = self._rng(frame.camera, frame.index)
            rows = self.tables[key].get(frame.index, np.zeros((0, 9)))
            vis = np.clip(rows[:, 8], 0.0, 1.0)
            p_miss = nm.miss_base + nm.miss_occluded * (1.0 - vis) ** 2
            hit = rng.random(len(rows)) >= p_miss
            tlwh = rows[hit, 2:6].copy()
            size = np.repeat(tlwh[:, 2:4], 2, axis=1)[:, [0, 2, 1, 3]]
            tlwh += rng.normal(0.0, nm.jitter, tlwh.shape) * size
            tlwh[:, 2:] = np.maximum(tlwh[:, 2:], 2.0)
            scores = nm.score_base + nm.score_visible * vis[hit]
            scores = scores + rng.normal(0.0, nm.score_std, len(scores))
            n_fa = rng.poisson(nm.false_alarms)
            if n_fa:
                w_img, h_img = self.extent[key]
                h = rng.uniform(0.1, 0.4, n_fa) * h_img
                w = 0.4 * h
                x = rng.uniform(0, max(w_img - w.max(), 1.0), n_fa)
                y = rng.uniform(0, max(h_img - h.max(), 1.0), n_fa)
                tlwh = np.concatenate([tlwh, np.stack([x, y, w, h], 1)])
                scores = np.concatenate([scores, rng.uniform(0.1, 0.6, n_fa)])
            out.append(Detections.from_tlwh(tlwh, np.clip(scores, 0.01, 1.0)))
        return out


def _to_chw_batch(frames: Sequence[Frame], size: tuple[int, int] | None,
                  mean: Sequence[float] | None, std: Sequence[float] | None
                  ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Frames -> float32 (B, 3, H, W) in [0, 1] (optionally normalised), resized to ``size``
    (W, H) when given; returns the per-frame (sx, sy) factors back to frame pixels."""
    from PIL import Image

    arrays, scales = [], []
    for f in frames:
        if f.image is None:
            raise ConfigError(f"camera {f.camera} frame {f.index}: detector needs pixels")
        img = f.image
        h0, w0 = img.shape[:2]
        if size is not None and (w0, h0) != tuple(size):
            img = np.asarray(Image.fromarray(img).resize(tuple(size), Image.BILINEAR))
        h1, w1 = img.shape[:2]
        scales.append((w0 / w1, h0 / h1))
        x = img.astype(np.float32) / 255.0
        if mean is not None:
            x = (x - np.asarray(mean, np.float32)) / np.asarray(std or (1, 1, 1), np.float32)
        arrays.append(x.transpose(2, 0, 1))
    if len({a.shape for a in arrays}) > 1:
        raise ConfigError("frames of different sizes in one batch: give the detector input_size")
    return np.stack(arrays), scales


def _rows_to_detections(rows: np.ndarray, scale: tuple[float, float],
                        min_score: float) -> Detections:
    rows = np.asarray(rows, np.float32).reshape(-1, 6)
    rows = rows[rows[:, 4] > min_score]
    boxes = rows[:, :4] * np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
    return Detections(boxes, rows[:, 4], rows[:, 5].astype(np.int64))


class ExportedDetector(Detector):
    """A detector exported to TorchScript (``.pt``/``.ts``) or ONNX (``.onnx``), loaded by path.

    Contract of the exported model: input float32 ``(B, 3, H, W)`` RGB in [0, 1] (normalised by
    ``mean``/``std`` when given), resized to ``input_size`` (W, H); output ``(B, N, 6)`` rows
    ``x1, y1, x2, y2, score, class`` in input pixels, padded rows with score <= ``min_score``
    ignored. Boxes are scaled back to frame pixels. ONNX runs on onnxruntime (CPU, or CUDA
    when ``providers`` names it).
    """

    def __init__(self, path: str | Path, input_size: tuple[int, int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 min_score: float = 0.0, providers: Sequence[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFormatError(f"{self.path}: no such detector file")
        self.input_size, self.mean, self.std, self.min_score = input_size, mean, std, min_score
        if self.path.suffix.lower() == ".onnx":
            ort = optional_import("onnxruntime", "ONNX detectors", "export")
            self.session = ort.InferenceSession(
                str(self.path), providers=list(providers or ["CPUExecutionProvider"]))
            self.input_name = self.session.get_inputs()[0].name
            self.kind = "onnx"
        else:
            import torch

            try:
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
            except RuntimeError as exc:
                raise DataFormatError(f"{self.path}: not a TorchScript file ({exc})") from exc
            self.kind = "torchscript"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.kind == "onnx":
            return np.asarray(self.session.run(None, {self.input_name: batch})[0])
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).cpu().numpy()

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        if not frames:
            return []
        batch, scales = _to_chw_batch(frames, self.input_size, self.mean, self.std)
        out = self._run(batch)
        if out.ndim != 3 or out.shape[0] != len(frames) or out.shape[2] != 6:
            raise DataFormatError(
                f"{self.path}: output shape {tuple(out.shape)}, expected (B={len(frames)}, N, 6)"
            )
        return [_rows_to_detections(o, s, self.min_score) for o, s in zip(out, scales,
                                                                            strict=True)]


TORCHVISION_ARCHS = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "ssdlite320_mobilenet_v3_large",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
)


class TorchvisionDetector(Detector):
    """A torchvision detection model built with ``weights=None, weights_backbone=None`` (nothing
    is downloaded), ``num_classes`` including background (2: background + person), and its score
    threshold lowered to ``score_floor`` (0.1) so BYTE's low boxes survive. ``checkpoint``: a
    state_dict file of the same architecture (``python -m fedfr.tracking.train_detector`` writes
    one); without one the model is untrained."""

    def __init__(self, arch: str = "fasterrcnn_mobilenet_v3_large_320_fpn", num_classes: int = 2,
                 checkpoint: str | Path | None = None, score_floor: float = 0.1,
                 device: str = "cpu"):
        if arch not in TORCHVISION_ARCHS:
            raise ConfigError(f"detector arch {arch!r}: expected one of {TORCHVISION_ARCHS}")
        import torch
        from torchvision.models import detection as tvd

        kwargs = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if arch.startswith("fasterrcnn"):
            kwargs["box_score_thresh"] = score_floor
        elif arch.startswith(("retinanet", "fcos")):
            kwargs["score_thresh"] = score_floor
        elif arch.startswith("ssdlite"):
            kwargs["score_thresh"] = score_floor
        self.model = getattr(tvd, arch)(**kwargs)
        if checkpoint is not None:
            state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
            try:
                self.model.load_state_dict(state.get("model", state))
            except RuntimeError as exc:
                from fedfr.errors import first_detail

                raise DataFormatError(f"{checkpoint}: {first_detail(exc)}") from exc
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.score_floor = score_floor

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        import torch

        images = []
        for f in frames:
            if f.image is None:
                raise ConfigError(f"camera {f.camera} frame {f.index}: detector needs pixels")
            t = torch.from_numpy(np.ascontiguousarray(f.image)).permute(2, 0, 1)
            images.append(t.to(self.device, torch.float32).div_(255.0))
        with torch.inference_mode():
            outputs = self.model(images) if images else []
        result = []
        for o in outputs:
            keep = o["scores"] >= self.score_floor
            result.append(Detections(o["boxes"][keep].cpu().numpy(),
                                     o["scores"][keep].cpu().numpy(),
                                     o["labels"][keep].cpu().numpy()))
        return result


__all__ = [
    "Detections",
    "Detector",
    "ExportedDetector",
    "GroundTruthNoiseDetector",
    "NoiseModel",
    "PrecomputedDetector",
    "TorchvisionDetector",
]
