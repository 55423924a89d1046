"""A node's own data: the folder ``fedfr export`` wrote for one client
(``fedfr/face/data/export.py``).

``NodeWorkspace`` offers the part of ``Workspace``'s interface a client needs (``client``,
``public``) but reads only the node's folder: its own partition and the public set. Asking for
anything else (another partition, other clients' test images) is an error, never a silent
fallback to a shared dataset.

``check_node_dir`` validates a folder up front (exists, manifest readable, right partition, part
files present, split settings agree with the run config); its errors name the path and what was
expected, so a SuperNode with a wrong ``data-dir`` fails at its first message with one clear line.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedfr.config import Config
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.export import FORMATS, NODE_KIND, NODE_MANIFEST, NODE_VERSION, PARTS
from fedfr.face.data.folder import ImageFolderSource
from fedfr.face.data.recordio import RecordIOSource
from fedfr.face.data.source import FaceSource
from fedfr.face.workspace import ClientData, split_spec

EXPECTED = ("the folder `fedfr export` wrote for this client (node.json plus train, test and "
            "public parts)")


class NodeDataError(ConfigError):
    """The node's data directory is missing, of another client, or does not match the config."""


def check_node_dir(data_dir: str | Path, partition_id: int | None = None,
                   cfg: Config | None = None) -> dict[str, Any]:
    """The node manifest of ``data_dir`` after checking it; NodeDataError naming what is wrong.

    ``partition_id``: the node-config's partition id (must be the exported client's).
    ``cfg``: the run config; its split settings must be the ones the folder was exported with.
    """
    root = Path(data_dir)
    if not root.is_absolute():
        raise NodeDataError(f"node-config data-dir {str(data_dir)!r}: expected an absolute path "
                            f"to {EXPECTED}")
    if not root.exists():
        raise NodeDataError(f"node-config data-dir {root}: no such directory; expected {EXPECTED}")
    if not root.is_dir():
        raise NodeDataError(f"node-config data-dir {root}: is not a directory; expected {EXPECTED}")
    mpath = root / NODE_MANIFEST
    if not mpath.is_file():
        raise NodeDataError(f"{mpath}: node manifest not found; data-dir should be {EXPECTED}")
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NodeDataError(f"{mpath}: unreadable node manifest ({exc}); expected the JSON "
                            "written by `fedfr export`") from exc
    if not isinstance(doc, dict) or doc.get("kind") != NODE_KIND:
        raise NodeDataError(f"{mpath}: not a fedfr node manifest (kind "
                            f"{doc.get('kind') if isinstance(doc, dict) else None!r}, "
                            f"expected {NODE_KIND!r})")
    if doc.get("version") != NODE_VERSION:
        raise NodeDataError(f"{mpath}: node manifest version {doc.get('version')!r}, expected "
                            f"{NODE_VERSION}")
    try:
        cid, fmt, parts = int(doc["client-id"]), str(doc["format"]), dict(doc["parts"])
        for name in PARTS:
            int(parts[name]["num-images"])
            str(parts[name]["path"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeDataError(f"{mpath}: malformed node manifest ({type(exc).__name__}: {exc}); "
                            "expected client-id, format and parts train/test/public") from exc
    if fmt not in FORMATS:
        raise NodeDataError(f"{mpath}: format {fmt!r}, expected one of {FORMATS}")
    if partition_id is not None and cid != int(partition_id):
        raise NodeDataError(f"node-config partition-id={partition_id} but data-dir {root} holds "
                            f"client {cid}'s partition; give each SuperNode its own folder")
    for name in PARTS:
        if int(parts[name]["num-images"]) == 0:
            continue
        p = root / parts[name]["path"]
        missing = [q for q in ((p, p.with_suffix(".idx")) if fmt == "recordio" else (p,))
                   if not q.exists()]
        if missing:
            raise NodeDataError(f"{missing[0]}: missing {name} part of {root} ({fmt}); "
                                f"expected {EXPECTED}")
    if cfg is not None:
        want = asdict(split_spec(cfg))
        have = dict(doc.get("spec") or {})
        diff = sorted(k for k in want if k in have and have[k] != want[k])
        if diff:
            raise NodeDataError(
                f"{mpath}: exported for split settings "
                f"{ {k: have[k] for k in diff} }, but the run config has "
                f"{ {k: want[k] for k in diff} }; re-export or run with the export's settings")
    return doc


def _load_part(root: Path, fmt: str, info: dict[str, Any], size: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 (n,3,size,size) images, int64 (n,) labels) of one exported part."""
    n = int(info["num-images"])
    if n == 0:
        return (torch.empty(0, 3, size, size, dtype=torch.uint8),
                torch.empty(0, dtype=torch.long))
    path = root / info["path"]
    src: FaceSource = RecordIOSource(path) if fmt == "recordio" else \
        ImageFolderSource(path, skip_converted=False)
    if len(src) != n:
        raise DataFormatError(f"{path}: {len(src)} images, the node manifest says {n}")
    try:  # identity names are the exported labels (folder names / RecordIO label values)
        names = np.asarray([int(float(x)) for x in src.identity_names], dtype=np.int64)
    except ValueError as exc:
        raise DataFormatError(f"{path}: identity names {src.identity_names[:3]}... are not the "
                              "integer labels `fedfr export` writes") from exc
    labels = torch.as_tensor(names[np.asarray(src.labels)], dtype=torch.long)
    images = src.load_many(range(n), size)
    if isinstance(src, RecordIOSource):
        src.close()
    return images, labels


class NodeWorkspace:
    """One node's exported data (own partition + public set), decoded once and cached."""

    def __init__(self, cfg: Config, data_dir: str | Path, partition_id: int):
        self.cfg, self.root = cfg, Path(data_dir)
        self.manifest = check_node_dir(self.root, partition_id, cfg)
        self.partition_id = int(partition_id)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def data_digest(self) -> str:
        """The digest of the split this folder was exported from (same as the whole-data
        workspace's), e.g. to key features computed on the public set."""
        return str(self.manifest["split-digest"])

    def _part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = _load_part(self.root, self.manifest["format"],
                                               self.manifest["parts"][name], self.cfg.image_size)
            return self._cache[name]

    def public(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D_g: uint8 (N_g,3,S,S) images and labels (N_g,) in 0..K_g-1."""
        return self._part("public")

    def client(self, client_id: int) -> ClientData:
        """This node's train/test images (``client_id`` must be the node's own)."""
        if int(client_id) != self.partition_id:
            raise NodeDataError(f"{self.root}: holds client {self.partition_id}'s data only, "
                                f"client {client_id}'s was asked for")
        tr, te = self._part("train"), self._part("test")
        k = int(self.manifest["parts"]["train"]["num-identities"])
        return ClientData(tr[0], tr[1], te[0], te[1], num_classes=k)

    def other_clients_test(self, client_id: int) -> torch.Tensor:
        raise NodeDataError(
            f"{self.root}: a node holds no other client's images, so the personalised protocol's "
            "impostors cannot be other clients' test images here; run with "
            "personal-impostors='public' (impostors drawn from the public set D_g)")


_NODES: dict[tuple, NodeWorkspace] = {}
_NODES_LOCK = threading.Lock()


def open_node_workspace(cfg: Config, data_dir: str | Path, partition_id: int) -> NodeWorkspace:
    """The node's workspace, cached per process (by folder, partition and image size)."""
    mpath = Path(data_dir) / NODE_MANIFEST
    stamp = mpath.stat().st_mtime_ns if mpath.exists() else None
    key = (str(data_dir), int(partition_id), cfg.image_size, stamp,
           tuple(sorted(asdict(split_spec(cfg)).items())))
    with _NODES_LOCK:
        if key in _NODES:
            return _NODES[key]
    ws = NodeWorkspace(cfg, data_dir, partition_id)
    with _NODES_LOCK:
        _NODES[key] = ws
    return ws
