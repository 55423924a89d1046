"""Re-ID dataset readers on tiny files written in each dataset's exact layout, and on the real
Market-1501 mini sample."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data import fixtures as fx
from fedfr.reid.data.registry import get_dataset, list_datasets, register_dataset
from fedfr.reid.data.summary import format_summary, split_summary

MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reid" / "market1501-mini"
if not MINI.is_dir():
    MINI = Path("/work/shared/data/reid/market1501-mini")


def _ids(recs):
    return sorted({r.pid for r in recs})


# ----------------------------------------------------------------------------------- registry
def test_registry_lists_every_reader_and_names_the_known_ones():
    names = list_datasets()
    for n in ("market1501", "dukemtmcreid", "cuhk03", "msmt17", "viper", "grid", "ilids", "prid",
              "prid450s", "synth-market", "synth-viper", "synth-public"):
        assert n in names
    with pytest.raises(ConfigError, match="unknown re-ID dataset 'market'.*market1501"):
        get_dataset("market", ".")


def test_register_refuses_a_taken_name_and_unknown_options(tmp_path):
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset("market1501")(lambda root: None)
    with pytest.raises(ConfigError, match="unknown option 'split'.*split_id"):
        get_dataset("viper", tmp_path, split=1)


# ----------------------------------------------------------------------------------- Market
def test_market_standard_layout_drops_junk_keeps_distractors(tmp_path):
    fx.write_market(tmp_path, train=[(2, 1), (2, 3), (7, 6)], query=[(5, 1), (5, 2)],
                    gallery=[(5, 3), (0, 4), (-1, 2), (5, 6)])
    s = get_dataset("market1501", tmp_path)
    assert s.meta["layout"] == "standard"
    assert [(r.pid, r.camid) for r in s.train] == [(2, 0), (2, 2), (7, 5)]
    assert sorted((r.pid, r.camid) for r in s.gallery) == [(0, 3), (5, 2), (5, 5)]  # -1 dropped
    assert s.train_labels()[0] == [0, 0, 1]


def test_market_flat_legacy_and_direct_layouts(tmp_path):
    base = fx.write_market(tmp_path / "a", [(1, 1)], [(2, 1)], [(2, 2)], inner=None)
    assert get_dataset("market1501", tmp_path / "a").meta["layout"] == "flat-legacy"
    assert get_dataset("market1501", base).meta["layout"] == "direct"


def test_market_errors_name_the_file(tmp_path):
    base = fx.write_market(tmp_path, [(1, 1)], [(2, 1)], [(2, 2)])
    bad = base / "query" / "person2.jpg"
    fx.tiny_image(bad, 1)
    with pytest.raises(DataFormatError, match="person2.jpg: file name does not match"):
        get_dataset("market1501", tmp_path)
    bad.unlink()
    fx.tiny_image(base / "query" / "0002_c7s1_000001_01.jpg", 1)
    with pytest.raises(DataFormatError, match="0002_c7s1_000001_01.jpg: camera 7 outside"):
        get_dataset("market1501", tmp_path)


def test_market_missing_folder_and_corrupt_image(tmp_path):
    with pytest.raises(DataFormatError, match="no market1501 data found"):
        get_dataset("market1501", tmp_path)
    base = fx.write_market(tmp_path, [(1, 1)], [(2, 1)], [(2, 2)])
    (base / "bounding_box_test").rename(base / "gallery")
    with pytest.raises(DataFormatError, match="bounding_box_test: missing folder"):
        get_dataset("market1501", tmp_path)
    (base / "gallery").rename(base / "bounding_box_test")
    victim = next((base / "bounding_box_test").iterdir())
    victim.write_bytes(b"\xff\xd8 not really a jpeg")
    assert len(get_dataset("market1501", tmp_path).gallery) == 1  # listing does not open images
    with pytest.raises(DataFormatError, match=f"{victim.name}: unreadable or corrupt image"):
        get_dataset("market1501", tmp_path, verify_images=True)


@pytest.mark.skipif(not MINI.is_dir(), reason="shared market1501-mini sample not present")
def test_market1501_mini_real_files_match_its_readme():
    s = get_dataset("market1501", MINI, verify_images=True)
    assert (len(s.train), len(s.query), len(s.gallery)) == (32, 32, 32)
    assert len(_ids(s.train)) == 16 and _ids(s.query) == _ids(s.gallery)
    assert len(_ids(s.query)) == 16 and not set(_ids(s.train)) & set(_ids(s.query))
    assert {r.camid for r in s.train + s.query + s.gallery} == set(range(6))
    assert all(r.pid > 0 for r in s.gallery)  # no distractors, no junk
    summ = split_summary(s)
    assert summ["query-without-cross-camera-match"] == 2
    per_query = [sum(1 for g in s.gallery if g.pid == q.pid and g.camid != q.camid)
                 for q in s.query]
    assert sorted(per_query).count(0) == 2 and per_query.count(1) == 6
    assert per_query.count(2) == 24
    assert "| query | 32 | 16 |" in format_summary(s)


# ----------------------------------------------------------------------------------- Duke
def test_duke_layout_and_eight_cameras(tmp_path):
    fx.write_market(tmp_path, [(5, 8), (5, 2)], [(9, 1)], [(9, 7)], inner="DukeMTMC-reID",
                    dataset_dir="dukemtmc-reid", duke_names=True)
    s = get_dataset("dukemtmcreid", tmp_path)
    assert [(r.pid, r.camid) for r in s.train] == [(5, 1), (5, 7)]  # sorted by name
    assert s.query[0].path.name == "0009_c1_f0000000.jpg"


# ----------------------------------------------------------------------------------- MSMT17
@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_lists(tmp_path, version):
    fx.write_msmt17(tmp_path, version)
    s = get_dataset("msmt17", tmp_path)
    assert s.meta["version"] == version and len(s.train) == 6 and s.meta["val-images"] == 6
    assert sorted({r.camid for r in s.train}) == [0, 11]  # cameras 01 and 12, two digits
    assert all(r.path.is_file() for r in s.train + s.query + s.gallery)
    assert len(get_dataset("msmt17", tmp_path, combineall=True).train) == 12


def test_msmt17_bad_line_names_file_and_line(tmp_path):
    base = fx.write_msmt17(tmp_path)
    with open(base / "list_query.txt", "a") as fh:
        fh.write("0001/broken.jpg\n")
    with pytest.raises(DataFormatError, match=r"list_query.txt:7: expected '<relpath> <pid>'"):
        get_dataset("msmt17", tmp_path)


# ----------------------------------------------------------------------------------- VIPeR
def test_viper_twenty_seeded_splits(tmp_path):
    fx.write_viper(tmp_path, ids=8)
    s0, s1 = get_dataset("viper", tmp_path, split_id=0), get_dataset("viper", tmp_path, split_id=1)
    assert len(s0.train) == 8 and len(s0.query) == len(s0.gallery) == 4
    assert _ids(s0.train) == _ids(s1.train) and not set(_ids(s0.train)) & set(_ids(s0.query))
    assert {r.camid for r in s0.query} == {0} and {r.camid for r in s1.query} == {1}
    assert [r.path for r in s0.query] == [r.path for r in s1.gallery]
    for q, g in zip(s0.query, s0.gallery, strict=True):
        assert q.pid == g.pid and q.path.stem.split("_")[0] == g.path.stem.split("_")[0]
    again = get_dataset("viper", tmp_path, split_id=0)
    assert [r.path for r in again.train] == [r.path for r in s0.train]
    others = {tuple(_ids(get_dataset("viper", tmp_path, split_id=2 * k).train)) for k in range(10)}
    assert len(others) > 3
    assert _ids(get_dataset("viper", tmp_path, seed=5).train) != _ids(s0.train) or \
        _ids(get_dataset("viper", tmp_path, seed=6).train) != _ids(s0.train)
    with pytest.raises(DataFormatError, match="split_id 20 out of range"):
        get_dataset("viper", tmp_path, split_id=20)


def test_viper_pairing_mismatch_is_an_error(tmp_path):
    base = fx.write_viper(tmp_path, ids=3)
    (base / "cam_b" / "003_90.bmp").rename(base / "cam_b" / "004_90.bmp")
    with pytest.raises(DataFormatError, match="004_90.bmp: pairs with .*003_45.bmp"):
        get_dataset("viper", tmp_path)


# ----------------------------------------------------------------------------------- iLIDS
def test_ilids_splits(tmp_path):
    fx.write_ilids(tmp_path, ids=7, per_id=4)
    s = get_dataset("ilids", tmp_path, split_id=3)
    assert len(_ids(s.train)) == 3 and len(s.train) == 12
    assert len(s.query) == len(s.gallery) == 4
    for q, g in zip(s.query, s.gallery, strict=True):
        assert q.pid == g.pid and q.path != g.path and q.camid != g.camid
    assert s.query[0].camid == int(s.query[0].path.name[4:7]) - 1
    fx.tiny_image(s.root / "0008001.jpg", 3)
    with pytest.raises(DataFormatError, match="person 0008 has 1 image"):
        get_dataset("ilids", tmp_path)


# ----------------------------------------------------------------------------------- PRID
def test_prid_single_shot(tmp_path):
    fx.write_prid(tmp_path, shared=6, only_a=2, only_b=4)
    s = get_dataset("prid", tmp_path, num_shared=6, split_id=4)
    assert len(s.train) == 6 and len(s.query) == 3 and len(s.gallery) == 3 + 4
    assert _ids(s.gallery)[-4:] == [7, 8, 9, 10] and {r.camid for r in s.gallery} == {1}
    assert max(_ids(s.query)) <= 6 and not set(_ids(s.train)) & set(_ids(s.query))
    with pytest.raises(DataFormatError, match="cam_a/person_0009.png: missing"):
        get_dataset("prid", tmp_path, num_shared=9)


def test_prid450s_protocols_and_masks_ignored(tmp_path):
    fx.write_prid450s(tmp_path, ids=6)
    s = get_dataset("prid450s", tmp_path, split_id=9)
    assert len(s.train) == 6 and len(s.query) == len(s.gallery) == 6
    assert not any("man_" in r.path.name for r in s.train + s.query)
    ab = get_dataset("prid450s", tmp_path, split_id=9, protocol="a-to-b")
    assert {r.camid for r in ab.query} == {0} and {r.camid for r in ab.gallery} == {1}
    assert _ids(ab.train) == _ids(s.train)
    (s.root / "cam_b" / "img_0002.png").unlink()
    with pytest.raises(DataFormatError, match="img_0002.png: missing"):
        get_dataset("prid450s", tmp_path)


# ----------------------------------------------------------------------------------- GRID
def test_grid_partitions_from_the_mat(tmp_path):
    fx.write_grid(tmp_path, ids=6, distractors=3)
    s = get_dataset("grid", tmp_path, split_id=1)
    assert _ids(s.train) == [2, 3, 4] and len(s.train) == 6
    assert _ids(s.query) == [1, 5, 6] and _ids(s.gallery) == [0, 1, 5, 6]
    assert len(s.gallery) == 3 + 3
    assert all(0 <= r.camid <= 7 for r in s.train + s.query + s.gallery)
    (s.root / "features_and_partitions.mat").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="features_and_partitions.mat"):
        get_dataset("grid", tmp_path)


# ----------------------------------------------------------------------------------- CUHK03
def test_cuhk03_new_protocol_on_extracted_images(tmp_path):
    fx.write_cuhk03_images(tmp_path, "detected")
    fx.write_cuhk03_new_protocol(tmp_path, "detected")
    s = get_dataset("cuhk03", tmp_path)
    assert s.meta["protocol"] == "cuhk03-new" and s.meta["boxes"] == "detected"
    assert len(_ids(s.train)) == 4 and len(s.train) == 15
    assert len(s.query) == 4 and len(s.gallery) == 11
    assert {r.camid for r in s.gallery} == {0, 1}
    assert all(r.path.parent.name == "images_detected" for r in s.train)
    s.train[0].path.unlink()
    with pytest.raises(DataFormatError, match="1_001_1_01.png: missing image"):
        get_dataset("cuhk03", tmp_path)


def test_cuhk03_without_h5py_says_which_package(tmp_path, monkeypatch):
    fx.write_cuhk03_new_protocol(tmp_path, "labeled")
    (tmp_path / "cuhk03" / "cuhk03_release").mkdir()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataFormatError, match="needs the 'h5py' package"):
        get_dataset("cuhk03", tmp_path, labeled=True)


def test_cuhk03_extracts_the_v73_mat_and_reads_both_protocols(tmp_path):
    pytest.importorskip("h5py")
    fx.write_cuhk03_mat(tmp_path)
    for kind in ("detected", "labeled"):
        fx.write_cuhk03_new_protocol(tmp_path, kind)
    out = tmp_path / "extract"
    s = get_dataset("cuhk03", tmp_path, labeled=True, extract_dir=out)
    names = sorted(p.name for p in (out / "images_labeled").iterdir())
    assert names[:4] == ["1_001_1_01.png", "1_001_1_02.png", "1_001_2_06.png", "1_001_2_07.png"]
    assert "1_004_2_07.png" not in names and len(names) == 2 * (3 * 4 + 3)
    assert len(s.train) == 15 and not list(out.glob(".images_*"))  # no temp folder left
    c = get_dataset("cuhk03", tmp_path, classic=True, split_id=5, extract_dir=out)
    assert c.meta["protocol"] == "cuhk03-classic"
    assert _ids(c.query) == [1002, 1004, 2002, 2004] and c.query == c.gallery
    assert 1001 in _ids(c.train) and not set(_ids(c.train)) & set(_ids(c.query))
    with pytest.raises(DataFormatError, match="split_id 20 out of range"):
        get_dataset("cuhk03", tmp_path, classic=True, split_id=20, extract_dir=out)


# ------------------------------------------------------------------- torchreid split files
def test_torchreid_split_files_are_reproduced(tmp_path):
    vbase = fx.write_viper(tmp_path, ids=4)
    a = sorted((vbase / "cam_a").iterdir())
    b = sorted((vbase / "cam_b").iterdir())
    elsewhere = "/home/someone/data/viper/VIPeR"
    train = [[f"{elsewhere}/cam_a/{a[3].name}", 0, 0], [f"{elsewhere}/cam_b/{b[3].name}", 0, 1]]
    split = {"train": train, "query": [[f"{elsewhere}/cam_a/{a[0].name}", 0, 0]],
             "gallery": [[f"{elsewhere}/cam_b/{b[0].name}", 0, 1]]}
    (tmp_path / "viper_splits.json").write_text(json.dumps([split] * 20))
    s = get_dataset("viper", tmp_path, split_id=7, split_file=tmp_path / "viper_splits.json")
    assert [r.path for r in s.train] == [a[3], b[3]] and [r.pid for r in s.train] == [3, 3]
    assert s.query[0].path == a[0] and s.gallery[0].camid == 1
    split["query"][0][0] = f"{elsewhere}/cam_a/999_0.bmp"
    (tmp_path / "viper_splits.json").write_text(json.dumps([split] * 20))
    with pytest.raises(DataFormatError, match="cam_a/999_0.bmp is not in the dataset"):
        get_dataset("viper", tmp_path, split_file=tmp_path / "viper_splits.json")

    fx.write_ilids(tmp_path, ids=3, per_id=2)
    names = {"train": ["0001001.jpg", "0001002.jpg"], "query": ["0002002.jpg", "0003001.jpg"],
             "gallery": ["0002001.jpg", "0003002.jpg"]}
    (tmp_path / "ilids.json").write_text(json.dumps([names]))
    s = get_dataset("ilids", tmp_path, split_file=tmp_path / "ilids.json")
    assert [r.path.name for r in s.query] == names["query"] and [r.pid for r in s.train] == [1, 1]

    fx.write_prid(tmp_path, shared=4, only_a=0, only_b=1)
    (tmp_path / "prid.json").write_text(json.dumps([{"train": [4, 2], "test": [1, 3]}] * 10))
    s = get_dataset("prid", tmp_path, num_shared=4, split_id=2, split_file=tmp_path / "prid.json")
    assert _ids(s.train) == [2, 4] and _ids(s.query) == [1, 3] and _ids(s.gallery) == [1, 3, 5]

    pbase = fx.write_prid450s(tmp_path, ids=4)
    tr = [["/x/prid450s/cam_a/img_0002.png", 0, 0], ["/x/prid450s/cam_b/img_0002.png", 0, 1],
          ["/x/prid450s/cam_a/img_0004.png", 1, 0], ["/x/prid450s/cam_b/img_0004.png", 1, 1]]
    (tmp_path / "p450.json").write_text(json.dumps([{"train": tr, "query": [], "gallery": []}]))
    s = get_dataset("prid450s", tmp_path, split_file=tmp_path / "p450.json")
    assert _ids(s.train) == [2, 4] and _ids(s.query) == [1, 3] and s.root == pbase
    with pytest.raises(DataFormatError, match="split_id 1 out of range"):
        get_dataset("prid450s", tmp_path, split_id=1, split_file=tmp_path / "p450.json")
