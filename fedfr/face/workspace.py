"""The data of one experiment: the source, the federated split and in-memory image tensors.

A ``Workspace`` is built from a ``Config`` (plus an optional node-local data root) and caches the
decoded, resized uint8 tensors it hands out, so that a process (a Ray actor, a SuperNode) decodes
each image at most once however many rounds or clients it serves.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from fedfr.config import Config, resolve_path
from fedfr.errors import ConfigError
from fedfr.face.data import build_source
from fedfr.face.data.source import FaceSource
from fedfr.face.data.split import FederatedSplit, SplitSpec, make_split

log = logging.getLogger(__name__)


@dataclass
class ClientData:
    """One client's private images. uint8 (n,3,S,S) tensors; labels in 0..K_l-1."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


def split_spec(cfg: Config) -> SplitSpec:
    return SplitSpec(
        num_public_ids=cfg.num_public_ids, num_clients=cfg.num_clients,
        ids_per_client=cfg.ids_per_client, train_per_id=cfg.train_per_id,
        test_per_id=cfg.test_per_id, num_generic_ids=cfg.num_generic_ids,
        public_images_per_id=cfg.public_images_per_id, seed=cfg.seed,
    )


def open_source(cfg: Config, data_root: str | None = None) -> FaceSource:
    """The dataset named by the config (``data_root`` overrides ``data-root``, e.g. per node)."""
    root = data_root or cfg.data_root
    if cfg.dataset == "synthetic":
        total = cfg.num_public_ids + cfg.num_clients * cfg.ids_per_client + cfg.num_generic_ids
        if cfg.synthetic_images_per_id < cfg.train_per_id + cfg.test_per_id:
            raise ConfigError(
                f"config 'synthetic-images-per-id' ({cfg.synthetic_images_per_id}) must be >= "
                f"train-per-id + test-per-id ({cfg.train_per_id + cfg.test_per_id})")
        return build_source("synthetic", num_identities=total,
                            images_per_identity=cfg.synthetic_images_per_id,
                            size=cfg.image_size, seed=cfg.seed,
                            difficulty=cfg.synthetic_difficulty,
                            cache_dir=str(cfg.cache_path / "synthetic"))
    if not Path(root).is_absolute():
        raise ConfigError(f"config 'data-root': expected an absolute path, got {root!r}")
    return build_source(cfg.dataset, root=root)


class Workspace:
    """Source + split + cached tensors of one experiment."""

    def __init__(self, cfg: Config, source: FaceSource, split: FederatedSplit):
        self.cfg, self.source, self.split = cfg, source, split
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def data_digest(self) -> str:
        """The split's digest (identifies the data every image tensor here comes from)."""
        return self.split.digest()

    # ------------------------------------------------------------------------------------------
    def _tensors(self, key: str, indices: list[int], labels: list[int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock:
            if key not in self._cache:
                images = self.source.load_many(indices, self.cfg.image_size)
                self._cache[key] = (images, torch.as_tensor(labels, dtype=torch.long))
            return self._cache[key]

    def public(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D_g: uint8 (N_g,3,S,S) images and public labels (N_g,) in 0..K_g-1."""
        return self._tensors("public", self.split.public, self.split.public_labels)

    def generic(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out identities for the generic protocol: images and labels."""
        return self._tensors("generic", self.split.generic, self.split.generic_labels)

    def client(self, client_id: int) -> ClientData:
        """Private train/test images of client ``client_id`` (0-based partition id)."""
        if not 0 <= client_id < len(self.split.clients):
            raise ConfigError(f"partition-id {client_id} out of range: the split has "
                              f"{len(self.split.clients)} clients")
        part = self.split.clients[client_id]
        tr = self._tensors(f"c{client_id}-train", part.train, part.train_labels)
        te = self._tensors(f"c{client_id}-test", part.test, part.test_labels)
        return ClientData(tr[0], tr[1], te[0], te[1], num_classes=len(part.identities))

    def other_clients_test(self, client_id: int) -> torch.Tensor:
        """Test images of every other client's identities (impostors / non-mated probes)."""
        chunks = [self.client(c).test_images for c in range(len(self.split.clients))
                  if c != client_id]
        if not chunks:
            return torch.empty(0, 3, self.cfg.image_size, self.cfg.image_size, dtype=torch.uint8)
        return torch.cat(chunks)


_WORKSPACES: dict[tuple, Workspace] = {}
_WS_LOCK = threading.Lock()


def open_workspace(cfg: Config, data_root: str | None = None,
                   manifest: str | Path | None = None) -> Workspace:
    """The experiment's workspace, cached per process by its data settings.

    If ``manifest`` names an existing split manifest it is loaded and checked against the source
    (a mismatch is an error naming the file); otherwise the split is made from the config.
    """
    data_keys = ("seed", "dataset", "data-root", "image-size", "synthetic-images-per-id",
                 "synthetic-difficulty", "num-public-ids", "num-clients", "ids-per-client",
                 "train-per-id", "test-per-id", "num-generic-ids", "public-images-per-id",
                 "cache-dir", "split-manifest")
    if manifest is None and cfg.split_manifest:
        manifest = resolve_path(cfg.split_manifest)
        if not manifest.is_file():
            raise ConfigError(f"config 'split-manifest': {manifest} not found (write it with "
                              "`fedfr split`)")
    d = cfg.to_dict()
    key = tuple(d[k] for k in data_keys) + (data_root, str(manifest) if manifest else None)
    with _WS_LOCK:
        if key in _WORKSPACES:
            return _WORKSPACES[key]
    source = open_source(cfg, data_root)
    if manifest is not None and Path(manifest).exists():
        split = FederatedSplit.load(manifest)
        split.check_source(source)
        if cfg.num_clients and len(split.clients) != cfg.num_clients:
            raise ConfigError(f"{manifest}: the split has {len(split.clients)} clients but the run "
                              f"has num-clients = {cfg.num_clients} (or that many nodes)")
    else:
        split = make_split(source, split_spec(cfg))
    ws = Workspace(cfg, source, split)
    with _WS_LOCK:
        _WORKSPACES[key] = ws
    return ws
