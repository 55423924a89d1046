"""re-Detect and Link (DL, thesis Sec. 2.5.1, Fig. 2.10): a preprocessing pass over a tracklet
folder in the MARS layout that writes a repaired copy in the same layout.

Per tracklet, frame by frame (``relink_tracklet``):

1. **re-Detect**: pad the crop by ``pad`` of its size on every side, run the person detector,
   keep "person" boxes with score >= ``min_score``. Frame 1: the largest box (thesis). Frame i:
   the candidate nearest (Euclidean) to the global feature f_g (thesis; ``select="reid"``), or,
   without a re-ID model, the one with the highest IoU with the previous chosen box, ties by
   score (``select="iou"``). f_g <- alpha f_g + (1 - alpha) f_i (Eq. 2.2, alpha = 0.9). No
   candidate: the original crop is kept.
2. **Re-crop** (``recrop``): the chosen box (grown by ``margin``) resized into the output size
   keeping its aspect ratio, the rest padded; a slim box (w / h < ``slim_ratio``) on the left
   (right) half is shifted right (left): placed where a whole person of width ``person_aspect``
   x h would put it. A mask rectangle of real pixels is kept per frame.
3. **Link** (not in the thesis; fedfr's, each switchable): per-frame re-ID features of the
   re-cropped frames; ``split``: cut the tracklet where the feature sequence changes cluster
   (binary segmentation, cosine distance of the two sides' means > ``split_distance``); pieces
   are linked back to the kept piece when their mean is within ``link_distance`` of its
   EMA global feature (Eq. 2.2 over the kept piece); unlinked pieces are dropped.
   ``remove_intruders``: frames whose distance to their piece's medoid exceeds
   ``median + intruder_k * MAD`` (and ``intruder_floor``) are removed.

``run_dl(in_root, out_root, detector, reid, cfg)`` does a folder and writes
``info/dl_log.json`` / ``info/dl_log.csv`` (every action) and ``info/dl_masks.csv``;
``defect_metrics`` measures the repairs on synthetic tracklets against their ground truth.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.records import FrameTruth, Tracklet
from fedfr.tracking.detection import Detections, Detector
from fedfr.tracking.sources import Frame, read_image

PERSON = 1
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


@dataclass(frozen=True)
class DLConfig:
    """DL's switches. [T] = the thesis's value, [I] = chosen here (the thesis gives none).

    pad [I]: padding of the crop before detection, fraction of its width / height per side;
    pad_value [I]: fill colour of padding (ImageNet mean); min_score [I]: detector score
    threshold; person_class: the detector's person class id; first [T]: "largest" (thesis)
    candidate in frame 1; select [T]: "reid" (nearest to f_g, thesis) or "iou"; alpha [T]: Eq.
    2.2; margin [I]: box growth before re-cropping (0 = the tight box, as the thesis's crops);
    slim_ratio, person_aspect [I]: the slim-box rule; split / split_distance / min_piece /
    link_distance / keep, remove_intruders / intruder_k / intruder_floor / min_frames [I]: the
    Link repairs (not in the thesis).
    """

    pad: float = 0.2
    pad_value: tuple[int, int, int] = (124, 116, 104)
    min_score: float = 0.3
    person_class: int = PERSON
    first: str = "largest"
    select: str = "reid"
    alpha: float = 0.9
    margin: float = 0.0
    slim_ratio: float = 0.3
    person_aspect: float = 0.4
    split: bool = True
    split_distance: float = 0.35
    link_distance: float = 0.35
    min_piece: int = 2
    keep: str = "largest"
    remove_intruders: bool = True
    intruder_k: float = 3.0
    intruder_floor: float = 0.25
    min_frames: int = 2

    def __post_init__(self) -> None:
        choices = (("first", ("largest", "score")), ("select", ("reid", "iou")),
                   ("keep", ("largest", "first")))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"DL {name}={getattr(self, name)!r}: expected one of {allowed}")
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"DL alpha={self.alpha}: expected [0, 1)")
        if self.pad < 0 or self.margin < 0 or self.min_piece < 1 or self.min_frames < 1:
            raise ConfigError("DL pad, margin >= 0 and min_piece, min_frames >= 1 expected")


# ----------------------------------------------------------------------------- geometry


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def truth_box(truth: tuple[float, float, float], width: int, height: int,
              aspect: float = 0.4) -> Box:
    """The person's box in a synthetic crop (``FrameTruth.box`` = (dx, dy, scale), units of the
    crop height; ``synthetic.py`` draws the person from ``top = (1 - scale) / 2 + dy``, centre
    ``width / 2 + dx``); width ``aspect`` x the person height. Not clipped to the crop."""
    dx, dy, s = truth
    h = s * height
    cx = width / 2 + dx * height
    top = ((1 - s) / 2 + dy) * height
    return (cx - aspect * h / 2, top, cx + aspect * h / 2, top + h)


@dataclass(frozen=True)
class Recrop:
    """Where an output frame comes from: ``region`` (xyxy in the input crop's pixels; the whole
    output maps onto it), ``box`` (the detection, input pixels, None = original crop kept),
    ``mask`` (h0, h1, w0, w1: the output rows / columns holding real box pixels), ``shift``
    ("left" / "right" when the slim-box rule moved the box, else "")."""

    region: Box
    box: Box | None
    mask: tuple[int, int, int, int]
    shift: str = ""


def recrop_geometry(box: Box | None, in_w: int, in_h: int, out_w: int, out_h: int,
                    cfg: DLConfig) -> Recrop:
    """The re-crop of ``box`` (input pixels) into an ``out_w`` x ``out_h`` frame (module doc)."""
    if box is None:
        return Recrop((0.0, 0.0, float(in_w), float(in_h)), None, (0, out_h, 0, out_w))
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * (1 + 2 * cfg.margin), (y2 - y1) * (1 + 2 * cfg.margin)
    s = min(out_h / h, out_w / w)  # output pixels per input pixel
    bw, bh = w * s, h * s
    ox, oy = (out_w - bw) / 2, (out_h - bh) / 2  # box's top-left in the output
    shift = ""
    if (x2 - x1) < cfg.slim_ratio * (y2 - y1):
        full = min(cfg.person_aspect * h * s, out_w)
        if full > bw:
            if cx < in_w / 2:  # cut by the left border: the body's missing part is on the left
                ox, shift = (out_w + full) / 2 - bw, "right"
            else:
                ox, shift = (out_w - full) / 2, "left"
    bx1, by1 = cx - w / 2, cy - h / 2
    region = (bx1 - ox / s, by1 - oy / s, bx1 + (out_w - ox) / s, by1 + (out_h - oy) / s)
    # real pixels: inside the box and inside the input crop
    rx1, ry1 = max(bx1, 0.0), max(by1, 0.0)
    rx2, ry2 = min(bx1 + w, float(in_w)), min(by1 + h, float(in_h))

    def to_out(v: float, o: float, b: float) -> int:
        return int(round(min(max((v - b) * s + o, 0.0), 1e9)))

    mask = (min(to_out(ry1, oy, by1), out_h), min(to_out(ry2, oy, by1), out_h),
            min(to_out(rx1, ox, bx1), out_w), min(to_out(rx2, ox, bx1), out_w))
    return Recrop(region, (float(x1), float(y1), float(x2), float(y2)), mask, shift)


def render_recrop(image: np.ndarray, rc: Recrop, out_w: int, out_h: int,
                  pad_value: Sequence[int]) -> np.ndarray:
    """uint8 (out_h, out_w, 3): ``image`` sampled over ``rc.region``, padding outside the mask."""
    from PIL import Image

    if rc.box is None and image.shape[:2] == (out_h, out_w):
        return image.copy()
    im = Image.fromarray(image).transform((out_w, out_h), Image.EXTENT, rc.region,
                                          Image.BILINEAR, fillcolor=tuple(pad_value))
    out = np.asarray(im).copy()
    h0, h1, w0, w1 = rc.mask
    keep = np.zeros(out.shape[:2], bool)
    keep[h0:h1, w0:w1] = True
    out[~keep] = np.asarray(pad_value, np.uint8)
    return out


def map_truth(truth: tuple[float, float, float], rc: Recrop, in_h: int, in_w: int, out_w: int,
              out_h: int) -> tuple[float, float, float]:
    """A synthetic frame's (dx, dy, scale) after the re-crop ``rc`` (units of the output height)."""
    tb = truth_box(truth, in_w, in_h)
    rx1, ry1, rx2, ry2 = rc.region
    sx, sy = out_w / (rx2 - rx1), out_h / (ry2 - ry1)
    top, bottom = (tb[1] - ry1) * sy, (tb[3] - ry1) * sy
    cx = ((tb[0] + tb[2]) / 2 - rx1) * sx
    scale = (bottom - top) / out_h
    return ((cx - out_w / 2) / out_h, top / out_h - (1 - scale) / 2, scale)


# ----------------------------------------------------------------------------- detectors


class TrackletTruthDetector(Detector):
    """A ground-truth stand-in for tests: the person box of a synthetic frame from its
    ``FrameTruth`` (``truth_box``), clipped to the crop (a detector sees the visible part only),
    score 1. Frames are looked up by ``Frame.camera`` = the frame's file name; ``frame_size``
    (W, H) is the unpadded crop size (symmetric padding is read off the image). ``jitter``: std
    of a seeded box noise (fraction of the box size)."""

    def __init__(self, tracklets: Sequence[Tracklet], frame_size: tuple[int, int],
                 jitter: float = 0.0, seed: int = 0):
        self.boxes: dict[str, tuple[float, float, float]] = {}
        for t in tracklets:
            if t.truth is None:
                continue
            for p, b in zip(t.paths, t.truth.box, strict=True):
                self.boxes[p.name] = b
        if not self.boxes:
            raise DataFormatError("ground-truth detector: the tracklets carry no frame truth "
                                  "(expected info/frame_truth.csv, fedfr's synthetic tracklets)")
        self.size, self.jitter, self.seed = frame_size, jitter, seed

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        w0, h0 = self.size
        for f in frames:
            b = self.boxes.get(f.camera)
            if b is None or f.image is None:
                raise ConfigError(f"ground-truth detector: no truth for frame {f.camera!r}")
            ph, pw = f.image.shape[:2]
            ox, oy = (pw - w0) / 2, (ph - h0) / 2
            x1, y1, x2, y2 = truth_box(b, w0, h0)
            if self.jitter:
                rng = np.random.default_rng([self.seed, zlib.crc32(f.camera.encode())])
                bw, bh = x2 - x1, y2 - y1
                x1, x2 = np.array([x1, x2]) + rng.normal(0, self.jitter, 2) * bw
                y1, y2 = np.array([y1, y2]) + rng.normal(0, self.jitter, 2) * bh
            box = [max(x1, 0.0) + ox, max(y1, 0.0) + oy, min(x2, w0) + ox, min(y2, h0) + oy]
            out.append(Detections(np.array([box]), np.ones(1), np.full(1, PERSON)))
        return out


def build_detector(spec: str, tracklets: Sequence[Tracklet], frame_size: tuple[int, int],
                   input_size: tuple[int, int] | None = None, jitter: float = 0.0) -> Detector:
    """``"gt"`` (``TrackletTruthDetector`` with ``jitter``) or a TorchScript / ONNX file
    (``ExportedDetector``)."""
    if spec == "gt":
        return TrackletTruthDetector(tracklets, frame_size, jitter=jitter)
    from fedfr.tracking.detection import ExportedDetector

    return ExportedDetector(spec, input_size=input_size)


# ----------------------------------------------------------------------------- features


class ReidFeatures:
    """L2-normalised re-ID features (N, D) of uint8 (N, H, W, 3) frames with a ReidNet."""

    def __init__(self, model: Any, height: int, width: int, batch: int = 64):
        self.model, self.height, self.width, self.batch = model.eval(), height, width, batch

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        from fedfr.reid.data.transforms import normalize

        out = []
        for s in range(0, len(frames), self.batch):
            xs = [np.asarray(Image.fromarray(f).resize((self.width, self.height),
                                                      Image.BILINEAR))
                  for f in frames[s:s + self.batch]]
            x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
            with torch.no_grad():
                out.append(self.model.embed(normalize(x), normalize=True).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


# ----------------------------------------------------------------------------- DL per tracklet


@dataclass
class TrackletResult:
    """DL's outcome for one tracklet: per input frame its ``recrop``, ``kept`` flag, ``piece``
    (0 = the kept piece) and the ``actions`` logged (dicts with frame, action, details);
    ``splits``: frame indices where a piece starts (after the first)."""

    recrops: list[Recrop]
    kept: list[bool]
    piece: list[int]
    splits: list[int]
    actions: list[dict[str, Any]] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list, repr=False)


def _choose(dets: Detections, prev: Box | None, f_g: np.ndarray | None,
            feats: np.ndarray | None, cfg: DLConfig) -> tuple[int, str]:
    """Index of the chosen candidate and why."""
    areas = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
    if len(dets) == 1:
        return 0, "only"
    if prev is None:
        if cfg.first == "largest":
            return int(np.argmax(areas)), "largest"
        return int(np.argmax(dets.scores)), "score"
    if f_g is not None and feats is not None:
        return int(np.argmin(np.linalg.norm(feats - f_g, axis=1))), "nearest-fg"
    ious = np.array([iou(tuple(b), prev) for b in dets.boxes])
    return int(np.lexsort((-dets.scores, -ious))[0]), "iou"


def _segments(feats: np.ndarray, cfg: DLConfig) -> list[int]:
    """Change points (sorted frame indices) by binary segmentation on the cosine distance of
    the two sides' mean features."""
    cuts: list[int] = []

    def rec(a: int, b: int) -> None:
        n = b - a
        if n < 2 * cfg.min_piece:
            return
        best, at = -1.0, -1
        for k in range(a + cfg.min_piece, b - cfg.min_piece + 1):
            m1, m2 = feats[a:k].mean(0), feats[k:b].mean(0)
            d = 1.0 - float(m1 @ m2) / (np.linalg.norm(m1) * np.linalg.norm(m2) + 1e-12)
            if d > best:
                best, at = d, k
        if best > cfg.split_distance:
            cuts.append(at)
            rec(a, at)
            rec(at, b)

    rec(0, len(feats))
    return sorted(cuts)


def _ema(feats: np.ndarray, alpha: float) -> np.ndarray:
    f_g = feats[0].copy()
    for f in feats[1:]:
        f_g = alpha * f_g + (1 - alpha) * f
    return f_g


def relink_tracklet(images: Sequence[np.ndarray], names: Sequence[str], detector: Detector,
                    reid: ReidFeatures | None, cfg: DLConfig) -> TrackletResult:
    """DL on one tracklet's uint8 (H, W, 3) frames (see the module docstring)."""
    n = len(images)
    recrops: list[Recrop] = []
    outs: list[np.ndarray] = []
    actions: list[dict[str, Any]] = []
    prev: Box | None = None
    f_g: np.ndarray | None = None
    pending: list[np.ndarray] = []  # chosen crops whose features are not yet in f_g

    def update_fg() -> np.ndarray | None:
        nonlocal f_g
        if reid is not None and pending:
            for f_i in reid(pending):
                f_g = f_i.copy() if f_g is None else cfg.alpha * f_g + (1 - cfg.alpha) * f_i
            pending.clear()
        return f_g

    for i, (img, name) in enumerate(zip(images, names, strict=True)):
        h, w = img.shape[:2]
        px, py = int(round(cfg.pad * w)), int(round(cfg.pad * h))
        padded = np.empty((h + 2 * py, w + 2 * px, 3), np.uint8)
        padded[:] = np.asarray(cfg.pad_value, np.uint8)
        padded[py:py + h, px:px + w] = img
        dets = detector.detect([Frame(name, i + 1, padded, 0.0)])[0]
        dets = dets.select((dets.scores >= cfg.min_score) & (dets.classes == cfg.person_class))
        dets = Detections(dets.boxes - np.array([px, py, px, py], np.float32), dets.scores,
                          dets.classes)
        dets = dets.select((dets.boxes[:, 2] > dets.boxes[:, 0] + 1)
                           & (dets.boxes[:, 3] > dets.boxes[:, 1] + 1))
        if len(dets) == 0:
            rc = recrop_geometry(None, w, h, w, h, cfg)
            actions.append({"frame": name, "action": "keep-original", "why": "no detection"})
            recrops.append(rc)
            outs.append(render_recrop(img, rc, w, h, cfg.pad_value))
            continue
        cands = [recrop_geometry(tuple(map(float, b)), w, h, w, h, cfg) for b in dets.boxes]
        crops = [render_recrop(img, c, w, h, cfg.pad_value) for c in cands]
        feats = None
        if reid is not None and len(dets) > 1 and prev is not None and cfg.select == "reid":
            update_fg()
            feats = reid(crops)
        j, why = _choose(dets, prev, f_g, feats, cfg)
        rc = cands[j]
        pending.append(crops[j])
        prev = rc.box
        recrops.append(rc)
        outs.append(crops[j])
        actions.append({"frame": name, "action": "recrop", "why": why, "candidates": len(dets),
                        "score": round(float(dets.scores[j]), 4),
                        "box": [round(v, 2) for v in rc.box], "shift": rc.shift,
                        "mask": list(rc.mask)})
    kept = [True] * n
    piece = [0] * n
    splits: list[int] = []
    if reid is not None and n and (cfg.split or cfg.remove_intruders):
        feats = reid(outs)
        bounds = [0, *(_segments(feats, cfg) if cfg.split else []), n]
        pieces = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        if cfg.keep == "largest":
            main = max(range(len(pieces)), key=lambda k: (pieces[k][1] - pieces[k][0], -k))
        else:
            main = 0
        a0, b0 = pieces[main]
        f_main = _ema(feats[a0:b0], cfg.alpha)
        f_main = f_main / (np.linalg.norm(f_main) + 1e-12)
        for k, (a, b) in enumerate(pieces):
            if k == main:
                continue
            m = feats[a:b].mean(0)
            d = 1.0 - float(m @ f_main) / (np.linalg.norm(m) + 1e-12)
            linked = d <= cfg.link_distance
            for t in range(a, b):
                piece[t] = 0 if linked else k + 1
                kept[t] = linked
            actions.append({"frame": names[a], "action": "link-back" if linked else "split-drop",
                            "frames": [a, b], "distance": round(d, 4)})
            if not linked:
                splits.append(a if k > main else b)
        if cfg.remove_intruders:
            idx = [t for t in range(n) if kept[t]]
            if len(idx) > cfg.min_frames:
                f = feats[idx]
                dist = 1.0 - f @ f.T
                med = int(np.argmin(dist.sum(1)))
                d = dist[med]
                mad = float(np.median(np.abs(d - np.median(d))))
                thr = max(float(np.median(d)) + cfg.intruder_k * 1.4826 * mad, cfg.intruder_floor)
                order = np.argsort(-d)
                removable = len(idx) - cfg.min_frames
                for r in order[:removable]:
                    if d[r] <= thr:
                        break
                    kept[idx[r]] = False
                    actions.append({"frame": names[idx[r]], "action": "remove-intruder",
                                    "distance": round(float(d[r]), 4),
                                    "threshold": round(thr, 4)})
    return TrackletResult(recrops, kept, piece, sorted(splits), actions, outs)


# ----------------------------------------------------------------------------- folder


def _plain(o: Any) -> Any:
    """numpy scalars -> Python numbers for JSON."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_dl(in_root: str | Path, out_root: str | Path, detector: Detector | str = "gt",
           reid: ReidFeatures | None = None, cfg: DLConfig | None = None,
           jpeg_quality: int = 95, gt_jitter: float = 0.0) -> dict[str, Any]:
    """DL over a MARS-layout folder; writes the repaired copy (MARS layout, plus
    ``info/dl_log.json``, ``info/dl_log.csv``, ``info/dl_masks.csv`` and, for synthetic input,
    ``info/frame_truth.csv`` with the boxes mapped through the re-crop). Returns the log
    (``summary``, ``config``, and per tracklet ``results`` of TrackletResult, not serialised)."""
    from PIL import Image

    from fedfr.reid.data.video.fixtures import write_mars_info
    from fedfr.reid.data.video.mars import TRUTH_COLUMNS, TRUTH_FILE, read_int_mat, read_mars

    cfg = cfg or DLConfig()
    if cfg.select == "reid" and reid is None:
        cfg = dataclasses.replace(cfg, select="iou")
    split = read_mars(Path(in_root), gallery="official")
    base = split.root
    out = Path(out_root) / "mars"
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty (DL writes a fresh copy)")
    parts = {"train": split.train, "test": split.test}
    if isinstance(detector, str):
        first = next(t for ts in parts.values() for t in ts)
        h0, w0 = read_image(first.paths[0]).shape[:2]
        detector = build_detector(detector, [t for ts in parts.values() for t in ts], (w0, h0),
                                  jitter=gt_jitter)
    names: dict[str, list[str]] = {"train": [], "test": []}
    rows: dict[str, list[tuple[int, int, int, int]]] = {"train": [], "test": []}
    log_rows: list[dict[str, Any]] = []
    masks: list[tuple[str, int, int, int, int]] = []
    truth_rows: list[list[Any]] = []
    results: dict[tuple[str, int], TrackletResult] = {}
    counts = dict(tracklets=0, frames_in=0, frames_out=0, recropped=0, kept_original=0,
                  shifted=0, intruders_removed=0, pieces_dropped=0, linked_back=0)
    for part, tracks in parts.items():
        for r, t in enumerate(tracks):
            imgs = [read_image(p) for p in t.paths]
            res = relink_tracklet(imgs, [p.name for p in t.paths], detector, reid, cfg)
            results[(part, r)] = res
            start = len(names[part]) + 1
            for i, p in enumerate(t.paths):
                if not res.kept[i]:
                    continue
                dst = out / f"bbox_{part}" / p.parent.name / p.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(res.images[i]).save(dst, quality=jpeg_quality)
                names[part].append(p.name)
                masks.append((p.name, *res.recrops[i].mask))
                if t.truth is not None:
                    h, w = imgs[i].shape[:2]
                    dx, dy, s = map_truth(t.truth.box[i], res.recrops[i], h, w, w, h)
                    tr = t.truth
                    truth_rows.append([p.name, tr.true_pid[i], f"{dx:.5f}", f"{dy:.5f}",
                                       f"{s:.5f}", int(tr.misaligned[i]), tr.intruder_pid[i],
                                       int(tr.truncated[i]), int(tr.occluded[i])])
            rows[part].append((start, len(names[part]), t.pid if t.orig_pid is None
                               else t.orig_pid, t.camid + 1))
            for a in res.actions:
                log_rows.append({"part": part, "row": r + 1, "pid": t.pid, "camera": t.camid + 1,
                                 **a})
            counts["tracklets"] += 1
            counts["frames_in"] += len(t)
            counts["frames_out"] += sum(res.kept)
            counts["recropped"] += sum(rc.box is not None for rc in res.recrops)
            counts["kept_original"] += sum(rc.box is None for rc in res.recrops)
            counts["shifted"] += sum(bool(rc.shift) for rc in res.recrops)
            for a in res.actions:
                key = {"remove-intruder": "intruders_removed", "split-drop": "pieces_dropped",
                       "link-back": "linked_back"}.get(a["action"])
                if key:
                    counts[key] += 1
    clean_rows = None
    if (base / "info" / "clean_tracks_test_info.mat").is_file():
        clean = read_int_mat(base / "info" / "clean_tracks_test_info.mat", "track_test_info",
                             (6,))
        clean_rows = np.concatenate([np.asarray(rows["test"]), clean[:, 4:6]], axis=1)
    write_mars_info(out, names, {k: np.asarray(v).reshape(-1, 4) for k, v in rows.items()},
                    split.query_index, clean_rows)
    info = out / "info"
    if truth_rows:
        with (info / TRUTH_FILE).open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(TRUTH_COLUMNS)
            wr.writerows(truth_rows)
    with (info / "dl_masks.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(("name", "h0", "h1", "w0", "w1"))
        wr.writerows(masks)
    keys = ["part", "row", "pid", "camera", "frame", "action", "why", "candidates", "score",
            "box", "shift", "mask", "frames", "distance", "threshold"]
    with (info / "dl_log.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        for row in log_rows:
            wr.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    log = {"input": str(base), "output": str(out), "config": dataclasses.asdict(cfg),
           "detector": type(detector).__name__, "reid": reid is not None, "summary": counts,
           "actions": log_rows}
    (info / "dl_log.json").write_text(json.dumps(log, indent=1, default=_plain))
    log["results"] = results
    log["split"] = split
    return log


# ----------------------------------------------------------------------------- measurement


def _pr(pred: set, true: set) -> dict[str, float]:
    tp = len(pred & true)
    return {"precision": tp / len(pred) if pred else float("nan"),
            "recall": tp / len(true) if true else float("nan"), "predicted": len(pred),
            "true": len(true)}


def target_region(truth: tuple[float, float, float], in_w: int, in_h: int,
                  cfg: DLConfig) -> Box:
    """The ideal re-crop region of a synthetic frame: the re-crop of its true, unclipped
    person box (``recrop_geometry`` without the slim rule), in input pixels."""
    rc = recrop_geometry(truth_box(truth, in_w, in_h, cfg.person_aspect), in_w, in_h, in_w,
                         in_h, dataclasses.replace(cfg, slim_ratio=0.0))
    return rc.region


def defect_metrics(tracks: Sequence[Tracklet], results: Sequence[TrackletResult],
                   sizes: Sequence[tuple[int, int]], cfg: DLConfig,
                   tolerance: int = 1) -> dict[str, Any]:
    """DL's repairs against the synthetic ground truth: mean IoU of the crop region with the
    ideal one (``target_region``) before (the original crop) and after (the re-crop), over all,
    misaligned, truncated and clean frames; precision / recall of removed frames against intruder
    frames; of split points against identity switches (a split within ``tolerance`` frames of a
    switch counts); and the fraction of kept frames showing the labelled identity."""
    iou_b: dict[str, list[float]] = {"all": [], "misaligned": [], "truncated": [], "clean": []}
    iou_a: dict[str, list[float]] = {k: [] for k in iou_b}
    removed, intr, spl, sw = set(), set(), set(), set()
    wrong_before = wrong_after = kept_n = 0
    for ti, (t, res, (w, h)) in enumerate(zip(tracks, results, sizes, strict=True)):
        tr: FrameTruth | None = t.truth
        if tr is None:
            continue
        for i in range(len(t)):
            tgt = target_region(tr.box[i], w, h, cfg)
            b = iou((0.0, 0.0, float(w), float(h)), tgt)
            a = iou(res.recrops[i].region, tgt)
            groups = ["all"]
            groups += ["misaligned"] if tr.misaligned[i] else []
            groups += ["truncated"] if tr.truncated[i] else []
            groups += ["clean"] if not (tr.misaligned[i] or tr.truncated[i]) else []
            for g in groups:
                iou_b[g].append(b)
                iou_a[g].append(a)
            if tr.intruder_pid[i]:
                intr.add((ti, i))
            if not res.kept[i] and res.piece[i] == 0:
                removed.add((ti, i))
            wrong = tr.true_pid[i] != t.pid
            wrong_before += wrong
            if res.kept[i]:
                kept_n += 1
                wrong_after += wrong
        sw |= {(ti, k) for k in tr.switch_frames}
        spl |= {(ti, k) for k in res.splits}
    matched = {p for p in spl if any((p[0], p[1] + d) in sw
                                     for d in range(-tolerance, tolerance + 1))}
    found = {s for s in sw if any((s[0], s[1] + d) in spl
                                  for d in range(-tolerance, tolerance + 1))}
    n_frames = len(iou_b["all"])
    return {
        "iou_before": {k: float(np.mean(v)) if v else float("nan") for k, v in iou_b.items()},
        "iou_after": {k: float(np.mean(v)) if v else float("nan") for k, v in iou_a.items()},
        "frames": {k: len(v) for k, v in iou_b.items()},
        "intruders": _pr(removed, intr),
        "switches": {"precision": len(matched) / len(spl) if spl else float("nan"),
                     "recall": len(found) / len(sw) if sw else float("nan"),
                     "predicted": len(spl), "true": len(sw), "tolerance": tolerance},
        "wrong_identity_frames": {"before": wrong_before / max(n_frames, 1),
                                  "after": wrong_after / max(kept_n, 1)},
    }


def measure(log: dict[str, Any], cfg: DLConfig) -> dict[str, Any]:
    """``defect_metrics`` over every tracklet of a ``run_dl`` log (synthetic input)."""
    split = log["split"]
    tracks, results, sizes = [], [], []
    for part, ts in (("train", split.train), ("test", split.test)):
        for r, t in enumerate(ts):
            res = log["results"][(part, r)]
            tracks.append(t)
            results.append(res)
            h, w = res.images[0].shape[:2]
            sizes.append((w, h))
    return defect_metrics(tracks, results, sizes, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedfr.reid.video.dl",
                                 description="re-Detect and Link over a MARS-layout folder.")
    ap.add_argument("--in", dest="root", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="the copy is written to OUT/mars")
    ap.add_argument("--detector", default="gt",
                    help="'gt' (synthetic ground truth) or a TorchScript / ONNX detector file")
    ap.add_argument("--detector-input", type=int, nargs=2, metavar=("W", "H"), default=None,
                    help="input size the exported detector expects (default: the padded crop)")
    ap.add_argument("--gt-jitter", type=float, default=0.0,
                    help="std of the ground-truth stand-in's box noise (fraction of box size)")
    ap.add_argument("--reid", type=Path, default=None,
                    help="fedfr-reid-net checkpoint (python -m fedfr.reid.video.ide); without it "
                         "candidates are chosen by IoU and the Link repairs are off")
    ap.add_argument("--measure", action="store_true",
                    help="print the repairs against the synthetic ground truth (needs it)")
    for f in dataclasses.fields(DLConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                            default=f.default, metavar="BOOL", help=f"default {f.default}")
        elif f.name == "pad_value":
            ap.add_argument(flag, type=int, nargs=3, default=f.default)
        else:
            kind = {"float": float, "int": int, "str": str}[str(f.type)]
            ap.add_argument(flag, type=kind, default=f.default, help=f"default {f.default}")
    a = ap.parse_args(argv)
    cfg = DLConfig(**{f.name: (tuple(getattr(a, f.name)) if f.name == "pad_value"
                               else getattr(a, f.name)) for f in dataclasses.fields(DLConfig)})
    reid = None
    if a.reid is not None:
        from fedfr.reid.video.ide import load_reid_net

        model, h, w = load_reid_net(a.reid)
        reid = ReidFeatures(model, h, w)
    detector: Detector | str = a.detector
    if a.detector != "gt":
        from fedfr.tracking.detection import ExportedDetector

        detector = ExportedDetector(a.detector, input_size=a.detector_input)
    log = run_dl(a.root, a.out, detector, reid, cfg, gt_jitter=a.gt_jitter)
    print(json.dumps(log["summary"], default=_plain))
    if a.measure:
        m = measure(log, cfg)
        text = json.dumps(m, indent=1, default=_plain)
        (Path(log["output"]) / "info" / "dl_measure.json").write_text(text)
        print(json.dumps(m, indent=1, default=_plain))
    return 0


if __name__ == "__main__":
    from fedfr.errors import run_entry_point

    raise SystemExit(run_entry_point(main, "python -m fedfr.reid.video.dl"))
