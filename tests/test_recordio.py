"""MXNet RecordIO: writer/reader round trip, hand-built files in the real layout, errors."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedfr.errors import DataFormatError
from fedfr.face.data import build_source
from fedfr.face.data.recordio import RecordIOSource, RecordIOWriter, write_source_as_recordio
from fedfr.face.data.synthetic import SyntheticFaces

MAGIC = 0xCED7230A


def _img(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _frame(cflag: int, data: bytes) -> bytes:
    """One framed part, written out by hand: magic, lrec, data, zero padding to 4 bytes."""
    pad = (-len(data)) % 4
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * pad


def _payload(flag: int, label: float, key: int, labels: tuple = (), image: bytes = b"") -> bytes:
    return (struct.pack("<IfQQ", flag, label, key, 0)
            + struct.pack(f"<{len(labels)}f", *labels) + image)


def _write_by_hand(folder: Path, records: list[tuple[int, bytes]]) -> None:
    """records: (key, framed bytes) -> train.rec + train.idx."""
    folder.mkdir(parents=True, exist_ok=True)
    blob, lines = b"", []
    for key, framed in records:
        lines.append(f"{key}\t{len(blob)}\n")
        blob += framed
    (folder / "train.rec").write_bytes(blob)
    (folder / "train.idx").write_text("".join(lines))


def test_writer_round_trip_exact(tmp_path: Path):
    images = {}
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write_header(12, 3)
        for key in range(1, 13):
            ident = (key - 1) // 4
            images[key] = _img(key, 6 + ident, 5)
            w.write(key, float(ident), images[key])
    src = RecordIOSource(tmp_path)  # the folder form
    assert len(src) == 12 and src.num_identities == 3
    assert src.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert src.identity_names == ["0", "1", "2"] and src.num_classes_header == 3
    for i in range(12):
        np.testing.assert_array_equal(src.load(i), images[i + 1])
    assert src.load_many([0, 11], 8).shape == (2, 3, 8, 8)
    # the .rec path form, and after pickling (a Ray actor gets a copy)
    same = pickle.loads(pickle.dumps(RecordIOSource(tmp_path / "train.rec")))
    np.testing.assert_array_equal(same.load(5), images[6])
    assert same.digest() == src.digest()
    assert build_source("recordio", root=str(tmp_path)).digest() == src.digest()


def test_hand_built_file_in_the_real_layout(tmp_path: Path):
    a, b, c = _img(1), _img(2, 3, 3), _img(3, 7, 2)
    records = [
        (0, _frame(0, _payload(2, 0.0, 0, (4.0, 2.0)))),  # header: images 1..3, 2 classes
        (1, _frame(0, _payload(0, 7.0, 1, image=_png(a)))),
        (2, _frame(0, _payload(0, 3.0, 2, image=_png(b)))),
        (3, _frame(0, _payload(0, 7.0, 3, image=_png(c)))),
    ]
    _write_by_hand(tmp_path, records)
    src = RecordIOSource(tmp_path / "train.rec", idx_path=tmp_path / "train.idx")
    # raw labels 7, 3, 7 renumbered in increasing order: 3 -> 0, 7 -> 1
    assert src.identity_names == ["3", "7"] and src.labels.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(src.load(0), a)
    np.testing.assert_array_equal(src.load(1), b)
    np.testing.assert_array_equal(src.load(2), c)


def test_flag_labels_use_the_first_label(tmp_path: Path):
    a, b = _img(4), _img(5)
    _write_by_hand(tmp_path, [
        (0, _frame(0, _payload(2, 0.0, 0, (3.0, 5.0)))),
        (1, _frame(0, _payload(3, 0.0, 1, (4.0, 0.5, 9.0), _png(a)))),
        (2, _frame(0, _payload(1, 0.0, 2, (2.0,), _png(b)))),
    ])
    src = RecordIOSource(tmp_path)
    assert src.identity_names == ["2", "4"] and src.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(src.load(0), a)
    np.testing.assert_array_equal(src.load(1), b)


def test_split_record_parts_are_joined_with_the_magic(tmp_path: Path):
    a = _img(6)
    magic_as_float = struct.unpack("<f", struct.pack("<I", MAGIC))[0]
    # labels put the magic word at payload offsets 28 and 36 (4-aligned): mxnet's writer cuts
    # there and drops the 4 magic bytes; the reader must put them back
    payload = _payload(4, 0.0, 1, (1.0, magic_as_float, 2.0, magic_as_float), _png(a))
    assert payload[28:32] == payload[36:40] == struct.pack("<I", MAGIC)
    split = _frame(1, payload[:28]) + _frame(2, payload[32:36]) + _frame(3, payload[40:])
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))), (1, split)])
    src = RecordIOSource(tmp_path)
    assert src.read_payload(1) == payload
    assert src.identity_names == ["1"]
    np.testing.assert_array_equal(src.load(0), a)
    # a split whose first part has cflag 2 is rejected
    bad = _frame(2, payload[:28]) + _frame(3, payload[32:])
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))), (1, bad)])
    with pytest.raises(DataFormatError, match="record key 1.*cflag 2"):
        RecordIOSource(tmp_path)


def test_writer_splits_at_the_magic_word(tmp_path: Path):
    magic_as_float = struct.unpack("<f", struct.pack("<I", MAGIC))[0]
    a = _img(7)
    with RecordIOWriter(tmp_path / "x.rec", tmp_path / "x.idx") as w:
        w.write_header(1, 1)
        w.write(1, [5.0, magic_as_float], a)  # second label sits at payload offset 28
    raw = (tmp_path / "x.rec").read_bytes()
    off = int((tmp_path / "x.idx").read_text().splitlines()[1].split("\t")[1])
    _, lrec = struct.unpack_from("<II", raw, off)
    assert lrec >> 29 == 1 and lrec & (2**29 - 1) == 28  # first part ends before the magic
    src = RecordIOSource(tmp_path / "x.rec")
    assert src.identity_names == ["5"]
    np.testing.assert_array_equal(src.load(0), a)


def test_jpeg_writer_and_source_conversion(tmp_path: Path):
    syn = SyntheticFaces(3, 2, size=16, seed=0)
    write_source_as_recordio(syn, tmp_path / "png")
    back = RecordIOSource(tmp_path / "png")
    assert back.labels.tolist() == syn.labels.tolist()
    np.testing.assert_array_equal(back.load(3), syn.load(3))
    write_source_as_recordio(syn, tmp_path / "jpg", fmt="jpeg")
    lossy = RecordIOSource(tmp_path / "jpg").load(3).astype(int)
    assert np.abs(lossy - syn.load(3).astype(int)).mean() < 20


def test_missing_idx_names_the_expected_path(tmp_path: Path):
    (tmp_path / "train.rec").write_bytes(_frame(0, _payload(2, 0.0, 0, (1.0, 0.0))))
    with pytest.raises(DataFormatError, match=r"train\.idx.*not found"):
        RecordIOSource(tmp_path)
    with pytest.raises(DataFormatError, match=r"nope\.rec.*not found"):
        RecordIOSource(tmp_path / "nope.rec")


def test_malformed_idx_line(tmp_path: Path):
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (1.0, 0.0))))])
    (tmp_path / "train.idx").write_text("0\t0\n1 oops\n")
    with pytest.raises(DataFormatError, match=r"train\.idx, line 2: malformed"):
        RecordIOSource(tmp_path)


def test_wrong_magic(tmp_path: Path):
    good = _frame(0, _payload(0, 1.0, 1, image=_png(_img(1))))
    bad = struct.pack("<I", 0xDEADBEEF) + good[4:]
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))), (1, bad)])
    with pytest.raises(DataFormatError,
                       match=r"record key 1 at byte offset 40.*0xDEADBEEF.*expected 0xCED7230A"):
        RecordIOSource(tmp_path)


def test_truncated_record(tmp_path: Path):
    rec = _frame(0, _payload(0, 1.0, 1, image=_png(_img(1))))
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))), (1, rec)])
    full = (tmp_path / "train.rec").read_bytes()
    (tmp_path / "train.rec").write_bytes(full[:-20])
    length = len(rec) - 8 - ((-len(rec)) % 4)
    with pytest.raises(DataFormatError, match=rf"train\.rec: record key 1 at byte offset 40: "
                                              rf"truncated record: expected {length} payload"):
        RecordIOSource(tmp_path)
    (tmp_path / "train.rec").write_bytes(full[:44])  # cut inside the 8-byte prefix
    with pytest.raises(DataFormatError, match="expected 8 header bytes at offset 40, 4 available"):
        RecordIOSource(tmp_path)


def test_header_names_missing_keys_and_undecodable_image(tmp_path: Path):
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (3.0, 1.0)))),
                              (1, _frame(0, _payload(0, 0.0, 1, image=b"garbage bytes")))])
    with pytest.raises(DataFormatError, match="keys 1..2.*first: 2"):
        RecordIOSource(tmp_path)
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))),
                              (1, _frame(0, _payload(0, 0.0, 1, image=b"garbage bytes")))])
    src = RecordIOSource(tmp_path)
    with pytest.raises(DataFormatError, match=r"record key 1 at byte offset 40.*cannot decode"):
        src.load(0)


def test_non_integer_label(tmp_path: Path):
    _write_by_hand(tmp_path, [(0, _frame(0, _payload(2, 0.0, 0, (2.0, 1.0)))),
                              (1, _frame(0, _payload(0, 2.5, 1, image=_png(_img(0)))))])
    with pytest.raises(DataFormatError, match="record key 1.*label 2.5"):
        RecordIOSource(tmp_path)
