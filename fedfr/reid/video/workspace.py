"""The tracklet sets of a video re-ID federation (``task = "video-reid"``): clients, unseen
(generic) sets and the public set.

Each client is one tracklet set (a camera network: its train tracklets train, its query /
gallery is its personalised test); the unseen sets' query / gallery are the generic test; the
public set (all its tracklets of labelled people, train and test identities) pre-trains
Theta_g^0 and Phi_g^0 and supplies FedFR's hard negatives. Names:

* synthetic tracklet sets (``SYNTHETIC_SETS``): ``synth-mars`` (the registry's preset: the
  ``synth-market`` camera style with tracker defects) and the same walks and defects rendered
  in other ``synthetic.py`` domains' camera styles (``synth-cuhkv``, ``synth-ilidsv``,
  ``synth-pridv``, ``synth-viperv``, ``synth-publicv``), at ``video-height`` x ``video-width``
  with ``video-synthetic-ids`` people (the public set twice that), cached under
  ``<cache-dir>/video-synthetic``;
* real sets of the video reader registry (``mars``, ``dukemtmcvidreid``, ``ilidsvid``,
  ``prid2011``) read under ``data-root`` in torchreid's layouts; iLIDS-VID and PRID2011 are
  evaluated on their 10 splits (PRID's drawn from ``seed``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.reid.data.records import Tracklet, VideoSplit
from fedfr.reid.workspace import (
    ClientDataset,
    FederationWorkspace,
    ReidFederatedSplit,
    cached_workspace,
    labelled_public,
    names,
    parts_digest,
    relative_name,
)
from fedfr.reid.workspace import read_node_manifest as read_reid_node_manifest

#: synthetic tracklet set -> (TrackletSpec preset it starts from, the synthetic.py domain whose
#: people, cameras and image style it shows); every domain here has at most 6 cameras (MARS names)
SYNTHETIC_SETS: dict[str, tuple[str, str]] = {
    "synth-mars": ("synth-mars", "synth-market"),
    "synth-cuhkv": ("synth-mars", "synth-cuhk"),
    "synth-ilidsv": ("synth-mars", "synth-ilids"),
    "synth-pridv": ("synth-mars", "synth-prid"),
    "synth-viperv": ("synth-mars", "synth-viper"),
    "synth-publicv": ("synth-mars", "synth-public"),
}
NUM_RANDOM_SPLITS = 10


def _video_reader(name: str) -> Any:
    from fedfr.reid.data.video.registry import _REGISTRY

    return _REGISTRY.reader(name)  # ConfigError naming the known sets for an unknown name


def split_options(name: str, split_id: int, seed: int) -> dict[str, Any]:
    """``split_id`` (and ``seed``) for a reader with random splits (iLIDS-VID, PRID2011)."""
    params = inspect.signature(_video_reader(name)).parameters
    if "split_id" not in params:
        return {}
    return {"split_id": split_id, **({"seed": seed} if "seed" in params else {})}


def num_splits(name: str) -> int:
    """1 for a fixed-split set (synthetic, MARS, DukeV), 10 for iLIDS-VID / PRID2011."""
    if name in SYNTHETIC_SETS:
        return 1
    return NUM_RANDOM_SPLITS if split_options(name, 0, 0) else 1


def synthetic_spec(cfg: Config, name: str, public: bool = False) -> Any:
    """The TrackletSpec of synthetic set ``name`` at the run's size, seed and identity count."""
    from fedfr.reid.data.tracklets import make_tracklet_spec

    preset, domain = SYNTHETIC_SETS[name]
    ids = cfg.video_synthetic_ids * (2 if public else 1)
    return make_tracklet_spec(preset, name=name, domain=domain, seed=cfg.seed, num_ids=ids,
                              height=cfg.video_height, width=cfg.video_width)


def check_name(cfg: Config, name: str, key: str, data_root: str | None = None) -> None:
    """ConfigError naming ``key`` when ``name`` is neither a synthetic set nor a registered real
    one, or is a real one without an absolute ``data-root``."""
    from fedfr.reid.data.video.registry import list_video_datasets

    if name in SYNTHETIC_SETS:
        return
    real = [n for n in list_video_datasets() if not n.startswith("synth-")]
    if name not in real:
        raise ConfigError(f"config '{key}': unknown tracklet set {name!r}; expected one of "
                          f"{sorted(SYNTHETIC_SETS)} or a real video dataset {real}")
    root = data_root or cfg.data_root
    if not root:
        raise ConfigError(f"config 'data-root': required to read the real video dataset "
                          f"{name!r} named in '{key}' (the folder that holds its own folder, "
                          "torchreid's layout)")
    if not Path(root).is_absolute():
        raise ConfigError(f"config 'data-root': expected an absolute path, got {root!r}")


def check_names(cfg: Config) -> None:
    """Every tracklet set the run names is known (and readable: ``data-root`` for real ones)."""
    for key in ("video-clients", "video-unseen", "video-public"):
        for name in names(getattr(cfg, key.replace("-", "_")), key):
            check_name(cfg, name, key)


def read_tracklet_set(cfg: Config, name: str, key: str, data_root: str | None = None,
                      node_dir: str | Path | None = None, split_id: int = 0) -> VideoSplit:
    """One tracklet set of the federation (``key``: the run-config key that named it)."""
    from fedfr.reid.data.tracklets import synthetic_tracklets
    from fedfr.reid.data.video.registry import get_video_dataset

    if name in SYNTHETIC_SETS:
        base = Path(node_dir) if node_dir is not None else cfg.cache_path
        split = synthetic_tracklets(synthetic_spec(cfg, name, key == "video-public"),
                                    base / "video-synthetic")
        split.name = name
        return split
    if node_dir is not None:
        check_name(cfg, name, key, str(node_dir))
        root = Path(node_dir) / "data"
    else:
        check_name(cfg, name, key, data_root)
        root = Path(data_root or cfg.data_root)
    split = get_video_dataset(name, root, **split_options(name, split_id, cfg.seed))
    split.name = name
    return split


def public_tracklets(split: VideoSplit) -> tuple[list[Tracklet], list[int]]:
    """Every tracklet of labelled people of the public set (train, then test tracklets with
    pid > 0) and its class label 0..K_g-1 (train pids first, sorted; test pids after them)."""
    return labelled_public(split.train, split.test if split.test else split.query + split.gallery)


def _tracklet_line(t: Tracklet, root: Path) -> str:
    return f"{t.pid}|{t.camid}|{','.join(relative_name(p, root) for p in t.paths)}\n"


def tracklets_digest(split: VideoSplit) -> str:
    """16 hex digits over a tracklet set's train / query / gallery (pid, camera, frame paths
    relative to the set's root): the same wherever the copy lives."""
    return parts_digest(split, _tracklet_line)


def client_dataset(cfg: Config, name: str) -> ClientDataset:
    """A client's tracklet set as the server names it: the generator's spec digest for a
    synthetic set, the reader's name for a real one; never its records."""
    if name in SYNTHETIC_SETS:
        spec = synthetic_spec(cfg, name)
        return ClientDataset(name, {"generator": "synthetic-tracklets",
                                    "spec-digest": spec.digest()[:16]})
    return ClientDataset(name, {"reader": name})


class VideoFederatedSplit(ReidFederatedSplit):
    """Which tracklet set plays which role; saved as ``split.json`` next to the report. The
    server holds the public and the unseen sets; a client's set lives on its node and appears by
    name and what determines it (``ClientDataset``), as for image re-ID."""

    task = "video-reid"
    records_digest = staticmethod(tracklets_digest)


class VideoWorkspace(FederationWorkspace):
    """The tracklet sets of one video federation (each read at most once per process)."""

    prefix, task, noun, title = "video", "video-reid", "tracklet set", "video re-ID"
    records_digest = staticmethod(tracklets_digest)

    def _read(self, name: str, key: str, node_dir: str | Path | None, split_id: int = 0
              ) -> VideoSplit:
        return read_tracklet_set(self.cfg, name, key, self.data_root, node_dir, split_id)

    def _exportable(self, name: str) -> bool:
        return name in SYNTHETIC_SETS

    def dataset(self, name: str, key: str, split_id: int = 0) -> VideoSplit:
        """Set ``name`` (``key``: the run-config key that names it) and its split ``split_id``."""
        return self._cached(name, key, split_id, f"{key}:{name}#{split_id}")

    def client(self, partition_id: int) -> VideoSplit:
        return self.dataset(self.client_name(partition_id), "video-clients")

    def public_split(self) -> VideoSplit:
        return self.dataset(self.public_name, "video-public")

    def public(self) -> tuple[list[Tracklet], list[int]]:
        return public_tracklets(self.public_split())

    def unseen_splits(self) -> list[tuple[str, list[VideoSplit]]]:
        for n in self.unseen_names:
            check_name(self.cfg, n, "video-unseen", self.data_root)
        return [(n, [self.dataset(n, "video-unseen", k) for k in range(num_splits(n))])
                for n in self.unseen_names]

    @property
    def split(self) -> VideoFederatedSplit:
        return VideoFederatedSplit([client_dataset(self.cfg, n) for n in self.client_names],
                                   [self.dataset(n, "video-unseen") for n in self.unseen_names],
                                   self.public_split())


def read_node_manifest(node_dir: str | Path, partition_id: int | None = None) -> dict[str, Any]:
    """A video node folder's ``node.json`` (``task: video-reid``), checked as image re-ID's."""
    return read_reid_node_manifest(node_dir, partition_id, task="video-reid")


def export_video_nodes(cfg: Config, out: Path) -> list[Path]:
    """One folder per client under ``out``: its own tracklet set (and the public one with
    FedFR), rendered there, and ``node.json``; returns them in partition order."""
    return VideoWorkspace(cfg).export_nodes(out)


#: run-config keys that determine the data of a video federation
DATA_KEYS = ("seed", "data-root", "cache-dir", "video-clients", "video-unseen", "video-public",
             "video-synthetic-ids", "video-height", "video-width", "num-clients")


def open_video_workspace(cfg: Config, data_root: str | None = None,
                         node_dir: str | None = None) -> VideoWorkspace:
    """The federation's tracklet sets, cached per process by the data settings."""
    return cached_workspace(VideoWorkspace, DATA_KEYS, cfg, data_root, node_dir)
