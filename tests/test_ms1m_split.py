"""The paper's MS-Celeb-1M split builder and ``fedfr split`` on a tiny RecordIO file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedfr.cli import main as cli_main
from fedfr.errors import ConfigError
from fedfr.face.data import RecordIOSource, RecordIOWriter
from fedfr.face.data.ms1m import MS1MSpec, build_ms1m_split, eligible_identities
from fedfr.face.data.split import FederatedSplit

#: images per identity: 9 eligible at 10..11 (authors-style rule), two with 9 and 12 that a
#: bounded rule drops, two with too few images
COUNTS = [10, 11, 10, 10, 11, 10, 10, 11, 10, 9, 12, 3, 10]


@pytest.fixture(scope="module")
def tiny_rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec")
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    with RecordIOWriter(out / "train.rec", out / "train.idx") as w:
        w.write_header(len(labels), len(COUNTS))
        for key, lab in enumerate(labels, start=1):
            w.write(key, float(lab), np.full((4, 4, 3), key % 256, dtype=np.uint8))
    return out


def spec(**kw) -> MS1MSpec:
    base = dict(num_public_ids=4, client_pool_ids=4, num_clients=2, ids_per_client=2,
                train_per_id=6, test_per_id=4, num_generic_ids=1, min_images=10, max_images=11)
    return MS1MSpec(**{**base, **kw})


def test_selection_rule_bounds():
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    assert list(eligible_identities(labels, len(COUNTS), 10, 11)) == [0, 1, 2, 3, 4, 5, 6, 7, 8,
                                                                      12]
    assert list(eligible_identities(labels, len(COUNTS), 10)) == [0, 1, 2, 3, 4, 5, 6, 7, 8,
                                                                  10, 12]
    assert list(eligible_identities(labels, len(COUNTS), 11, 11)) == [1, 4, 7]


def test_split_sizes_disjointness_and_manifest(tiny_rec: Path, tmp_path: Path):
    src = RecordIOSource(tiny_rec)
    split = build_ms1m_split(src, spec())
    s = split.summary()
    assert s["identities"] == {"public": 4, "clients": 4, "generic": 1}
    assert [c["train_images"] for c in s["clients"]] == [12, 12]
    assert [c["test_images"] for c in s["clients"]] == [8, 8]
    used = split.public_identities + split.generic_identities
    for c in split.clients:
        used += c.identities
        assert len(set(c.train) | set(c.test)) == 20
        assert all(src.labels[i] == c.identities[lab] for i, lab in zip(c.train, c.train_labels,
                                                                        strict=True))
    assert len(used) == len(set(used))
    assert not set(used) & {9, 10, 11}  # 9, 12 and 3 images break the 10..11 rule
    split.save(tmp_path / "m.json")
    again = FederatedSplit.load(tmp_path / "m.json")
    again.check_source(src)
    assert again.digest() == split.digest()
    assert again.source["selection"]["max_images"] == 11


def test_scenarios_share_the_public_set(tiny_rec: Path):
    src = RecordIOSource(tiny_rec)
    a = build_ms1m_split(src, spec(num_clients=2, ids_per_client=2))
    b = build_ms1m_split(src, spec(num_clients=4, ids_per_client=1))
    assert a.public_identities == b.public_identities
    assert sorted(i for c in a.clients for i in c.identities) == \
        sorted(i for c in b.clients for i in c.identities)
    assert [len(c.identities) for c in b.clients] == [1, 1, 1, 1]


def test_errors_name_the_problem(tiny_rec: Path):
    src = RecordIOSource(tiny_rec)
    with pytest.raises(ConfigError, match="needs 12 identities"):
        build_ms1m_split(src, spec(num_public_ids=7))
    with pytest.raises(ConfigError, match="exceed the client pool"):
        build_ms1m_split(src, spec(num_clients=3))
    with pytest.raises(ConfigError, match="exceed min-images"):
        build_ms1m_split(src, spec(train_per_id=8))


def test_split_command_writes_the_manifest(tiny_rec: Path, tmp_path: Path, capsys):
    out = tmp_path / "split.json"
    rc = cli_main(["split", "--dataset", "recordio", "--data-root", str(tiny_rec), "--out",
                   str(out), "--num-public-ids", "4", "--client-pool-ids", "4",
                   "--num-clients", "4", "--ids-per-client", "1", "--train-per-id", "6",
                   "--test-per-id", "4", "--min-images", "10", "--max-images", "11"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_clients"] == 4 and printed["identities"]["public"] == 4
    assert FederatedSplit.load(out).digest() == printed["digest"]


def test_run_config_split_manifest_is_used_and_checked(tiny_rec: Path, tmp_path: Path):
    from fedfr.config import resolve
    from fedfr.face.workspace import open_workspace

    manifest = tmp_path / "m.json"
    split = build_ms1m_split(RecordIOSource(tiny_rec), spec())
    split.save(manifest)
    base = {"dataset": "recordio", "data-root": str(tiny_rec), "image-size": 8,
            "num-clients": 2, "min-train-nodes": 1}
    ws = open_workspace(resolve({**base, "split-manifest": str(manifest)}))
    assert ws.split.digest() == split.digest()
    assert ws.client(1).train_images.shape == (12, 3, 8, 8)
    with pytest.raises(ConfigError, match="has 2 clients but the run has num-clients = 3"):
        open_workspace(resolve({**base, "num-clients": 3, "split-manifest": str(manifest)}))
    with pytest.raises(ConfigError, match="not found"):
        open_workspace(resolve({**base, "split-manifest": str(tmp_path / "none.json")}))


def test_split_command_exports_each_nodes_data(tiny_rec: Path, tmp_path: Path, capsys):
    """``fedfr split --export-dir`` hands the manifest to the node exporter: one folder per
    client holding only that client's images (and the public set)."""
    from fedfr.face.data.export import client_dir_name

    nodes = tmp_path / "nodes"
    rc = cli_main(["split", "--dataset", "recordio", "--data-root", str(tiny_rec), "--out",
                   str(tmp_path / "split.json"), "--num-public-ids", "4", "--client-pool-ids",
                   "4", "--num-clients", "2", "--ids-per-client", "2", "--train-per-id", "6",
                   "--test-per-id", "4", "--min-images", "10", "--max-images", "11",
                   "--export-dir", str(nodes), "--export-format", "folder"])
    assert rc == 0
    split = FederatedSplit.load(tmp_path / "split.json")
    for cid, part in enumerate(split.clients):
        folder = nodes / client_dir_name(cid)
        assert (folder / "node.json").is_file()
        images = [p for p in folder.rglob("*") if p.is_file() and p.name != "node.json"]
        assert len(images) == len(part.train) + len(part.test) + len(split.public)
