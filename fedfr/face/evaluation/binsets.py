"""Verification ``.bin`` sets (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW) in insightface's format.

A ``.bin`` file is a pickle of ``(bins, issame)``: ``bins`` a list of 2N encoded images (JPEG/PNG
bytes, already aligned 112 x 112 crops) and ``issame`` a list of N booleans; pair i is images
2i and 2i+1. Reported: 10-fold accuracy (threshold chosen on the other 9 folds) and TAR at FAR
(exact-threshold rule over the N_neg different-identity pairs).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from fedfr.digest import require_file
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.transforms import to_uint8_chw
from fedfr.face.evaluation.cache import FeatureCache, files_digest, model_digest
from fedfr.face.evaluation.features import embed
from fedfr.face.evaluation.metrics import level_key, tar_at_far

BIN_FARS = (1e-3, 1e-2, 1e-1)


def load_bin(path: Path | str, image_size: int = 112) -> tuple[torch.Tensor, np.ndarray]:
    """(images uint8 (2N, 3, S, S), issame bool (N,)) from a .bin file; DataFormatError naming
    the file (and the image index) if it is not a (bins, issame) pickle of decodable images."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: verification .bin file not found")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")  # noqa: S301 - a local data file by design
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataFormatError(f"{path}: not a pickled (bins, issame) .bin file ({e})") from e
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(f"{path}: expected a pickled pair (bins, issame), got "
                              f"{type(obj).__name__}")
    bins, issame = obj
    issame = np.asarray(list(issame), dtype=bool)
    if len(bins) != 2 * issame.shape[0] or issame.shape[0] == 0:
        raise DataFormatError(f"{path}: {len(bins)} images for {issame.shape[0]} pairs; "
                              "expected 2 images per pair")
    images = []
    for i, b in enumerate(bins):
        if isinstance(b, np.ndarray):
            b = b.tobytes()
        if not isinstance(b, (bytes, bytearray)):
            raise DataFormatError(f"{path}: image {i}: expected encoded bytes, got "
                                  f"{type(b).__name__}")
        try:
            img = np.array(Image.open(io.BytesIO(b)).convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise DataFormatError(f"{path}: image {i} cannot be decoded ({e})") from e
        images.append(to_uint8_chw(img[None], image_size)[0])
    return torch.stack(images), issame


def _best_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    """Threshold maximising accuracy (accept score > t) over the candidates: below the lowest
    score and the midpoints between consecutive distinct scores; the lowest on ties."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], issame[order]
    uniq_end = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of each value
    # threshold just above value v_j: rejects every score <= v_j
    neg_rej = np.cumsum(~y)[uniq_end]  # negatives rejected
    pos_rej = np.cumsum(y)[uniq_end]
    n_pos = int(y.sum())
    correct = np.concatenate([[n_pos], neg_rej + (n_pos - pos_rej)])
    j = int(np.argmax(correct))
    if j == 0:
        return float(s[0]) - 1.0
    v = s[uniq_end[j - 1]]
    nxt = s[uniq_end[j]] if j < uniq_end.shape[0] else v + 1.0
    return float((v + nxt) / 2.0)


def kfold_accuracy(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10
                   ) -> tuple[float, float, list[float]]:
    """Accuracy by k-fold cross-validation: pairs split into ``n_folds`` contiguous folds
    (sizes as ``np.array_split``), the threshold chosen on the other folds and applied to the
    held-out one. Returns (mean, std, per-fold accuracies)."""
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if scores.shape != issame.shape or scores.ndim != 1:
        raise ValueError(f"kfold_accuracy: scores {scores.shape} and issame {issame.shape} "
                         "must be equal 1-D")
    if not (2 <= n_folds <= scores.shape[0]):
        raise ConfigError(f"kfold_accuracy: folds (--folds) must be in 2..#pairs "
                          f"({scores.shape[0]}), got {n_folds}")
    folds = np.array_split(np.arange(scores.shape[0]), n_folds)
    accs = []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        t = _best_threshold(scores[train], issame[train])
        accs.append(float(np.mean((scores[test] > t) == issame[test])))
    return float(np.mean(accs)), float(np.std(accs)), accs


def bin_scores(feats: np.ndarray) -> np.ndarray:
    """Cosine of each consecutive pair (2i, 2i+1) of L2-normalised features (2N, d) -> (N,)."""
    return np.einsum("ij,ij->i", feats[0::2], feats[1::2]).astype(np.float32)


def bin_metrics(scores: np.ndarray, issame: np.ndarray, fars: Sequence[float] = BIN_FARS,
                n_folds: int = 10) -> dict[str, float]:
    """accuracy (mean of the k folds), accuracy_std, tar@<far> (nan where far * N_neg < 1)."""
    mean, std, _ = kfold_accuracy(scores, issame, n_folds)
    out = {"accuracy": mean, "accuracy_std": std}
    tars = tar_at_far(scores[issame], scores[~issame], fars)
    out.update({level_key("tar", f): v for f, v in tars.items()})
    out["num_genuine"] = float(issame.sum())
    out["num_impostor"] = float((~issame).sum())
    return out


def evaluate_bin(model: nn.Module, path: Path | str, cache: FeatureCache | None = None,
                 flip: bool = True, batch_size: int = 128, fars: Sequence[float] = BIN_FARS,
                 device: str | torch.device = "cpu", n_folds: int = 10
                 ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Embed a .bin set (features of image + mirror summed, L2-normalised, as insightface's
    verification script) through the cache; returns (metrics, scores (N,), issame (N,))."""
    path = Path(path)
    size = int(getattr(model, "input_size", 112))
    settings = {"protocol": "bin", "flip": flip, "input_size": size}
    cache = cache or FeatureCache(None)
    require_file(path, "verification .bin file")  # before hashing it
    key = FeatureCache.key(model_digest(model), files_digest([path]), settings)
    issame_holder: dict[str, np.ndarray] = {}

    def compute() -> np.ndarray:
        images, issame = load_bin(path, size)
        issame_holder["v"] = issame
        return embed(model, images, batch_size=batch_size, flip=flip,
                     device=device).numpy()

    feats = cache.get_or_compute(key, compute, {"dataset": str(path), **settings})
    issame = issame_holder.get("v")
    if issame is None:
        issame = read_issame(path)
    if feats.shape[0] != 2 * issame.shape[0]:
        raise DataFormatError(f"{path}: cached features ({feats.shape[0]}) do not match "
                              f"{issame.shape[0]} pairs")
    scores = bin_scores(feats)
    return bin_metrics(scores, issame, fars, n_folds), scores, issame


def read_issame(path: Path) -> np.ndarray:
    """Only the issame list of a .bin file (the images stay undecoded)."""
    with open(path, "rb") as f:
        _, issame = pickle.load(f, encoding="bytes")  # noqa: S301
    return np.asarray(list(issame), dtype=bool)

