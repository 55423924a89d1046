"""Writers for evaluation results: CSV and markdown tables, ROC-curve PNGs; model loading."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fedfr.checkpoint import safe_load
from fedfr.errors import DataFormatError, first_detail


def _fmt(v: Any, count: bool = False) -> str:
    """Rates with 4 decimals, counts (``count``, or values above 1) as integers, nan as n/a."""
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.0f}" if count or abs(v) > 1.0 else f"{v:.4f}"
    return str(v)


def write_table(rows: Sequence[dict[str, Any]], csv_path: Path, md_path: Path | None = None,
                title: str = "", notes: Sequence[str] = ()) -> str:
    """rows (one dict per line, same keys first-seen order) -> CSV (full precision) and a
    markdown table (4 decimals, n/a for undefined levels). Returns the markdown text."""
    df = pd.DataFrame(list(rows))
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)
    cols = list(df.columns)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c], str(c).startswith("num")) for c in cols)
                     + " |")
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    text = "\n".join(lines) + "\n"
    if md_path is not None:
        md_path.write_text(text)
    return text


def roc_points(scores: np.ndarray, labels: np.ndarray, max_points: int = 2000
               ) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) of the ROC (accept score > t over every distinct threshold), thinned to about
    ``max_points`` points evenly spaced in log FAR."""
    y = labels.astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(~yy)[last]
    far = fp / max(int((~y).sum()), 1)
    tar = tp / max(int(y.sum()), 1)
    if far.shape[0] > max_points:
        pos = far > 0
        grid = np.unique(np.searchsorted(
            far, np.logspace(np.log10(far[pos].min()), 0, max_points)).clip(0, far.shape[0] - 1))
        keep = np.unique(np.concatenate([grid, np.flatnonzero(~pos)[-1:]]))
        far, tar = far[keep], tar[keep]
    return far, tar


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """ROC curves {name: (scores, labels)} -> PNG (TAR against log FAR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, (scores, labels) in curves.items():
        far, tar = roc_points(scores, labels)
        pos = far > 0
        ax.plot(far[pos], tar[pos], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def backbone_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The backbone state_dict inside any fedfr checkpoint: a run's final_model.pt
    (``backbone.*`` keys), a server round (``arrays``), a pre-trained checkpoint
    (``backbone``) or a bare state_dict."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if "arrays" in obj and isinstance(obj["arrays"], dict):
        obj = obj["arrays"]
    if "backbone" in obj and isinstance(obj["backbone"], dict):
        return obj["backbone"]
    pref = {k[len("backbone."):]: v for k, v in obj.items() if k.startswith("backbone.")}
    if pref:
        return pref
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise DataFormatError(f"{path}: no backbone weights found (keys {list(obj)[:5]})")


def run_model_settings(checkpoint: Path) -> dict[str, Any]:
    """model / embedding-size / image-size of the run that wrote ``checkpoint`` (from the
    report.json beside it, or in its parent for round checkpoints); {} if none."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        rep = folder / "report.json"
        if rep.is_file():
            try:
                cfg = json.loads(rep.read_text()).get("config", {})
            except (OSError, ValueError):
                return {}
            return {k: cfg[k] for k in ("model", "embedding-size", "image-size") if k in cfg}
    return {}


def load_model(checkpoint: Path, model: str | None, embedding_size: int | None,
               image_size: int | None) -> nn.Module:
    """Build the backbone (settings from the arguments, else from the run's report.json, else
    small_cnn / 512 / 112) and load the checkpoint's weights into it."""
    from fedfr.digest import require_file
    from fedfr.face.models import get_model

    require_file(checkpoint, "checkpoint")
    found = run_model_settings(checkpoint)
    name = model or found.get("model") or "small_cnn"
    emb = int(embedding_size or found.get("embedding-size") or 512)
    size = int(image_size or found.get("image-size") or 112)
    net = get_model(name, embedding_size=emb, input_size=size)
    state = backbone_state(safe_load(checkpoint), checkpoint)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise DataFormatError(f"{checkpoint}: weights do not fit model {name} (d={emb}, "
                              f"input {size}): {first_detail(e)}") from e
    return net.eval()
