"""Sec. 7.7's federation of re-ID datasets: clients, unseen (generic) sets and the public set.

Each client is one dataset (its train part trains, its query / gallery is that client's
personalised test); the unseen datasets' query / gallery are the generic test; the public
dataset (all of its images, train and test identities) serves pre-training, FedFR's hard
negatives and the shared class matrix Phi_g. Datasets are named as in the reader registry
(``fedfr.reid.data.registry``): real ones are read under ``data-root``; the synthetic domains
(``synth-*``) are rendered once into ``<cache-dir>/reid-synthetic`` at the run's image size.

Images are decoded and resized once per process into uint8 (3, H, W) tensors (``image_tensor``).

``FederationWorkspace`` and ``ReidFederatedSplit`` (roles, the per-process set cache, node folders
and their export, ``split.json``) serve the video federation too (``fedfr.reid.video.workspace``
subclasses them for tracklet sets).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from fedfr.checkpoint import atomic_write_text
from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.face.data.export import NODE_MANIFEST
from fedfr.node_data import NodeDataError
from fedfr.reid.data.records import ReidImage, ReidSplit

SYNTHETIC_PREFIX = "synth-"


def names(value: str, key: str) -> list[str]:
    """A comma-separated dataset list of the run config -> names (ConfigError if empty)."""
    out = [n.strip() for n in value.split(",") if n.strip()]
    if not out:
        raise ConfigError(f"config '{key}': expected a comma-separated list of re-ID datasets, "
                          f"got {value!r}")
    return out


def split_options(name: str, split_id: int, seed: int) -> dict[str, Any]:
    """``split_id`` (and ``seed``) for a reader that draws random splits; {} for the others."""
    import inspect

    from fedfr.reid.data.registry import registered_reader

    reader = registered_reader(name)
    params = inspect.signature(reader).parameters if reader is not None else {}
    if "split_id" not in params:
        return {}
    return {"split_id": split_id, **({"seed": seed} if "seed" in params else {})}


def num_splits(name: str) -> int:
    """1 for a dataset with a fixed split; else the protocol's 10 random splits."""
    return 1 if name.startswith(SYNTHETIC_PREFIX) or not split_options(name, 0, 0) else 10


def synthetic_options(cfg: Config, name: str) -> dict[str, Any]:
    """The generator options of the synthetic domain ``name`` in this run (seed, image size,
    identities: the public domain has twice the clients')."""
    opts: dict[str, Any] = {"seed": cfg.seed, "height": cfg.reid_height, "width": cfg.reid_width}
    if cfg.reid_synthetic_ids:
        opts["num_ids"] = cfg.reid_synthetic_ids * (2 if name == "synth-public" else 1)
    return opts


def read_dataset(cfg: Config, name: str, data_root: str | None = None,
                 node_dir: str | Path | None = None, split_id: int = 0) -> ReidSplit:
    """One dataset of the federation: a synthetic domain (rendered into the cache at
    ``reid-height`` x ``reid-width``) or a registered real dataset under ``data-root``.
    ``node_dir``: a node's own folder (``export_reid_nodes``), which holds both kinds."""
    from fedfr.reid.data.registry import get_dataset

    if name.startswith(SYNTHETIC_PREFIX):
        base = Path(node_dir) if node_dir is not None else cfg.cache_path
        return get_dataset(name, base / "reid-synthetic", **synthetic_options(cfg, name))
    opts = split_options(name, split_id, cfg.seed)
    if node_dir is not None:
        return get_dataset(name, Path(node_dir) / "data", **opts)
    root = data_root or cfg.data_root
    if not root:
        raise ConfigError(f"config 'data-root': required to read the real re-ID dataset "
                          f"{name!r} (the folder that holds its own folder, torchreid's layout)")
    if not Path(root).is_absolute():
        raise ConfigError(f"config 'data-root': expected an absolute path, got {root!r}")
    return get_dataset(name, root, **opts)


def relative_name(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` (its file name where it lies elsewhere)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def parts_digest(split: Any, line: Callable[[Any, Path], str]) -> str:
    """16 hex digits over a split's train / query / gallery records, one ``line(record, root)``
    each: the same wherever the copy lives when the lines name files relative to ``root``."""
    h = hashlib.sha256()
    for part in ("train", "query", "gallery"):
        h.update(part.encode())
        for r in getattr(split, part):
            h.update(line(r, Path(split.root)).encode())
    return h.hexdigest()[:16]


def records_digest(split: ReidSplit) -> str:
    """16 hex digits over a dataset's train / query / gallery records (relative path, pid,
    camera): the same wherever the copy lives."""
    return parts_digest(split,
                        lambda r, root: f"{relative_name(r.path, root)}|{r.pid}|{r.camid}\n")


@dataclass(frozen=True)
class ClientDataset:
    """A client's dataset as the server knows it: its name and what determines its data, never
    its records (images and labels stay on the client's node; the server does not open them)."""

    name: str
    source: dict[str, Any]

    @classmethod
    def of(cls, cfg: Config, name: str) -> ClientDataset:
        if name.startswith(SYNTHETIC_PREFIX):
            from fedfr.reid.data.synthetic import make_spec

            spec = make_spec(name, **synthetic_options(cfg, name))
            return cls(name, {"generator": "synthetic", "spec-digest": spec.digest()})
        return cls(name, {"reader": name})

    def content(self) -> dict[str, Any]:
        return {"name": self.name, "held-by": "client", **self.source}


@dataclass
class ReidFederatedSplit:
    """Which dataset plays which role; saved as ``split.json`` next to the report. The server
    holds the public and the unseen sets (records digests and summaries); a client's dataset is
    named with what determines it (``ClientDataset``), since it lives on the client's node."""

    clients: list[ClientDataset]
    unseen: list[ReidSplit]
    public: ReidSplit
    #: the ``task`` it is written for; the digest of one set's records
    task: ClassVar[str] = "reid"
    records_digest: ClassVar[Callable[[Any], str]] = staticmethod(records_digest)

    def content(self) -> dict[str, Any]:
        def one(s: Any) -> dict[str, Any]:
            return {"name": s.name, "root": str(s.root), "summary": s.summary(),
                    "records-digest": self.records_digest(s)}

        return {"task": self.task, "clients": [c.content() for c in self.clients],
                "unseen": [one(s) for s in self.unseen], "public": one(self.public)}

    def digest(self) -> str:
        body = self.content()
        for d in body["unseen"] + [body["public"]]:
            d.pop("root")  # where a copy lives does not change the data
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        return {"clients": {c.name: c.source for c in self.clients},
                "unseen": {s.name: s.summary() for s in self.unseen},
                "public": {self.public.name: self.public.summary()}}

    def save(self, path: Path) -> None:
        atomic_write_text(json.dumps({**self.content(), "digest": self.digest()}, indent=1),
                          Path(path))


# --- decoded images -----------------------------------------------------------------------------
_IMAGES: dict[tuple[str, int, int], torch.Tensor] = {}
_IMAGES_LOCK = threading.Lock()


def image_tensor(records: list[ReidImage], height: int, width: int) -> torch.Tensor:
    """uint8 (N, 3, height, width) images of ``records`` (decoded once per process)."""
    from fedfr.reid.data.dataset import load_image
    from fedfr.reid.data.transforms import pil_to_uint8

    out = []
    for r in records:
        key = (str(r.path), height, width)
        with _IMAGES_LOCK:
            x = _IMAGES.get(key)
        if x is None:
            x = pil_to_uint8(load_image(r.path), height, width)
            with _IMAGES_LOCK:
                _IMAGES[key] = x
        out.append(x)
    if not out:
        return torch.empty(0, 3, height, width, dtype=torch.uint8)
    return torch.stack(out)


def labelled_public(train: list, test: list) -> tuple[list, list[int]]:
    """A public set's records of labelled people (``train``, then ``test``'s with pid > 0) and
    their class labels 0..K_g-1 (sorted pid order; test pids offset past the train pids)."""
    recs = list(train) + [r for r in test if r.pid > 0]
    keys = [(0, r.pid) for r in train] + [(1, r.pid) for r in recs[len(train):]]
    mapping = {k: i for i, k in enumerate(sorted(set(keys)))}
    return recs, [mapping[k] for k in keys]


def all_records(split: ReidSplit) -> tuple[list[ReidImage], list[int]]:
    """Every image of a public dataset (train and test identities; pid-0 distractors left out)
    and its class labels 0..K_g-1 (sorted pid order; test pids offset past the train pids)."""
    return labelled_public(split.train, split.query + split.gallery)


def roles(cfg: Config, prefix: str) -> tuple[list[str], list[str], str]:
    """(client, unseen, public) dataset names from ``<prefix>-clients`` / ``-unseen`` /
    ``-public`` (prefix ``reid`` or ``video``). One client per dataset; with fewer clients than
    datasets (e.g. Flower's default of 2 SuperNodes) the first ``num-clients`` take part."""
    d = cfg.to_dict()
    clients = names(d[f"{prefix}-clients"], f"{prefix}-clients")
    if 0 < cfg.num_clients < len(clients):
        clients = clients[:cfg.num_clients]
    public = str(d[f"{prefix}-public"]).strip()
    if not public or "," in public:
        raise ConfigError(f"config '{prefix}-public': expected one dataset name, got "
                          f"{d[f'{prefix}-public']!r}")
    return clients, names(d[f"{prefix}-unseen"], f"{prefix}-unseen"), public


# --- the federation's data, per process ---------------------------------------------------------
class FederationWorkspace:
    """What the image and the video re-ID workspaces share: the roles (``<prefix>-clients`` /
    ``-unseen`` / ``-public``), each set read at most once per process and, in a node's exported
    folder (``node_dir``), only the node's own sets, each checked against its export."""

    prefix: ClassVar[str] = "reid"  # of the run-config keys
    task: ClassVar[str] = "reid"  # what the node folders' node.json says
    noun: ClassVar[str] = "dataset"  # what one set is called in messages
    title: ClassVar[str] = "re-ID"  # the task in messages
    records_digest: ClassVar[Callable[[Any], str]] = staticmethod(records_digest)

    def __init__(self, cfg: Config, data_root: str | None = None,
                 node_dir: str | None = None) -> None:
        self.cfg, self.data_root, self.node_dir = cfg, data_root, node_dir
        self.client_names, self.unseen_names, self.public_name = roles(cfg, self.prefix)
        self._splits: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _read(self, name: str, key: str, node_dir: str | Path | None, split_id: int = 0) -> Any:
        """Set ``name`` (named by the run-config ``key``) from ``node_dir`` or the data root."""
        raise NotImplementedError

    def _exportable(self, name: str) -> bool:
        """Whether the node export can write set ``name`` (a synthetic one)."""
        raise NotImplementedError

    def _cached(self, name: str, key: str, split_id: int, cache_key: str) -> Any:
        """Set ``name`` (``_read``), read once per ``cache_key``."""
        with self._lock:
            if cache_key not in self._splits:
                if self.node_dir is not None and name not in self.node_datasets():
                    raise NodeDataError(f"{self.node_dir}: this node holds "
                                        f"{self.node_datasets()}, not {name!r}")
                split = self._read(name, key, self.node_dir, split_id)
                if self.node_dir is not None:
                    self._check_node_copy(split)
                self._splits[cache_key] = split
            return self._splits[cache_key]

    def _check_node_copy(self, split: Any) -> None:
        """A node's set must be the one exported (``records-digests`` of its node.json)."""
        manifest = read_node_manifest(self.node_dir, task=self.task)
        want = manifest.get("records-digests", {}).get(split.name)
        if want is not None and self.records_digest(split) != want:
            raise NodeDataError(f"{Path(self.node_dir) / NODE_MANIFEST}: {self.noun} "
                                f"{split.name!r} has records digest {self.records_digest(split)}, "
                                f"but the export wrote {want} (the node's copy changed since; "
                                "export again)")

    def node_datasets(self) -> list[str]:
        """The sets in this node's folder (its ``node.json``)."""
        if not self.node_dir:
            return []
        return list(read_node_manifest(self.node_dir, task=self.task)["datasets"])

    def client_name(self, partition_id: int) -> str:
        if not 0 <= partition_id < len(self.client_names):
            raise ConfigError(f"partition-id {partition_id} out of range: {self.prefix}-clients "
                              f"names {len(self.client_names)} {self.noun}s "
                              f"({getattr(self.cfg, f'{self.prefix}_clients')})")
        return self.client_names[partition_id]

    def export_nodes(self, out: Path) -> list[Path]:
        """One folder per client under ``out``: its own set (and the public one with FedFR),
        rendered there, and ``node.json``; returns them in partition order."""
        dirs = []
        for i, name in enumerate(self.client_names):
            folder = Path(out) / f"client-{i:04d}"
            wanted = [(name, f"{self.prefix}-clients")]
            if self.cfg.uses_public_data:
                wanted.append((self.public_name, f"{self.prefix}-public"))
            for ds, _ in wanted:
                if not self._exportable(ds):
                    raise ConfigError(f"{self.title} node export of the real dataset {ds!r} is "
                                      "not implemented: put a copy under each node's "
                                      "data-dir/data/")
            digests = {ds: self.records_digest(self._read(ds, key, folder)) for ds, key in wanted}
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps({"task": self.task, "partition-id": i,
                                          "datasets": [d for d, _ in wanted],
                                          "records-digests": digests,
                                          "split-digest": self.split.digest()}, indent=1),
                              folder / NODE_MANIFEST)
            dirs.append(folder)
        return dirs


class ReidWorkspace(FederationWorkspace):
    """The datasets of one re-ID federation (read lazily; each one at most once per process)."""

    def _read(self, name: str, key: str, node_dir: str | Path | None, split_id: int = 0
              ) -> ReidSplit:
        return read_dataset(self.cfg, name, self.data_root, node_dir, split_id)

    def _exportable(self, name: str) -> bool:
        return name.startswith(SYNTHETIC_PREFIX)

    def dataset(self, name: str, split_id: int = 0) -> ReidSplit:
        key = name if split_id == 0 else f"{name}#{split_id}"
        return self._cached(name, "", split_id, key)

    def client(self, partition_id: int) -> ReidSplit:
        return self.dataset(self.client_name(partition_id))

    def open_all(self) -> None:
        """Read every dataset of every role now (a host that plays them all, as a benchmark's
        local and central rows do): a missing one fails here, before any training."""
        for name in [*self.client_names, *self.unseen_names, self.public_name]:
            self.dataset(name)

    def public(self) -> tuple[list[ReidImage], list[int]]:
        return all_records(self.dataset(self.public_name))

    def unseen(self) -> list[ReidSplit]:
        """Each unseen set's first split (split 0)."""
        return [self.dataset(n) for n in self.unseen_names]

    def unseen_splits(self) -> list[tuple[str, list[ReidSplit]]]:
        """Each unseen set with all its evaluation splits: one for a fixed-split set, the 10
        seeded random splits of VIPeR, GRID, iLIDS, PRID (single-gallery-shot protocols)."""
        return [(n, [self.dataset(n, k) for k in range(num_splits(n))])
                for n in self.unseen_names]

    @property
    def split(self) -> ReidFederatedSplit:
        return ReidFederatedSplit([ClientDataset.of(self.cfg, n) for n in self.client_names],
                                  self.unseen(), self.dataset(self.public_name))

    def images(self, records: list[ReidImage]) -> torch.Tensor:
        return image_tensor(records, self.cfg.reid_height, self.cfg.reid_width)


def read_node_manifest(node_dir: str | Path, partition_id: int | None = None,
                       task: str = "reid") -> dict[str, Any]:
    """A node folder's ``node.json`` written by ``task``'s node export (NodeDataError naming the
    path and what is wrong)."""
    root = Path(node_dir)
    if not root.is_absolute() or not root.is_dir():
        raise NodeDataError(f"node-config data-dir {root}: expected an existing absolute folder "
                            f"written by the {task} node export")
    path = root / NODE_MANIFEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NodeDataError(f"{path}: unreadable node manifest ({exc})") from exc
    if doc.get("task") != task:
        raise NodeDataError(f"{path}: not a {task} node folder (task {doc.get('task')!r})")
    if partition_id is not None and doc.get("partition-id") != partition_id:
        raise NodeDataError(f"{path}: holds client {doc.get('partition-id')}'s data, but this "
                            f"node has partition-id={partition_id}")
    return doc


def node_workspace(cfg: Config, node_config: Mapping[str, Any], partition_id: int,
                   open_workspace: Callable[..., Any], task: str, clients_key: str) -> Any:
    """A client's workspace: in simulation every dataset (``data-root`` from the node config
    overrides the run's); in a deployment (node config ``data-dir``) only the node's own exported
    folder, whose ``node.json`` must be ``task``'s and hold this partition's dataset
    (NodeDataError naming the folder otherwise). ``open_workspace(cfg, data_root=, node_dir=)``:
    :func:`open_reid_workspace` or its video twin."""
    node_dir = str(node_config.get("data-dir", "") or "") or None
    if node_dir is not None:
        doc = read_node_manifest(node_dir, partition_id, task=task)
        ws = open_workspace(cfg, node_dir=node_dir)
        if doc["datasets"][0] != ws.client_name(partition_id):
            raise NodeDataError(f"{node_dir}: holds {doc['datasets'][0]!r}, but client "
                                f"{partition_id} of {clients_key} is "
                                f"{ws.client_name(partition_id)!r}")
        return ws
    return open_workspace(cfg, str(node_config.get("data-root", "")) or None)


def export_reid_nodes(cfg: Config, out: Path) -> list[Path]:
    """One folder per client under ``out``: its own dataset (and the public one with FedFR),
    rendered there (synthetic domains), and ``node.json``; returns them in partition order."""
    return ReidWorkspace(cfg).export_nodes(out)


_WORKSPACES: dict[tuple, FederationWorkspace] = {}
_WS_LOCK = threading.Lock()

#: run-config keys that determine the data of a re-ID federation
DATA_KEYS = ("seed", "data-root", "cache-dir", "reid-clients", "reid-unseen", "reid-public",
             "reid-synthetic-ids", "reid-height", "reid-width", "num-clients")


def cached_workspace(cls: type[FederationWorkspace], data_keys: tuple[str, ...], cfg: Config,
                     data_root: str | None, node_dir: str | None) -> Any:
    """``cls(cfg, data_root, node_dir)``, one per process for the values of ``data_keys``."""
    d = cfg.to_dict()
    key = (cls, *(d[k] for k in data_keys), data_root, node_dir)
    with _WS_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            ws = _WORKSPACES[key] = cls(cfg, data_root, node_dir)
    return ws


def open_reid_workspace(cfg: Config, data_root: str | None = None,
                        node_dir: str | None = None) -> ReidWorkspace:
    """The federation's datasets, cached per process by the data settings; ``node_dir``: a
    node's exported folder (only its own datasets are readable)."""
    return cached_workspace(ReidWorkspace, DATA_KEYS, cfg, data_root, node_dir)
