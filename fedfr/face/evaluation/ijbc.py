"""IJB-C: meta files, template features, 1:1 verification and 1:N identification.

Layout under ``root`` (insightface's packaging of the NIST release):

- ``meta/ijbc_face_tid_mid.txt``: one line per face crop, ``<image> <template id> <media id>``;
- ``meta/ijbc_name_5pts_score.txt``: ``<image> x1 y1 ... x5 y5 <detector score>``;
- ``meta/ijbc_template_pair_label.txt``: ``<template 1> <template 2> <label 1|0>`` (1:1 pairs);
- ``loose_crop/<image>``: the face crops the landmarks refer to;
- 1:N (optional): ``ijbc_1N_gallery_G1.csv``, ``ijbc_1N_gallery_G2.csv`` and
  ``ijbc_1N_probe_mixed.csv`` as NIST ships them (comma-separated, a header line, columns
  TEMPLATE_ID, SUBJECT_ID, FILENAME, ...), looked up in ``meta/`` then in ``root``.

Image features: aligned crop (5-point similarity to the ArcFace template), backbone output of
the crop plus (optionally) of its mirror, NOT normalised per image by default, multiplied by the
detector score (optional). Template feature: mean of the frames of each media, sum over the
template's media, L2-normalised (insightface's eval_ijbc convention).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from fedfr.digest import file_fingerprint
from fedfr.errors import DataFormatError
from fedfr.face.data.transforms import to_float, to_uint8_chw
from fedfr.face.evaluation.align import align_face
from fedfr.face.evaluation.cache import FeatureCache, files_digest, model_digest
from fedfr.face.evaluation.metrics import (
    identification_from_matches,
    level_key,
    tar_at_far,
    tar_at_far_nearest_roc,
)
from fedfr.face.evaluation.streaming import pair_scores

log = logging.getLogger(__name__)

TID_MID = "ijbc_face_tid_mid.txt"
PAIRS = "ijbc_template_pair_label.txt"
LANDMARKS = "ijbc_name_5pts_score.txt"
GALLERY_FILES = ("ijbc_1N_gallery_G1.csv", "ijbc_1N_gallery_G2.csv")
PROBE_FILE = "ijbc_1N_probe_mixed.csv"
IJBC_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
IJBC_FPIRS = (1e-2, 1e-1)


@dataclass
class IJBCMeta:
    """The 1:1 meta data: per image (N) its file, template, media, landmarks and detector score;
    per pair (P) two template ids and a label (1 = same subject)."""

    root: Path
    images: list[str]
    templates: np.ndarray  # (N,) int64
    medias: np.ndarray  # (N,) int64
    landmarks: np.ndarray  # (N, 5, 2) float32, pixel coordinates in the loose crop
    scores: np.ndarray  # (N,) float32 detector (faceness) score
    pair_t1: np.ndarray  # (P,) int64
    pair_t2: np.ndarray  # (P,) int64
    pair_label: np.ndarray  # (P,) int8

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{path}: missing IJB-C meta file ({what})")
    return path


def _read_table(path: Path, ncols: int, what: str) -> pd.DataFrame:
    """Whitespace-separated table without header; error naming the file if malformed."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="c",
                         keep_default_na=False)  # a short line's missing fields read as ""
    except pd.errors.EmptyDataError as e:
        raise DataFormatError(f"{path}: empty file, expected lines of {what}") from e
    except Exception as e:  # noqa: BLE001 - pandas raises several parser errors
        raise DataFormatError(f"{path}: cannot parse ({e}); expected lines of {what}") from e
    if df.shape[1] != ncols:
        raise DataFormatError(f"{path}: expected {ncols} columns per line ({what}), "
                              f"found {df.shape[1]}")
    short = (df == "").any(axis=1).to_numpy()
    if short.any():
        r = int(np.flatnonzero(short)[0])
        n = int((df.iloc[r] != "").sum())
        raise DataFormatError(f"{path}: line {_line_number(path, r)}: {n} fields, expected "
                              f"{ncols} ({what})")
    return df


def _line_number(path: Path, row: int) -> int:
    """1-based line number of the ``row``-th non-blank line of ``path`` (pandas skips blank
    lines)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        seen = -1
        for number, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return row + 1


def _read_int_table(path: Path, ncols: int, what: str, numbers: str) -> np.ndarray:
    """A whitespace-separated all-integer table (e.g. 15.7 M pair lines) parsed straight to
    int64 (no per-cell strings); on failure re-read as text to name the bad line."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.int64, engine="c")
    except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        df = _read_table(path, ncols, what)  # raises naming the file / line below
        return _to_numbers(df, range(ncols), path, np.int64, numbers)
    if df.shape[1] != ncols:
        raise DataFormatError(f"{path}: expected {ncols} columns per line ({what}), "
                              f"found {df.shape[1]}")
    return df.to_numpy()


def _to_numbers(df: pd.DataFrame, cols: Sequence[int], path: Path, kind: type,
                what: str, first_line: int = 1) -> np.ndarray:
    """Columns ``cols`` as ``kind``; DataFormatError naming the file and line (row r is line
    ``first_line + r``) of the first value that does not convert."""
    try:
        return df.iloc[:, list(cols)].to_numpy().astype(kind)
    except ValueError:
        arr = df.iloc[:, list(cols)].to_numpy()
        for r in range(arr.shape[0]):
            try:
                arr[r].astype(kind)
            except ValueError:
                raise DataFormatError(f"{path}: line {r + first_line} {list(arr[r])}: expected "
                                      f"{what}") from None
        raise


def read_ijbc_meta(root: Path | str) -> IJBCMeta:
    """Read and cross-check the three 1:1 meta files under ``root/meta`` (see module doc).

    Raises DataFormatError naming the file and line for a missing file, a malformed line, an
    image listed in one file but not the other, or a pair whose template has no images.
    """
    root = Path(root)
    meta = root / "meta"
    p_tid = _need(meta / TID_MID, "image template media")
    p_lmk = _need(meta / LANDMARKS, "image x1 y1 ... x5 y5 score")
    p_pair = _need(meta / PAIRS, "template1 template2 label")
    tid = _read_table(p_tid, 3, "<image> <template id> <media id>")
    names = tid.iloc[:, 0].tolist()
    tm = _to_numbers(tid, [1, 2], p_tid, np.int64, "integer template and media ids")
    lmk = _read_table(p_lmk, 12, "<image> x1 y1 ... x5 y5 <detector score>")
    lnames = lmk.iloc[:, 0].tolist()
    lv = _to_numbers(lmk, range(1, 12), p_lmk, np.float32, "11 numbers after the image name")
    if not np.isfinite(lv).all():
        r = int(np.flatnonzero(~np.isfinite(lv).all(axis=1))[0])
        raise DataFormatError(f"{p_lmk}: line {_line_number(p_lmk, r)}: expected 11 finite "
                              f"numbers after the image name, got {lmk.iloc[r, 1:].tolist()}")
    if lnames != names:
        # join by name (the files normally list the same images in the same order)
        pos = {n: i for i, n in enumerate(lnames)}
        if len(pos) != len(lnames):
            raise DataFormatError(f"{p_lmk}: image names are not unique and not in the order "
                                  f"of {p_tid}")
        missing = [n for n in names if n not in pos]
        if missing:
            raise DataFormatError(f"{p_lmk}: no landmarks for image {missing[0]!r} (listed in "
                                  f"{p_tid}); {len(missing)} image(s) missing")
        lv = lv[[pos[n] for n in names]]
    pv = _read_int_table(p_pair, 3, "<template 1> <template 2> <label>",
                         "three integers t1 t2 label")
    if pv.size and not np.isin(pv[:, 2], (0, 1)).all():
        r = int(np.flatnonzero(~np.isin(pv[:, 2], (0, 1)))[0])
        raise DataFormatError(f"{p_pair}: line {r + 1}: label must be 0 or 1, got {pv[r, 2]}")
    known = np.unique(tm[:, 0])
    for col in (0, 1):
        bad = ~np.isin(pv[:, col], known)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{p_pair}: line {r + 1}: template {pv[r, col]} has no images "
                                  f"in {p_tid}")
    return IJBCMeta(root=root, images=names, templates=tm[:, 0], medias=tm[:, 1],
                    landmarks=lv[:, :10].reshape(-1, 5, 2).astype(np.float32),
                    scores=lv[:, 10].astype(np.float32), pair_t1=pv[:, 0], pair_t2=pv[:, 1],
                    pair_label=pv[:, 2].astype(np.int8))


def _find_1n(root: Path, name: str) -> Path | None:
    for p in (root / "meta" / name, root / name):
        if p.is_file():
            return p
    return None


def read_1n_list(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIST 1:N CSV (header line, TEMPLATE_ID, SUBJECT_ID, ...; one line per image) ->
    (unique template ids, their subject ids), templates sorted ascending."""
    try:
        df = pd.read_csv(path, sep=",", header=0, usecols=[0, 1], dtype=str)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{path}: cannot read as a NIST 1:N CSV with header "
                              f"TEMPLATE_ID,SUBJECT_ID,... ({e})") from e
    vals = _to_numbers(df, [0, 1], path, np.int64, "integer TEMPLATE_ID and SUBJECT_ID",
                       first_line=2)
    if vals.shape[0] == 0:
        raise DataFormatError(f"{path}: no templates listed")
    t, first = np.unique(vals[:, 0], return_index=True)
    s = vals[first, 1]
    # every line of a template must name the same subject
    inv = np.searchsorted(t, vals[:, 0])
    bad = vals[:, 1] != s[inv]
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{path}: line {r + 2}: template {vals[r, 0]} is listed with "
                              f"subjects {s[inv[r]]} and {vals[r, 1]}")
    return t, s


# --- image features -------------------------------------------------------------------------
def load_aligned(root: Path, name: str, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Decode ``root/loose_crop/<name>`` and align it: (size, size, 3) uint8 RGB."""
    path = root / "loose_crop" / name
    try:
        data = path.read_bytes()
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image listed in the meta files is missing") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({e})") from e
    return align_face(img, landmarks, size)


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    f = model(x)
    if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
        raise ValueError(f"model must return (B, d) features for a batch of {x.shape[0]}")
    return f.float()


@torch.no_grad()
def embed_images_raw(model: nn.Module, meta: IJBCMeta, flip: bool = True,
                     batch_size: int = 128, device: str | torch.device = "cpu",
                     progress_every: int = 50, workers: int = 0,
                     skip_bad_images: bool = False) -> np.ndarray:
    """Unnormalised features (N, d) float32 of every aligned crop (plus its mirror if flip).

    Crops are aligned at 112 x 112 and resized to the model's input size if it differs;
    ``workers`` > 0 decodes and aligns in that many threads. An image that is missing or fails
    to decode raises DataFormatError naming it, or, with ``skip_bad_images``, is logged and
    gets a row of nan (``evaluate_ijbc`` then leaves it out of its template)."""
    size = int(getattr(model, "input_size", 112))
    was = model.training
    model.eval()
    out = []
    n = len(meta.images)
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(workers) if workers > 0 else None
    dim = None

    def load(i: int) -> np.ndarray | None:
        try:
            return load_aligned(meta.root, meta.images[i], meta.landmarks[i])
        except DataFormatError as e:
            if not skip_bad_images:
                raise
            log.warning("skipping image: %s", e)
            return None

    try:
        for b, a in enumerate(range(0, n, batch_size)):
            idx = range(a, min(a + batch_size, n))
            crops = list(pool.map(load, idx)) if pool else [load(i) for i in idx]
            good = [j for j, c in enumerate(crops) if c is not None]
            f_all = None
            if good:
                x = to_float(to_uint8_chw(np.stack([crops[j] for j in good]), size).to(device))
                f = _forward(model, x)
                if flip:
                    f = f + _forward(model, x.flip(-1))
                f = f.cpu().numpy()
                dim = f.shape[1]
                f_all = np.full((len(crops), dim), np.nan, np.float32)
                f_all[good] = f
            out.append(f_all if f_all is not None else len(crops))
            if progress_every and (b + 1) % progress_every == 0:
                done = min(a + batch_size, n)
                log.info("IJB-C embedding %d/%d images (%.0f img/s)", done, n,
                         done / max(time.perf_counter() - t0, 1e-9))
    finally:
        model.train(was)
        if pool:
            pool.shutdown()
    if dim is None:
        raise DataFormatError(f"{meta.root / 'loose_crop'}: no image could be read")
    return np.concatenate([o if isinstance(o, np.ndarray) else np.full((o, dim), np.nan,
                                                                         np.float32)
                           for o in out])


def ijbc_dataset_digest(meta: IJBCMeta, skip_missing: bool = False) -> str:
    """Content digest of the meta files and of every crop they list (``fedfr.digest``: size,
    mtime and sampled bytes; every byte with ``FEDFR_VERIFY_DIGESTS=1``), so re-cropped images
    invalidate cached features. A listed crop that is missing raises DataFormatError naming it
    (with ``skip_missing`` it is hashed as missing: it becomes a nan row, see
    ``embed_images_raw``)."""
    h = hashlib.sha256(files_digest([meta.meta_dir / TID_MID, meta.meta_dir / LANDMARKS]).encode())
    crops = meta.root / "loose_crop"
    for name in meta.images:
        path = crops / name
        h.update(name.encode() + b"\0")
        if skip_missing and not path.is_file():
            h.update(b"missing")
            continue
        h.update(file_fingerprint(path, "local", "IJB-C crop listed in the meta files"))
    return h.hexdigest()[:16]


def image_features(model: nn.Module, meta: IJBCMeta, cache: FeatureCache | None = None,
                   flip: bool = True, batch_size: int = 128,
                   device: str | torch.device = "cpu", workers: int = 0,
                   skip_bad_images: bool = False) -> np.ndarray:
    """``embed_images_raw`` through the feature cache (key: model digest, meta files, flip,
    input size, alignment)."""
    settings = {"protocol": "ijbc-raw", "flip": flip,
                "input_size": int(getattr(model, "input_size", 112)),
                "align": "arcface-5pt-112"}
    cache = cache or FeatureCache(None)
    key = FeatureCache.key(model_digest(model), ijbc_dataset_digest(meta, skip_bad_images),
                           settings)
    return cache.get_or_compute(
        key, lambda: embed_images_raw(model, meta, flip, batch_size, device,
                                      workers=workers, skip_bad_images=skip_bad_images),
        {"dataset": str(meta.root), **settings}).astype(np.float32, copy=False)


def process_image_features(raw: np.ndarray, scores: np.ndarray | None,
                           norm_images: bool = False) -> np.ndarray:
    """Optional per-image L2 normalisation, then multiplication by the detector score."""
    f = raw.astype(np.float32, copy=True)
    if norm_images:
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    if scores is not None:
        f *= scores[:, None]
    return f


def template_features(img_feats: np.ndarray, templates: np.ndarray, medias: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Pool image features into templates: mean over the frames of each (template, media),
    sum over a template's media, L2-normalise. -> (sorted unique template ids (T,),
    features (T, d) float32)."""
    order = np.lexsort((medias, templates))
    t, m, f = templates[order], medias[order], img_feats[order].astype(np.float64)
    new_tm = np.concatenate([[True], (t[1:] != t[:-1]) | (m[1:] != m[:-1])])
    starts = np.flatnonzero(new_tm)
    media_sum = np.add.reduceat(f, starts, axis=0)
    media_cnt = np.diff(np.append(starts, t.shape[0]))
    media_mean = media_sum / media_cnt[:, None]
    media_t = t[starts]
    t_starts = np.flatnonzero(np.concatenate([[True], media_t[1:] != media_t[:-1]]))
    tf = np.add.reduceat(media_mean, t_starts, axis=0)
    tf /= np.maximum(np.linalg.norm(tf, axis=1, keepdims=True), 1e-12)
    return media_t[t_starts], tf.astype(np.float32)


def _lookup(tids: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Row of each wanted template id in the sorted ``tids``; DataFormatError naming the first
    id without images."""
    wanted = np.asarray(wanted, dtype=np.int64)
    if tids.shape[0] and 0 <= tids.min() and tids.max() < 64 * max(tids.shape[0], 1 << 20):
        table = np.full(int(tids.max()) + 1, -1, dtype=np.int32)  # dense id -> row table
        table[tids] = np.arange(tids.shape[0], dtype=np.int32)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= table.shape[0]):
            bad = (wanted < 0) | (wanted >= table.shape[0])
            idx = np.zeros(wanted.shape[0], np.int32)
        else:
            idx = table[wanted]  # int32: half the memory traffic of int64 on 15 M pairs
            bad = idx.min() < 0 if idx.size else False
            if bad:
                bad = idx < 0
    else:
        idx = np.clip(np.searchsorted(tids, wanted), 0, max(tids.shape[0] - 1, 0))
        bad = (tids.shape[0] == 0) | (tids[idx] != wanted)
    if np.any(bad):
        w = int(wanted[np.flatnonzero(np.atleast_1d(bad))[0]])
        raise DataFormatError(f"{what}: template {w} has no images")
    return idx


# --- 1:1 ------------------------------------------------------------------------------------
def verify_1to1(tids: np.ndarray, tfeats: np.ndarray, t1: np.ndarray, t2: np.ndarray,
                labels: np.ndarray, fars: Sequence[float] = IJBC_FARS,
                nearest_roc: bool = False) -> tuple[dict[str, float], np.ndarray]:
    """Score every listed template pair and report TAR at each FAR.

    Returns (metrics, scores (P,) float32). Metrics: ``tar@<far>`` by the exact-threshold
    rule, ``tar_roc@<far>`` by insightface's nearest-ROC-point rule if ``nearest_roc``,
    num_genuine, num_impostor."""
    i1 = _lookup(tids, t1, "pair list")
    i2 = _lookup(tids, t2, "pair list")
    scores = pair_scores(tfeats, i1, i2)
    y = labels.astype(bool)
    gen, imp = scores[y], scores[~y]
    out = {level_key("tar", f): v for f, v in tar_at_far(gen, imp, fars).items()}
    if nearest_roc:
        out.update({level_key("tar_roc", f): v
                    for f, v in tar_at_far_nearest_roc(gen, imp, fars).items()})
    out["num_genuine"] = float(gen.shape[0])
    out["num_impostor"] = float(imp.shape[0])
    return out, scores


# --- 1:N ------------------------------------------------------------------------------------
def _subject_gallery(gfeats: np.ndarray, gsubjects: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery templates sorted by subject: (features, subject per column, unique subjects,
    start column of each subject) for subject-level max pooling of scores."""
    order = np.argsort(gsubjects, kind="stable")
    subs = gsubjects[order]
    uniq, starts = np.unique(subs, return_index=True)
    return gfeats[order], uniq, starts


def _subject_scores(probe_chunk: np.ndarray, gal: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(p, n_subjects) score of each probe against each subject: max over its templates."""
    s = probe_chunk @ gal.T
    if starts.shape[0] == gal.shape[0]:
        return s
    return np.maximum.reduceat(s, starts, axis=1)


def identify_open_set(pfeats: np.ndarray, psubjects: np.ndarray, gfeats: np.ndarray,
                      gsubjects: np.ndarray, fpirs: Sequence[float] = IJBC_FPIRS,
                      ranks: Sequence[int] = (1, 5, 10), chunk_size: int = 2048
                      ) -> dict[str, float]:
    """NIST open-set 1:N against ONE gallery. A probe is mated iff its subject is enrolled.
    A subject's score is the max over its gallery templates. rank-r over mated probes; FPIR
    over non-mated probes (exact-threshold rule on their top scores); TPIR = mated probes whose
    top-1 subject is right AND scores above the threshold (``identification_from_matches``)."""
    gal, subs, starts = _subject_gallery(gfeats, gsubjects)
    kmax = min(max(ranks), subs.shape[0])
    top_s = np.empty((pfeats.shape[0], kmax), np.float32)
    top_l = np.empty((pfeats.shape[0], kmax), np.int64)
    for a in range(0, pfeats.shape[0], chunk_size):
        s = _subject_scores(pfeats[a:a + chunk_size], gal, starts)
        part = np.argpartition(-s, kmax - 1, axis=1)[:, :kmax]
        o = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, o, axis=1)
        top_s[a:a + s.shape[0]] = np.take_along_axis(s, idx, axis=1)
        top_l[a:a + s.shape[0]] = subs[idx]
    mated = np.isin(psubjects, subs)
    return identification_from_matches(top_l, top_s, psubjects, mated, list(fpirs),
                                       [r for r in ranks if r <= kmax])


def identify_insightface(pfeats: np.ndarray, psubjects: np.ndarray, gfeats: np.ndarray,
                         gsubjects: np.ndarray, fpirs: Sequence[float] = IJBC_FPIRS,
                         ranks: Sequence[int] = (1, 5, 10), chunk_size: int = 2048
                         ) -> dict[str, float]:
    """insightface's 1:N (closed-set): galleries G1 + G2 merged, so every probe has a mate.

    rank-r = share of probes whose mate subject is among the r best (ties counted in the
    probe's favour). "TPIR at FPIR f": negatives are ALL non-mate (probe, subject) scores;
    the threshold is the ceil(f x #probes)-th largest of them; TPIR = share of probes whose
    mate score exceeds it (top-1 correctness not required). Probes whose subject is not in
    the gallery are left out (counted in num_probes_without_mate)."""
    gal, subs, starts = _subject_gallery(gfeats, gsubjects)
    has = np.isin(psubjects, subs)
    pf, ps = pfeats[has], psubjects[has]
    n = pf.shape[0]
    mate_col = np.searchsorted(subs, ps)
    needs = [max(1, math.ceil(n * f)) for f in fpirs]
    m = max(needs, default=1)
    top_neg = np.empty(0, np.float32)
    mate_s = np.empty(n, np.float32)
    rank_pos = np.empty(n, np.int64)  # number of non-mate subjects scoring above the mate
    for a in range(0, n, chunk_size):
        s = _subject_scores(pf[a:a + chunk_size], gal, starts)
        rows = np.arange(s.shape[0])
        ms = s[rows, mate_col[a:a + s.shape[0]]]
        mate_s[a:a + s.shape[0]] = ms
        rank_pos[a:a + s.shape[0]] = np.count_nonzero(s > ms[:, None], axis=1)
        s[rows, mate_col[a:a + s.shape[0]]] = -np.inf
        flat = s.reshape(-1)
        flat = flat[np.isfinite(flat)]
        cand = np.concatenate([top_neg, flat])
        if cand.shape[0] > m:
            cand = np.partition(cand, cand.shape[0] - m)[cand.shape[0] - m:]
        top_neg = cand
    top_neg = np.sort(top_neg)[::-1]
    out: dict[str, float] = {}
    for r in ranks:
        out[f"rank{r}"] = float(np.mean(rank_pos < r)) if n else math.nan
    for f, k in zip(fpirs, needs, strict=True):
        if n == 0 or k > top_neg.shape[0]:
            out[level_key("tpir", f)] = math.nan
        else:
            out[level_key("tpir", f)] = float(np.count_nonzero(mate_s > top_neg[k - 1])) / n
    out["num_probes"] = float(n)
    out["num_probes_without_mate"] = float(np.count_nonzero(~has))
    return out


def identify_1n(root: Path, tids: np.ndarray, tfeats: np.ndarray,
                fpirs: Sequence[float] = IJBC_FPIRS, ranks: Sequence[int] = (1, 5, 10)
                ) -> dict[str, dict[str, float]]:
    """Both 1:N forms on the NIST lists under ``root``: {"insightface-closed-G1+G2": ...,
    "nist-open-G1": ..., "nist-open-G2": ..., "nist-open-mean": ...}. Raises DataFormatError
    if a list is missing or names a template with no images."""
    paths = {}
    for name in (*GALLERY_FILES, PROBE_FILE):
        p = _find_1n(root, name)
        if p is None:
            raise DataFormatError(f"{root / 'meta' / name}: missing IJB-C 1:N list")
        paths[name] = p
    gals = [read_1n_list(paths[n]) for n in GALLERY_FILES]
    pt, psub = read_1n_list(paths[PROBE_FILE])
    pf = tfeats[_lookup(tids, pt, str(paths[PROBE_FILE]))]
    gfs = [tfeats[_lookup(tids, t, str(paths[n]))]
           for (t, _), n in zip(gals, GALLERY_FILES, strict=True)]
    out: dict[str, dict[str, float]] = {}
    merged_f = np.concatenate(gfs)
    merged_s = np.concatenate([s for _, s in gals])
    out["insightface-closed-G1+G2"] = identify_insightface(pf, psub, merged_f, merged_s, fpirs,
                                                           ranks)
    for (_, gs), gf, tag in zip(gals, gfs, ("G1", "G2"), strict=True):
        out[f"nist-open-{tag}"] = {k: float(v) for k, v in
                                   identify_open_set(pf, psub, gf, gs, fpirs, ranks).items()}
    keys = out["nist-open-G1"].keys()
    out["nist-open-mean"] = {k: float(np.mean([out["nist-open-G1"][k], out["nist-open-G2"][k]]))
                             for k in keys}
    return out


@dataclass
class IJBCResult:
    verification: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray
    identification: dict[str, dict[str, float]] | None


def evaluate_ijbc(model: nn.Module, root: Path | str, cache: FeatureCache | None = None,
                  flip: bool = True, detector_score: bool = True, norm_images: bool = False,
                  fars: Sequence[float] = IJBC_FARS, fpirs: Sequence[float] = IJBC_FPIRS,
                  nearest_roc: bool = False, one_to_n: bool | None = None,
                  batch_size: int = 128, device: str | torch.device = "cpu",
                  workers: int = 0, skip_bad_images: bool = False) -> IJBCResult:
    """The whole IJB-C evaluation of one model (see module doc). ``one_to_n=None`` runs 1:N
    when the three NIST lists are present. With ``skip_bad_images`` unreadable images are left
    out of their templates (counted in ``num_images_skipped``); a template left with no image
    still raises DataFormatError naming it."""
    meta = read_ijbc_meta(root)
    raw = image_features(model, meta, cache, flip, batch_size, device, workers, skip_bad_images)
    ok = ~np.isnan(raw).any(axis=1)
    if not skip_bad_images and not ok.all():
        bad = meta.images[int(np.flatnonzero(~ok)[0])]
        raise DataFormatError(f"{meta.root / 'loose_crop' / bad}: unreadable (recorded in the "
                              f"feature cache by a run with skip_bad_images)")
    feats = process_image_features(raw[ok], meta.scores[ok] if detector_score else None,
                                   norm_images)
    tids, tfeats = template_features(feats, meta.templates[ok], meta.medias[ok])
    ver, scores = verify_1to1(tids, tfeats, meta.pair_t1, meta.pair_t2, meta.pair_label, fars,
                              nearest_roc)
    if one_to_n is None:
        one_to_n = all(_find_1n(meta.root, n) is not None for n in (*GALLERY_FILES, PROBE_FILE))
    ver["num_images_skipped"] = float(np.count_nonzero(~ok))
    ident = identify_1n(meta.root, tids, tfeats, fpirs) if one_to_n else None
    return IJBCResult(ver, scores, meta.pair_label, ident)
