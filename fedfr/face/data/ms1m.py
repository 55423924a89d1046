"""The paper's MS-Celeb-1M split (dissertation Sec. 7.4.1) from any ``FaceSource``.

Identities with an eligible number of images (paper: 100 images each; the authors' code keeps
100 < n < 110, ``authors_rule``) are shuffled once; the first ``num_public_ids`` form the public
set D_g (6,000), the next ``client_pool_ids`` the client pool (4,000), and optionally the next
``num_generic_ids`` a held-out generic set. Clients take the first ``num_clients x
ids_per_client`` identities of the pool in order (40 x 100, or 100 x {40, 20, 10, 1}), so the
public set, and with it the pre-trained model, is the same in every scenario. Each client
identity's images are shuffled: the first ``train_per_id`` (60) train, the next ``test_per_id``
(40) test. The result is an ordinary ``FederatedSplit`` (same manifest format as ``make_split``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from fedfr.errors import ConfigError
from fedfr.face.data.source import FaceSource
from fedfr.face.data.split import (
    FederatedSplit,
    SplitSpec,
    _images_by_identity,
    assemble_split,
    checked_labels,
)

#: scenario name -> (num_clients, ids_per_client): Table 7.1 and Fig. 7.4
SCENARIOS: dict[str, tuple[int, int]] = {
    "40x100": (40, 100), "100x40": (100, 40), "100x20": (100, 20), "100x10": (100, 10),
    "100x1": (100, 1),
}
#: the authors' selection rule (split_FL.py): 100 < n < 110 images
AUTHORS_RULE = (101, 109)


@dataclass(frozen=True)
class MS1MSpec:
    """Sizes and selection rule (defaults: the paper's 40 x 100 scenario)."""

    num_public_ids: int = 6000
    client_pool_ids: int = 4000
    num_clients: int = 40
    ids_per_client: int = 100
    train_per_id: int = 60
    test_per_id: int = 40
    num_generic_ids: int = 0
    min_images: int = 100  # keep identities with >= min_images images
    max_images: int = 0  # ... and <= max_images (0: no upper bound)
    public_images_per_id: int = 0  # 0: every image of a public identity
    seed: int = 0

    def validate(self) -> None:
        """ConfigError naming the first inconsistent field."""
        for f in fields(self):
            val = getattr(self, f.name)
            if not isinstance(val, int | np.integer) or isinstance(val, bool) or val < 0:
                raise ConfigError(f"ms1m split '{f.name}': expected an integer >= 0, got {val!r}")
        for name in ("num_clients", "ids_per_client", "train_per_id", "min_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ms1m split '{name}': expected >= 1, got "
                                  f"{getattr(self, name)}")
        if self.num_clients * self.ids_per_client > self.client_pool_ids:
            raise ConfigError(
                f"ms1m split: {self.num_clients} clients x {self.ids_per_client} identities = "
                f"{self.num_clients * self.ids_per_client} exceed the client pool of "
                f"{self.client_pool_ids} identities")
        if self.train_per_id + self.test_per_id > self.min_images:
            raise ConfigError(
                f"ms1m split: train-per-id {self.train_per_id} + test-per-id {self.test_per_id} "
                f"exceed min-images {self.min_images} (an eligible identity may have only "
                "that many)")
        if self.max_images and self.max_images < self.min_images:
            raise ConfigError(f"ms1m split: max-images {self.max_images} < min-images "
                              f"{self.min_images}")

    def split_spec(self) -> SplitSpec:
        """The manifest's SplitSpec (the selection rule goes into the manifest's source)."""
        return SplitSpec(num_public_ids=self.num_public_ids, num_clients=self.num_clients,
                         ids_per_client=self.ids_per_client, train_per_id=self.train_per_id,
                         test_per_id=self.test_per_id, num_generic_ids=self.num_generic_ids,
                         public_images_per_id=self.public_images_per_id, seed=self.seed)


def eligible_identities(labels: np.ndarray, num_identities: int, min_images: int,
                        max_images: int = 0) -> np.ndarray:
    """Identity indices (ascending) with min_images <= n <= max_images images (0: no cap)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_identities)
    keep = counts >= min_images
    if max_images:
        keep &= counts <= max_images
    return np.flatnonzero(keep)


def build_ms1m_split(source: FaceSource, spec: MS1MSpec) -> FederatedSplit:
    """The paper's split of ``source`` by ``spec`` (deterministic in ``spec.seed``)."""
    spec.validate()
    labels, k = checked_labels(source)
    rng = np.random.default_rng(spec.seed)
    ok = eligible_identities(labels, k, spec.min_images, spec.max_images)
    need = spec.num_public_ids + spec.client_pool_ids + spec.num_generic_ids
    rule = f">= {spec.min_images}" + (f" and <= {spec.max_images}" if spec.max_images else "")
    if len(ok) < need:
        raise ConfigError(
            f"ms1m split: needs {need} identities with {rule} images ({spec.num_public_ids} "
            f"public + {spec.client_pool_ids} client pool + {spec.num_generic_ids} generic); "
            f"source {source.name!r} has {len(ok)} of {k}")
    order = ok[rng.permutation(len(ok))]
    public_ids = order[:spec.num_public_ids]
    pool = order[spec.num_public_ids:spec.num_public_ids + spec.client_pool_ids]
    generic_ids = order[spec.num_public_ids + spec.client_pool_ids:need]
    by_id = _images_by_identity(labels, k)

    desc = {**source.describe(), "selection": {"builder": "ms1m", **asdict(spec),
                                               "eligible_identities": int(len(ok))}}
    return assemble_split(spec.split_spec(), desc, source.digest(), pool, public_ids,
                          generic_ids, by_id, rng)
