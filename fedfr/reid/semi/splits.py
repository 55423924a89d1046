"""Identity-disjoint labelled / unlabelled splits of a re-ID training set, saved as manifests.

The thesis (Sec. 3.4.2, after [113, 114]) splits the *training identities* by a ratio: 1/3, 1/6
or 1/12 of them keep their labels, the rest (and all their images) are unlabelled; a fourth
setting labels 50 identities. Seeds and split files are not given, so ours are drawn with a
seeded permutation of the sorted training pids and written down as JSON manifests.

Number of labelled identities: ``round(ratio * C)`` (Market 751 / 6 -> 125, as the text's
"about 125"; 751 / 12 -> 63 where the text says "only 60"), at least 1 and at most C - 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.records import ReidImage, ReidSplit

#: the thesis's settings: name -> ratio of labelled identities, or an int = that many identities
SETTINGS: dict[str, Fraction | int] = {"1/3": Fraction(1, 3), "1/6": Fraction(1, 6),
                                       "1/12": Fraction(1, 12), "50id": 50}
MANIFEST_VERSION = 1


@dataclass
class SemiSplit:
    """Which training identities are labelled. pids are the dataset's own identity numbers."""

    dataset: str
    setting: str
    seed: int
    labelled_pids: list[int]
    unlabelled_pids: list[int]
    num_labelled_images: int
    num_unlabelled_images: int
    split_digest: str = ""

    def parts(self, train: list[ReidImage]) -> tuple[list[ReidImage], list[ReidImage]]:
        """(labelled records, unlabelled records) of ``train``, in its order; DataFormatError if
        ``train`` has a pid the manifest does not name (a different training set)."""
        lab, unl = set(self.labelled_pids), set(self.unlabelled_pids)
        xl, xu = [], []
        for r in train:
            if r.pid in lab:
                xl.append(r)
            elif r.pid in unl:
                xu.append(r)
            else:
                raise DataFormatError(f"semi split of {self.dataset} ({self.setting}, seed "
                                      f"{self.seed}): training pid {r.pid} ({r.path}) is in "
                                      f"neither part (expected the manifest's training set)")
        return xl, xu

    def to_json(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, **asdict(self)}


def num_labelled(setting: str, num_ids: int) -> int:
    """Labelled identities for ``setting`` ("1/3", "1/6", "1/12", "50id", or "k/n", "<n>id")."""
    if num_ids < 2:
        raise ConfigError(f"semi split: need at least 2 training identities, got {num_ids}")
    value = SETTINGS.get(setting)
    if value is None:
        try:
            value = int(setting[:-2]) if setting.endswith("id") else Fraction(setting)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"semi split setting {setting!r}: expected one of "
                              f"{sorted(SETTINGS)}, a fraction 'k/n' or '<n>id'") from None
    if isinstance(value, int) and not isinstance(value, Fraction):
        n = value
    else:
        if not 0 < value < 1:
            raise ConfigError(f"semi split setting {setting!r}: ratio must be in (0, 1)")
        n = int(round(float(value) * num_ids))
    if not 1 <= n < num_ids:
        n = min(max(n, 1), num_ids - 1)
    return n


def make_semi_split(split: ReidSplit, setting: str, seed: int = 0,
                    digest: str = "") -> SemiSplit:
    """Draw the labelled identities of ``split.train`` with ``np.random.default_rng(seed)``
    (a permutation of the sorted pids; the first ``num_labelled`` are labelled)."""
    pids = sorted({r.pid for r in split.train})
    n = num_labelled(setting, len(pids))
    order = np.random.default_rng(seed).permutation(len(pids))
    lab = sorted(pids[i] for i in order[:n])
    unl = sorted(pids[i] for i in order[n:])
    labs = set(lab)
    nl = sum(r.pid in labs for r in split.train)
    return SemiSplit(split.name, setting, int(seed), lab, unl, nl, len(split.train) - nl,
                     digest or str(split.meta.get("digest", "")))


def save_manifest(semi: SemiSplit, path: str | Path) -> Path:
    """Write ``semi`` as JSON (sorted keys) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(semi.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def load_manifest(path: str | Path) -> SemiSplit:
    """Read a manifest written by ``save_manifest``; DataFormatError naming the file and key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read a semi-split manifest ({exc})") from None
    version = data.get("version") if isinstance(data, dict) else type(data).__name__
    if version != MANIFEST_VERSION:
        raise DataFormatError(f"{path}: expected a semi-split manifest version "
                              f"{MANIFEST_VERSION}, got {version!r}")
    keys = ("dataset", "setting", "seed", "labelled_pids", "unlabelled_pids",
            "num_labelled_images", "num_unlabelled_images")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataFormatError(f"{path}: semi-split manifest lacks key(s) {missing}")
    semi = SemiSplit(**{k: data[k] for k in (*keys, "split_digest") if k in data})
    overlap = set(semi.labelled_pids) & set(semi.unlabelled_pids)
    if overlap:
        raise DataFormatError(f"{path}: labelled and unlabelled pids overlap "
                              f"({sorted(overlap)[:5]}...); expected identity-disjoint parts")
    return semi


def semi_splits(split: ReidSplit, settings: tuple[str, ...] = tuple(SETTINGS),
                seeds: tuple[int, ...] = (0,), out_dir: str | Path | None = None
                ) -> dict[tuple[str, int], SemiSplit]:
    """Every (setting, seed) split of ``split``; with ``out_dir``, each saved as
    ``<dataset>-<setting with / as of>-seed<seed>.json``."""
    out: dict[tuple[str, int], SemiSplit] = {}
    for setting in settings:
        for seed in seeds:
            semi = make_semi_split(split, setting, seed)
            out[(setting, seed)] = semi
            if out_dir is not None:
                save_manifest(semi, Path(out_dir) / manifest_name(semi))
    return out


def manifest_name(semi: SemiSplit) -> str:
    return f"{semi.dataset}-{semi.setting.replace('/', 'of')}-seed{semi.seed}.json"
