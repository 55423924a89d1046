"""make_split / FederatedSplit: determinism, disjointness, counts, manifest, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.source import FaceSource
from fedfr.face.data.split import FederatedSplit, SplitSpec, make_split


class FakeSource(FaceSource):
    """Identity j has counts[j] images; image i is a constant image of value i % 256."""

    def __init__(self, counts: list[int], tag: str = "fake"):
        self.name = tag
        self.counts = list(counts)
        self.labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
        self.identity_names = [f"id{j}" for j in range(len(counts))]

    def load(self, i: int) -> np.ndarray:
        return np.full((4, 4, 3), i % 256, dtype=np.uint8)

    def describe(self) -> dict:
        return {"kind": "fake", "tag": self.name, "num_images": len(self),
                "num_identities": self.num_identities}


ORL_SPEC = SplitSpec(num_public_ids=16, num_clients=4, ids_per_client=4, train_per_id=6,
                     test_per_id=4, num_generic_ids=8, seed=0)


def _all_groups(split: FederatedSplit) -> tuple[list[int], list[int]]:
    ids = split.public_identities + split.generic_identities
    imgs = split.public + split.generic
    for c in split.clients:
        ids += c.identities
        imgs += c.train + c.test
    return ids, imgs


def test_orl_sized_split_counts_and_disjointness():
    src = FakeSource([10] * 40)
    split = make_split(src, ORL_SPEC)
    ids, imgs = _all_groups(split)
    assert len(ids) == len(set(ids)) == 40  # every identity used once, groups disjoint
    assert len(imgs) == len(set(imgs))
    assert split.summary() == {
        "identities": {"public": 16, "clients": 16, "generic": 8},
        "images": {"public": 160, "client_train": 96, "client_test": 64, "generic": 80},
        "num_clients": 4,
        "clients": [{"client_id": c, "identities": 4, "train_images": 24, "test_images": 16}
                    for c in range(4)],
    }
    for c in split.clients:
        assert c.train_labels == [lab for lab in range(4) for _ in range(6)]
        assert c.test_labels == [lab for lab in range(4) for _ in range(4)]
        for idx, lab in zip(c.train + c.test, c.train_labels + c.test_labels, strict=True):
            assert src.labels[idx] == c.identities[lab]
    for idx, lab in zip(split.public, split.public_labels, strict=True):
        assert src.labels[idx] == split.public_identities[lab]
    for idx, lab in zip(split.generic, split.generic_labels, strict=True):
        assert src.labels[idx] == split.generic_identities[lab]
    assert sorted(set(split.public_labels)) == list(range(16))
    assert sorted(set(split.generic_labels)) == list(range(8))


def test_deterministic_and_seed_dependent():
    src = FakeSource([10] * 40)
    a, b = make_split(src, ORL_SPEC), make_split(src, ORL_SPEC)
    assert a == b and a.digest() == b.digest()
    c = make_split(src, SplitSpec(**{**ORL_SPEC.__dict__, "seed": 1}))
    assert c.clients[0].identities != a.clients[0].identities or c.public != a.public
    assert c.digest() != a.digest()


def test_eligibility_order_and_public_image_cap():
    # identities 0..5 have 3 images (too few for clients), 6..11 have 12, 12..13 have 1 image
    src = FakeSource([3] * 6 + [12] * 6 + [1] * 2)
    spec = SplitSpec(num_public_ids=5, num_clients=2, ids_per_client=3, train_per_id=5,
                     test_per_id=5, num_generic_ids=1, public_images_per_id=2, seed=3)
    split = make_split(src, spec)
    client_ids = {j for c in split.clients for j in c.identities}
    assert client_ids == set(range(6, 12))  # the only identities with >= 10 images
    assert all(len(c.train) == 15 and len(c.test) == 15 for c in split.clients)
    assert set(split.public_identities + split.generic_identities) <= set(range(6))
    assert len(split.public) == 10  # capped at 2 images per public identity
    assert len(split.generic) == 3  # generic keeps all images
    # the shuffled order decides; identities with one image are never used
    assert not {12, 13} & set(split.public_identities + split.generic_identities)


def test_not_enough_identities():
    src = FakeSource([10] * 20 + [4] * 5)
    with pytest.raises(ConfigError, match=r"need 24 identities with >= 10 images.*20 eligible"):
        make_split(src, SplitSpec(0, 6, 4, 6, 4, 0))
    with pytest.raises(ConfigError, match=r"needs 9 public \+ 4 generic.*has 9 eligible"):
        make_split(src, SplitSpec(9, 4, 4, 6, 4, 4))
    with pytest.raises(ConfigError, match="'ids_per_client': expected >= 1"):
        make_split(src, SplitSpec(1, 1, 0, 6, 4, 1))


def test_manifest_round_trip_and_stable_digest(tmp_path: Path):
    src = FakeSource([10] * 40)
    split = make_split(src, ORL_SPEC)
    path = tmp_path / "sub" / "split.json"
    split.save(path)
    assert not list(path.parent.glob("*.tmp"))
    doc = json.loads(path.read_text())
    for key in ("spec", "source", "source_digest", "digest", "public", "clients", "generic"):
        assert key in doc
    assert doc["digest"] == split.digest() and doc["source_digest"] == src.digest()
    back = FederatedSplit.load(path)
    assert back == split and back.digest() == split.digest()
    assert back.path == str(path)
    back.check_source(src)  # same data: no error
    # the digest is a fixed function of the content: saving again gives the same file
    back.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_edited_or_bad_manifest(tmp_path: Path):
    split = make_split(FakeSource([10] * 40), ORL_SPEC)
    path = tmp_path / "split.json"
    split.save(path)
    doc = json.loads(path.read_text())
    doc["clients"][0]["train"][0] = 399
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"split\.json: split manifest digest"):
        FederatedSplit.load(path)
    del doc["generic"]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"split\.json: malformed split manifest.*generic"):
        FederatedSplit.load(path)
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"split\.json: unreadable"):
        FederatedSplit.load(path)
    with pytest.raises(DataFormatError, match="not found"):
        FederatedSplit.load(tmp_path / "missing.json")


def test_check_source_mismatch(tmp_path: Path):
    src = FakeSource([10] * 40)
    split = make_split(src, ORL_SPEC)
    split.save(tmp_path / "split.json")
    loaded = FederatedSplit.load(tmp_path / "split.json")
    with pytest.raises(DataFormatError, match=r"split\.json: split made for a source of 400"):
        loaded.check_source(FakeSource([10] * 41))
    with pytest.raises(DataFormatError, match=r"split\.json: split made from source digest"):
        loaded.check_source(FakeSource([10] * 40, tag="other"))
    with pytest.raises(DataFormatError, match="source digest"):
        loaded.check_source(FakeSource([11] + [10] * 38 + [9]))
