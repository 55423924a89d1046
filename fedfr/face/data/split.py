"""The federated split of a ``FaceSource`` and its JSON manifest.

Three disjoint groups of identities: clients' private identities (each client ``ids_per_client``,
images split into train/test), public identities D_g (pre-training and the hard-negative pool)
and generic identities (held out for the generic open-set protocol only).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.source import FaceSource

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SplitSpec:
    """Sizes of the split (paper: 6000 public, 40 clients x 100 ids, 60 train / 40 test)."""

    num_public_ids: int
    num_clients: int
    ids_per_client: int
    train_per_id: int
    test_per_id: int
    num_generic_ids: int
    public_images_per_id: int = 0  # 0 = all images of the identity
    seed: int = 0

    def validate(self) -> None:
        """ConfigError naming the first field out of range."""
        minimum = {"num_public_ids": 0, "num_clients": 1, "ids_per_client": 1,
                   "train_per_id": 1, "test_per_id": 0, "num_generic_ids": 0,
                   "public_images_per_id": 0, "seed": 0}
        for f in fields(self):
            val = getattr(self, f.name)
            if not isinstance(val, int | np.integer) or isinstance(val, bool):
                raise ConfigError(f"split '{f.name}': expected an integer, got {val!r}")
            if val < minimum[f.name]:
                raise ConfigError(f"split '{f.name}': expected >= {minimum[f.name]}, got {val}")


@dataclass
class ClientPart:
    """One client's private identities and images (indices into the source)."""

    client_id: int
    identities: list[int]  # source identity labels; local label l is identities[l]
    train: list[int]
    train_labels: list[int]  # local labels 0..K_l-1
    test: list[int]
    test_labels: list[int]


@dataclass
class FederatedSplit:
    """The split: public (D_g), clients and generic groups, as source image indices + labels."""

    spec: SplitSpec
    source: dict
    source_digest: str
    public_identities: list[int]
    public: list[int]
    public_labels: list[int]  # 0..K_g-1
    clients: list[ClientPart]
    generic_identities: list[int]
    generic: list[int]
    generic_labels: list[int]  # 0..n_generic-1
    path: str | None = field(default=None, compare=False)  # manifest file, when loaded/saved

    def content(self) -> dict:
        """The JSON manifest body without ``digest`` (also what the digest hashes)."""
        return {
            "version": MANIFEST_VERSION,
            "spec": asdict(self.spec),
            "source": self.source,
            "source_digest": self.source_digest,
            "public": {"identities": self.public_identities, "images": self.public,
                       "labels": self.public_labels},
            "clients": [asdict(c) for c in self.clients],
            "generic": {"identities": self.generic_identities, "images": self.generic,
                        "labels": self.generic_labels},
        }

    def digest(self) -> str:
        """16-hex-char sha256 of the split (spec, source digest, every index and label).

        The source description is left out (it holds a path), its digest is in.
        """
        body = {k: v for k, v in self.content().items() if k != "source"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON manifest atomically (temporary file in the same folder, then rename)."""
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"{p}: is a folder; expected the path of the split manifest to write")
        p.parent.mkdir(parents=True, exist_ok=True)
        doc = {**self.content(), "digest": self.digest()}
        fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.write("\n")
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.path = str(p)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FederatedSplit:
        """Read a manifest written by ``save``; DataFormatError naming the file if it is bad."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFormatError(f"{p}: split manifest not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"{p}: unreadable split manifest ({exc}); expected JSON "
                                  "written by FederatedSplit.save") from exc
        try:
            if doc.get("version") != MANIFEST_VERSION:
                raise DataFormatError(f"{p}: split manifest version {doc.get('version')!r}, "
                                      f"expected {MANIFEST_VERSION}")
            spec = SplitSpec(**doc["spec"])
            ints = _int_list
            split = cls(
                spec=spec, source=dict(doc["source"]), source_digest=str(doc["source_digest"]),
                public_identities=ints(doc["public"]["identities"]),
                public=ints(doc["public"]["images"]), public_labels=ints(doc["public"]["labels"]),
                clients=[ClientPart(
                    client_id=int(c["client_id"]), identities=ints(c["identities"]),
                    train=ints(c["train"]), train_labels=ints(c["train_labels"]),
                    test=ints(c["test"]), test_labels=ints(c["test_labels"]))
                    for c in doc["clients"]],
                generic_identities=ints(doc["generic"]["identities"]),
                generic=ints(doc["generic"]["images"]),
                generic_labels=ints(doc["generic"]["labels"]),
                path=str(p),
            )
            stored = doc["digest"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(f"{p}: malformed split manifest ({type(exc).__name__}: {exc}); "
                                  "expected the keys written by FederatedSplit.save") from exc
        if stored != split.digest():
            raise DataFormatError(f"{p}: split manifest digest {stored!r} does not match its "
                                  f"content ({split.digest()!r}); the file was edited or damaged")
        return split

    def check_source(self, source: FaceSource) -> None:
        """DataFormatError unless ``source`` is the data this split was made from."""
        where = self.path or "split"
        if len(source) != self.source.get("num_images", len(source)):
            raise DataFormatError(
                f"{where}: split made for a source of {self.source.get('num_images')} images, "
                f"the source {source.name!r} has {len(source)}")
        digest = source.digest()
        if digest != self.source_digest:
            raise DataFormatError(
                f"{where}: split made from source digest {self.source_digest} "
                f"({self.source}), the source {source.name!r} has digest {digest} "
                f"({source.describe()})")

    def summary(self) -> dict:
        """Counts of identities and images per group and per client."""
        clients = [{"client_id": c.client_id, "identities": len(c.identities),
                    "train_images": len(c.train), "test_images": len(c.test)}
                   for c in self.clients]
        return {
            "identities": {"public": len(self.public_identities),
                           "clients": sum(len(c.identities) for c in self.clients),
                           "generic": len(self.generic_identities)},
            "images": {"public": len(self.public),
                       "client_train": sum(len(c.train) for c in self.clients),
                       "client_test": sum(len(c.test) for c in self.clients),
                       "generic": len(self.generic)},
            "num_clients": len(self.clients),
            "clients": clients,
        }


def _int_list(xs: object) -> list[int]:
    if not isinstance(xs, list):
        raise TypeError(f"expected a list of integers, got {type(xs).__name__}")
    return [int(x) for x in xs]


def make_split(source: FaceSource, spec: SplitSpec) -> FederatedSplit:
    """Deterministic split of ``source`` by ``spec`` (numpy ``default_rng(spec.seed)``).

    Identities are shuffled once. Client identities are the first ones with at least
    ``train_per_id + test_per_id`` images; public identities the next ones with >= 2 images;
    generic identities the next ones with >= 2 images. A client identity's images are shuffled,
    the first ``train_per_id`` train, the next ``test_per_id`` test. A public identity keeps all
    its images (source order), or the first ``public_images_per_id`` after shuffling if set.
    """
    spec.validate()
    labels, k = checked_labels(source)
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(k)
    by_id = _images_by_identity(labels, k)
    counts = np.array([len(x) for x in by_id], dtype=np.int64)

    per_client = spec.train_per_id + spec.test_per_id
    n_client_ids = spec.num_clients * spec.ids_per_client
    eligible = order[counts[order] >= per_client]
    if len(eligible) < n_client_ids:
        raise ConfigError(
            f"split: {spec.num_clients} clients x {spec.ids_per_client} identities need "
            f"{n_client_ids} identities with >= {per_client} images (train-per-id "
            f"{spec.train_per_id} + test-per-id {spec.test_per_id}); source {source.name!r} has "
            f"{len(eligible)} eligible of {k} identities")
    client_ids = eligible[:n_client_ids]
    taken = np.zeros(k, dtype=bool)
    taken[client_ids] = True
    rest = order[~taken[order] & (counts[order] >= 2)]
    if len(rest) < spec.num_public_ids + spec.num_generic_ids:
        raise ConfigError(
            f"split: needs {spec.num_public_ids} public + {spec.num_generic_ids} generic "
            f"identities with >= 2 images besides the {n_client_ids} client identities; source "
            f"{source.name!r} has {len(rest)} eligible of {k - n_client_ids} remaining identities")
    public_ids = rest[:spec.num_public_ids]
    generic_ids = rest[spec.num_public_ids:spec.num_public_ids + spec.num_generic_ids]

    return assemble_split(spec, source.describe(), source.digest(), client_ids, public_ids,
                          generic_ids, by_id, rng)


def assemble_split(spec: SplitSpec, source_desc: dict, source_digest: str,
                   client_ids: Sequence[int], public_ids: Sequence[int],
                   generic_ids: Sequence[int], by_id: list[np.ndarray],
                   rng: np.random.Generator) -> FederatedSplit:
    """The split from chosen identities: client c gets ``client_ids[c*K_l:(c+1)*K_l]`` with
    ``train-per-id`` + ``test-per-id`` random images each; public identities keep all images
    (or ``public-images-per-id`` random ones); generic identities keep all. ``by_id``: source
    image indices per identity."""
    per_id = spec.train_per_id + spec.test_per_id
    clients: list[ClientPart] = []
    for c in range(spec.num_clients):
        ids = client_ids[c * spec.ids_per_client:(c + 1) * spec.ids_per_client]
        part = ClientPart(client_id=c, identities=[int(j) for j in ids], train=[],
                          train_labels=[], test=[], test_labels=[])
        for local, j in enumerate(ids):
            imgs = rng.permutation(by_id[j])
            part.train += [int(i) for i in imgs[:spec.train_per_id]]
            part.train_labels += [local] * spec.train_per_id
            part.test += [int(i) for i in imgs[spec.train_per_id:per_id]]
            part.test_labels += [local] * spec.test_per_id
        clients.append(part)

    public: list[int] = []
    public_labels: list[int] = []
    for g, j in enumerate(public_ids):
        imgs = by_id[j]
        if spec.public_images_per_id > 0:
            imgs = rng.permutation(imgs)[:spec.public_images_per_id]
        public += [int(i) for i in imgs]
        public_labels += [g] * len(imgs)

    generic: list[int] = []
    generic_labels: list[int] = []
    for g, j in enumerate(generic_ids):
        generic += [int(i) for i in by_id[j]]
        generic_labels += [g] * len(by_id[j])

    return FederatedSplit(
        spec=spec, source=source_desc, source_digest=source_digest,
        public_identities=[int(j) for j in public_ids], public=public,
        public_labels=public_labels, clients=clients,
        generic_identities=[int(j) for j in generic_ids], generic=generic,
        generic_labels=generic_labels)


def checked_labels(source: FaceSource) -> tuple[np.ndarray, int]:
    """The source's labels (int64, one per image) and its identity count; DataFormatError if a
    label lies outside 0..K-1."""
    labels = np.asarray(source.labels, dtype=np.int64)
    k = source.num_identities
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise DataFormatError(f"source {source.name!r}: labels must lie in 0..{k - 1}")
    return labels, k


def _images_by_identity(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Source image indices of each identity, ascending."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[j]:bounds[j + 1]] for j in range(k)]
