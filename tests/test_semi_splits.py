"""fedfr.reid.semi.splits: identity-disjoint labelled / unlabelled splits and their manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.semi.splits import (
    load_manifest,
    make_semi_split,
    manifest_name,
    num_labelled,
    save_manifest,
    semi_splits,
)


def _split(ids: int = 75, per_id: int = 3) -> ReidSplit:
    train = [ReidImage(Path(f"/x/{p:04d}_{i}.jpg"), p, i % 2) for p in range(1, ids + 1)
             for i in range(per_id)]
    return ReidSplit("toy", Path("/x"), train, [], [])


def test_ratios_follow_the_thesis_counts():
    assert num_labelled("1/6", 751) == 125  # "about 125 of the 751" (Sec. 3.4.2)
    assert num_labelled("1/12", 751) == 63  # 751 / 12 = 62.6 (the text says "only 60")
    assert num_labelled("1/3", 751) == 250
    assert num_labelled("50id", 751) == 50
    assert num_labelled("2/5", 10) == 4 and num_labelled("7id", 10) == 7
    assert num_labelled("1/12", 6) == 1  # at least one labelled identity
    with pytest.raises(ConfigError, match="setting"):
        num_labelled("half", 10)


def test_split_is_identity_disjoint_seeded_and_complete():
    split = _split()
    a = make_semi_split(split, "1/3", seed=0)
    assert len(a.labelled_pids) == 25 and len(a.unlabelled_pids) == 50
    assert not set(a.labelled_pids) & set(a.unlabelled_pids)
    xl, xu = a.parts(split.train)
    assert len(xl) == a.num_labelled_images == 75 and len(xu) == a.num_unlabelled_images == 150
    assert {r.pid for r in xl} == set(a.labelled_pids)
    assert make_semi_split(split, "1/3", seed=0).labelled_pids == a.labelled_pids
    assert make_semi_split(split, "1/3", seed=1).labelled_pids != a.labelled_pids


def test_manifests_round_trip_and_reject_bad_files(tmp_path):
    split = _split()
    all_ = semi_splits(split, seeds=(0, 1), out_dir=tmp_path)
    assert len(all_) == 8
    semi = all_[("1/12", 1)]
    path = tmp_path / manifest_name(semi)
    assert path.name == "toy-1of12-seed1.json"
    assert load_manifest(path) == semi
    data = json.loads(path.read_text())
    data["unlabelled_pids"].append(data["labelled_pids"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="overlap"):
        load_manifest(path)
    del data["seed"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="seed"):
        load_manifest(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataFormatError, match="bad.json"):
        load_manifest(tmp_path / "bad.json")


def test_parts_reject_a_different_training_set(tmp_path):
    semi = make_semi_split(_split(10), "1/3", 0)
    save_manifest(semi, tmp_path / "m.json")
    with pytest.raises(DataFormatError, match="pid 11"):
        load_manifest(tmp_path / "m.json").parts(_split(11).train)
