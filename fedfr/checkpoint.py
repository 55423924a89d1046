"""Checkpoints: the pre-trained model (Theta_g^0, Phi_g^0) and the server's per-round state.

Files are written atomically (temporary file + rename), so a run killed while saving never
leaves a half-written checkpoint, and loaded with ``weights_only=True`` (no pickled code).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from fedfr.errors import DataFormatError


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def safe_load(path: Path) -> Any:
    """torch.load with weights_only; a corrupt file raises DataFormatError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling/zip failure means a bad file
        raise DataFormatError(f"{path}: not a readable fedfr checkpoint ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0].split('. ')[0][:100]}); expected "
                              "a file written by torch.save") from e


def digest_of(obj: Any) -> str:
    """16-hex sha256 of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- pre-trained model ----------------------------------------------------------------------
def save_pretrained(path: Path, backbone: dict[str, torch.Tensor], phi: torch.Tensor,
                    meta: dict[str, Any]) -> None:
    atomic_save({"backbone": backbone, "phi": phi, "meta": meta}, path)


def load_pretrained(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """(backbone state_dict, Phi_g^0 (K_g,d), meta) from a pre-trained checkpoint."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or not {"backbone", "phi"} <= set(ckpt) \
            or not isinstance(ckpt["backbone"], dict) or not torch.is_tensor(ckpt["phi"]):
        raise DataFormatError(f"{path}: expected a dict with 'backbone' (a state dict) "
                              f"and 'phi' (a tensor) (a fedfr pre-trained checkpoint)")
    return ckpt["backbone"], ckpt["phi"], ckpt.get("meta", {})


# --- server rounds --------------------------------------------------------------------------
_ROUND_RE = re.compile(r"round-(\d+)\.pt$")


def round_path(folder: Path, server_round: int) -> Path:
    return folder / f"round-{server_round:04d}.pt"


def save_round(folder: Path, server_round: int, arrays: dict[str, torch.Tensor],
               state: dict[str, Any], keep: int = 2) -> Path:
    """Save the global arrays and the server state after ``server_round``; keep the newest."""
    path = round_path(folder, server_round)
    atomic_save({"round": server_round, "arrays": arrays, "state": state}, path)
    for old in sorted(folder.glob("round-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_round(folder: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(round, arrays, state) of the newest readable checkpoint in ``folder``, or None."""
    found = []
    for p in folder.glob("round-*.pt"):
        m = _ROUND_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    for rnd, p in sorted(found, reverse=True):
        try:
            ckpt = safe_load(p)
        except DataFormatError:
            continue  # a corrupt newest file: fall back to the previous round
        if not isinstance(ckpt, dict) or not {"arrays", "state"} <= set(ckpt):
            raise DataFormatError(f"{p}: expected a round checkpoint with 'arrays' and 'state' "
                                  "(written by the server); move it away or set resume=false")
        return rnd, ckpt["arrays"], ckpt["state"]
    return None
