"""Per-node data export: one folder per client holding only what that client may see.

A client's folder (``<out_dir>/client-NNNN``) holds its private partition (``train``, ``test``:
images with local labels 0..K_l-1), a copy of the public set D_g (``public``: labels 0..K_g-1)
and ``node.json``, a small manifest. Nothing of the other clients and nothing of the generic
evaluation identities is written there (those stay with the server). A SuperNode started with
``--node-config "data-dir='<folder>'"`` opens only this folder (``fedfr/node_data.py``).

Formats: ``recordio`` (``<part>.rec`` + ``<part>.idx``, insightface layout, one file pair per
part) or ``folder`` (``<part>/<label>/<n>.png``). Images are written losslessly (PNG) at the
source's resolution in split order, so a node decodes exactly the pixels the whole-dataset path
decodes and simulation and deployment train on identical tensors.

node.json::

    {"kind": "fedfr-node-data", "version": 1, "client-id": 3, "num-clients": 40,
     "format": "recordio", "split-digest": "...", "source-digest": "...", "spec": {...SplitSpec},
     "parts": {"train": {"path": "train.rec", "num-images": 6000, "num-identities": 100}, ...}}
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedfr.checkpoint import atomic_write_text
from fedfr.errors import ConfigError
from fedfr.face.data.recordio import RecordIOWriter, encode_image
from fedfr.face.data.source import FaceSource
from fedfr.face.data.split import FederatedSplit

NODE_MANIFEST = "node.json"
NODE_KIND = "fedfr-node-data"
NODE_VERSION = 1
PARTS = ("train", "test", "public")
FORMATS = ("recordio", "folder")


def client_dir_name(client_id: int) -> str:
    return f"client-{client_id:04d}"


def part_path(fmt: str, part: str) -> str:
    """Relative path of a part inside a node folder."""
    return f"{part}.rec" if fmt == "recordio" else part


def _write_part(source: FaceSource, indices: list[int], labels: list[int], dest: Path,
                fmt: str) -> None:
    """Write images ``indices`` with ``labels`` (in this order) as ``dest`` (.rec or folder)."""
    if fmt == "recordio":
        with RecordIOWriter(dest, dest.with_suffix(".idx"), fmt="png") as w:
            w.write_header(len(indices), len(set(labels)))
            for key, (i, y) in enumerate(zip(indices, labels, strict=True), 1):
                w.write(key, float(y), source.load(i))
        return
    dest.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(indices))))
    for n, (i, y) in enumerate(zip(indices, labels, strict=True)):
        folder = dest / f"{int(y):05d}"
        folder.mkdir(exist_ok=True)
        (folder / f"{n:0{width}d}.png").write_bytes(encode_image(source.load(i), "png"))


def _copy_part(src_dir: Path, dst_dir: Path, fmt: str, part: str) -> None:
    rel = part_path(fmt, part)
    if fmt == "recordio":
        for suffix in (".rec", ".idx"):
            src, dst = (src_dir / rel).with_suffix(suffix), (dst_dir / rel).with_suffix(suffix)
            shutil.copyfile(src, dst)
    else:
        shutil.copytree(src_dir / rel, dst_dir / rel)


def export_node_data(source: FaceSource, split: FederatedSplit, out_dir: str | Path,
                     fmt: str = "recordio", clients: list[int] | None = None) -> list[Path]:
    """Write one folder per client (``clients``: ids to export, default all); return them.

    Each folder holds the client's train/test partition, the public set and ``node.json``.
    An existing client folder is replaced. Raises ConfigError for an unknown format or client.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r}: expected one of {FORMATS}")
    split.check_source(source)
    ids = list(range(len(split.clients))) if clients is None else [int(c) for c in clients]
    bad = [c for c in ids if not 0 <= c < len(split.clients)]
    if bad:
        raise ConfigError(f"export: client ids {bad} (--clients) out of range; the split has "
                          f"{len(split.clients)} clients (0..{len(split.clients) - 1})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    public_done: Path | None = None
    for cid in ids:
        part = split.clients[cid]
        final = out / client_dir_name(cid)
        tmp = out / f".{client_dir_name(cid)}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        groups = {"train": (part.train, part.train_labels), "test": (part.test, part.test_labels),
                  "public": (split.public, split.public_labels)}
        parts = {}
        for name, (indices, labels) in groups.items():
            if indices:
                if name == "public" and public_done is not None:
                    _copy_part(public_done, tmp, fmt, name)
                else:
                    _write_part(source, indices, labels, tmp / part_path(fmt, name), fmt)
            parts[name] = {"path": part_path(fmt, name), "num-images": len(indices),
                           "num-identities": int(len(np.unique(labels))) if labels else 0}
        manifest = {
            "kind": NODE_KIND, "version": NODE_VERSION, "client-id": cid,
            "num-clients": len(split.clients), "format": fmt,
            "split-digest": split.digest(), "source-digest": split.source_digest,
            "spec": asdict(split.spec), "parts": parts,
        }
        atomic_write_text(json.dumps(manifest, indent=1) + "\n", tmp / NODE_MANIFEST)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if split.public:
            public_done = final
        written.append(final)
    return written
