"""Video re-ID readers on tiny files written in the real layouts."""

from __future__ import annotations

import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.video import get_video_dataset, list_video_datasets
from fedfr.reid.data.video.fixtures import (
    write_dukev,
    write_ilidsvid,
    write_mars,
    write_prid2011,
)

TRAIN = [(1, 1, 3), (1, 2, 2), (2, 3, 4)]
# rows: 0 q pid5 c1 | 1 g pid5 c2 | 2 g pid5 c1 | 3 q pid6 c2 | 4 g pid6 c3 | 5 distractor | 6 junk
TEST = [(5, 1, 3), (5, 2, 2), (5, 1, 1), (6, 2, 12), (6, 3, 2), (0, 4, 2), (-1, 5, 2)]
QUERY = [0, 3]


def test_registry_lists_video_sets():
    names = list_video_datasets()
    for n in ("mars", "dukemtmcvidreid", "ilidsvid", "prid2011"):
        assert n in names
    with pytest.raises(ConfigError, match="unknown re-ID video dataset"):
        get_video_dataset("nope", ".")


def test_mars_layout_and_gallery_rules(tmp_path):
    base = write_mars(tmp_path, TRAIN, TEST, QUERY, reverse_names=True)
    s = get_video_dataset("mars", tmp_path)
    assert s.root == base and len(s.test) == 7 and s.query_index == QUERY
    assert [(t.pid, t.camid, len(t)) for t in s.train] == [(1, 0, 3), (1, 1, 2), (2, 2, 4)]
    # frames in numeric order although the names file lists them reversed; F010 after F009
    long = s.test[3]
    assert [p.name for p in long.paths][8:10] == ["0006C2T0001F009.jpg", "0006C2T0001F010.jpg"]
    assert long.paths[0].parent == base / "bbox_test" / "0006"
    assert [t.pid for t in s.query] == [5, 6]
    assert [t.pid for t in s.gallery] == [5, 5, 6, 0]  # torchreid: test - query - junk
    assert s.test[6].pid == -1 and s.test[6].paths[0].parent.name == "00-1"
    off = get_video_dataset("mars", tmp_path, gallery="official")
    assert len(off.gallery) == 6
    cf = get_video_dataset("mars", tmp_path, gallery="cfaan")
    assert [t.pid for t in cf.gallery] == [5, 5, 6]
    assert get_video_dataset("mars", tmp_path, verify_frames=True).summary()["train-frames"] == 9


def test_mars_clean_labels(tmp_path):
    clean = [(5, 0), (5, 0), (7, 0), (6, 5), (6, 0), (8, 0), (-1, 0)]
    write_mars(tmp_path, TRAIN, TEST, QUERY, clean=clean)
    s = get_video_dataset("mars", tmp_path, clean=True)
    assert [t.pid for t in s.test] == [5, 5, 7, 6, 6, 8, -1]
    assert [t.orig_pid for t in s.test] == [5, 5, 5, 6, 6, 0, -1]
    assert s.test[3].ambi == 5 and s.test[0].ambi is None
    # the gallery rules act on the original labels: the relabelled distractor (row 5) is
    # dropped by CF-AAN's rule
    cf = get_video_dataset("mars", tmp_path, clean=True, gallery="cfaan")
    assert [t.pid for t in cf.gallery] == [5, 7, 6]


def test_mars_errors_name_the_file(tmp_path):
    base = write_mars(tmp_path, TRAIN, TEST, QUERY)
    (base / "info" / "query_IDX.mat").unlink()
    with pytest.raises(DataFormatError, match="query_IDX.mat"):
        get_video_dataset("mars", tmp_path)
    write_mars(tmp_path / "b", TRAIN, TEST, QUERY)
    names = tmp_path / "b" / "mars" / "info" / "test_name.txt"
    lines = names.read_text().splitlines()
    lines[0] = lines[0].replace("0005C1", "0005C3")
    names.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="row 1.*camera 3"):
        get_video_dataset("mars", tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown option"):
        get_video_dataset("mars", tmp_path / "b", galery="x")


@pytest.mark.parametrize("old", [False, True])
def test_dukev(tmp_path, old):
    parts = {"train": [(1, 1, 3), (1, 2, 12)], "query": [(3, 1, 2)],
             "gallery": [(3, 2, 2), (9, 5, 1)]}
    write_dukev(tmp_path, parts, old_names=old)
    s = get_video_dataset("dukemtmcvidreid", tmp_path)
    assert [(t.pid, t.camid, len(t)) for t in s.train] == [(1, 0, 3), (1, 1, 12)]
    assert [f.name.split("F")[1][:4] for f in s.train[1].paths][8:11] == ["0009", "0010", "0011"]
    assert [t.pid for t in s.gallery] == [3, 9]
    assert len(get_video_dataset("dukemtmcvidreid", tmp_path, min_seq_len=3).train) == 2
    assert len(get_video_dataset("dukemtmcvidreid", tmp_path, min_seq_len=4).train) == 1


def test_dukev_mixed_cameras_fail(tmp_path):
    base = write_dukev(tmp_path, {"train": [(1, 1, 2)], "query": [], "gallery": []})
    tdir = base / "train" / "0001" / "0001"
    (tdir / "0001_C1_F0002_X00001.jpg").rename(tdir / "0001_C2_F0002_X00001.jpg")
    with pytest.raises(DataFormatError, match="cameras"):
        get_video_dataset("dukemtmcvidreid", tmp_path)


def test_ilidsvid_split_and_numeric_frames(tmp_path):
    write_ilidsvid(tmp_path, people=6, frames=4)
    s = get_video_dataset("ilidsvid", tmp_path, split_id=2)
    assert len(s.train) == 6 and len(s.query) == 3 and len(s.gallery) == 3
    assert {t.camid for t in s.query} == {0} and {t.camid for t in s.gallery} == {1}
    assert [p.name for p in s.query[0].paths][:3] == [
        f"cam1_person{s.query[0].pid:03d}_{n}.png" for n in (8, 9, 10)]
    assert {t.pid for t in s.query} | {t.pid for t in s.train} == {1, 3, 5, 7, 9, 11}
    assert {t.pid for t in s.query}.isdisjoint({t.pid for t in s.train})
    with pytest.raises(DataFormatError, match="split_id"):
        get_video_dataset("ilidsvid", tmp_path, split_id=10)


def test_prid2011_seeded_and_json(tmp_path):
    frames_a = {1: 30, 2: 28, 3: 27, 4: 5, 5: 40, 7: 30}
    frames_b = {1: 27, 2: 30, 3: 29, 4: 40, 5: 30, 6: 30}
    write_prid2011(tmp_path, frames_a, frames_b)
    s = get_video_dataset("prid2011", tmp_path, split_id=1)
    people = {t.pid for t in s.train} | {t.pid for t in s.query}
    assert people == {1, 2, 3, 5}  # both cameras, >= 27 frames each
    assert len(s.query) == 2 and len(s.train) == 4
    assert s.meta["split_source"] == "seed 0"
    again = get_video_dataset("prid2011", tmp_path, split_id=1)
    assert [t.pid for t in again.query] == [t.pid for t in s.query]
    splits = [{"train": ["person_0001"], "test": ["person_0004", "person_0002"]}] * 10
    write_prid2011(tmp_path / "j", {1: 2, 2: 2, 4: 2}, {1: 2, 2: 2, 4: 2}, splits=splits)
    j = get_video_dataset("prid2011", tmp_path / "j")
    assert [t.pid for t in j.query] == [2, 4] and [t.pid for t in j.train] == [1, 1]
