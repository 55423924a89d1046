"""MXNet RecordIO (insightface ``train.rec`` + ``train.idx``) in pure Python: reader and writer.

File layout. ``.idx``: text, one ``key<TAB>offset`` per line (offset of the record in ``.rec``).
``.rec``: records, each ``uint32 magic 0xCED7230A``, ``uint32 lrec`` (cflag = lrec >> 29,
length = lrec & (2**29 - 1)), ``length`` payload bytes, zero padding to a multiple of 4. cflag 0
is a whole record; a payload holding the magic word at a 4-byte aligned position is written as
parts with cflag 1 (first), 2 (middle), 3 (last), the magic word itself dropped at each cut and
put back when the parts are joined.

Payload: header ``<IfQQ`` (flag, label float32, id, id2); if flag > 0, ``flag`` float32 labels
follow (the label field is then unused); then the encoded image (JPEG/PNG). Record 0 is a header
whose labels are ``[last_image_key + 1, num_classes]``: images are keys 1..label[0]-1.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fedfr.digest import files_fingerprint
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.folder import decode_image
from fedfr.face.data.source import FaceSource

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
_HEAD = struct.Struct("<IfQQ")
_PREFIX = struct.Struct("<II")


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def pack_payload(label: float | Sequence[float], image: bytes, id: int = 0, id2: int = 0
                 ) -> bytes:
    """Record payload: ``<IfQQ`` header, the labels if ``label`` is a sequence, the image bytes."""
    if isinstance(label, Sequence | np.ndarray):
        labels = np.asarray(label, dtype="<f4").reshape(-1)
        return _HEAD.pack(len(labels), 0.0, id, id2) + labels.tobytes() + image
    return _HEAD.pack(0, float(label), id, id2) + image


def encode_record(payload: bytes) -> bytes:
    """Frame a payload as mxnet's writer does: split at 4-aligned magic words, pad to 4 bytes."""
    out = bytearray()
    start = 0
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if payload[i:i + 4] == _MAGIC_BYTES:
            out += _PREFIX.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (i - start))
            out += payload[start:i]
            start = i + 4
    rest = len(payload) - start
    out += _PREFIX.pack(MAGIC, ((3 if start else 0) << 29) | rest)
    out += payload[start:]
    out += b"\0" * (_pad4(rest) - rest)
    return bytes(out)


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """(H, W, 3) or (H, W) uint8 -> PNG bytes (lossless) or JPEG quality 95 bytes."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an (H, W, 3) or (H, W) uint8 image, got {arr.dtype} "
                         f"{arr.shape}")
    fmt = fmt.lower()
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(arr).save(buf, format="PNG")
    elif fmt in ("jpeg", "jpg"):
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    else:
        raise ConfigError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def read_idx(idx_path: Path) -> dict[int, int]:
    """Parse a ``.idx`` file into {key: byte offset}."""
    if not idx_path.is_file():
        raise DataFormatError(f"{idx_path}: RecordIO index file not found; expected a text file "
                              "of 'key<TAB>offset' lines next to the .rec file")
    out: dict[int, int] = {}
    with open(idx_path, encoding="ascii", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 2:
                    raise ValueError
                key, offset = int(fields[0]), int(fields[1])
                if key < 0 or offset < 0:
                    raise ValueError
            except ValueError:
                raise DataFormatError(
                    f"{idx_path}, line {n}: malformed index line {line.rstrip()!r}; expected "
                    "'key<TAB>offset' with two non-negative integers") from None
            if key in out:
                raise DataFormatError(f"{idx_path}, line {n}: key {key} appears twice")
            out[key] = offset
    if not out:
        raise DataFormatError(f"{idx_path}: empty RecordIO index; expected 'key<TAB>offset' lines")
    return out


class RecordIOSource(FaceSource):
    """Images of an MXNet RecordIO file, in key order 1..label0[0]-1 (header record 0).

    ``path`` is the ``.rec`` file or a folder holding ``train.rec`` and ``train.idx``;
    ``idx_path`` defaults to the ``.rec`` path with suffix ``.idx``. Labels are the records'
    (first) float labels, renumbered 0..K-1 in increasing order; ``identity_names`` keeps the
    original label values. Record 0 is the header when it carries >= 2 labels (flag >= 2);
    without one, every key of the index is an image.
    """

    def __init__(self, path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        p = Path(path)
        if p.is_dir():
            self.rec_path = p / "train.rec"
            default_idx = p / "train.idx"
        else:
            self.rec_path = p
            default_idx = p.with_suffix(".idx")
        self.idx_path = Path(idx_path) if idx_path is not None else default_idx
        if not self.rec_path.is_file():
            raise DataFormatError(f"{self.rec_path}: RecordIO file not found; expected a .rec "
                                  "file or a folder holding train.rec and train.idx")
        self.name = self.rec_path.stem if p.is_file() else p.name
        self._mm: mmap.mmap | None = None
        self._lock = threading.Lock()
        self.offsets = read_idx(self.idx_path)
        self.num_classes_header: int | None = None
        keys: list[int]
        head0 = self._read_head(0) if 0 in self.offsets else None
        if head0 is not None and head0[0] >= 2:
            labels = head0[1]
            if not all(math.isfinite(x) for x in labels[:2]):
                raise DataFormatError(
                    f"{self._where(0)}: header record has labels {list(labels)}; expected "
                    "[last_image_key + 1, num_classes]")
            last, self.num_classes_header = int(labels[0]), int(labels[1])
            keys = list(range(1, last))
            missing = [k for k in keys if k not in self.offsets]
            if missing:
                raise DataFormatError(
                    f"{self.idx_path}: header record says images are keys 1..{last - 1}, but "
                    f"{len(missing)} of them are not in the index (first: {missing[0]})")
        else:
            keys = sorted(self.offsets)
        if not keys:
            raise DataFormatError(f"{self.rec_path}: no image records")
        raw = np.empty(len(keys), dtype=np.float64)
        for n, key in enumerate(keys):
            flag, labels = self._read_head(key)
            value = float(labels[0]) if flag > 0 else float(labels)
            if not math.isfinite(value) or value != int(value):
                raise DataFormatError(f"{self._where(key)}: label {value} is not an integer "
                                      "class id")
            raw[n] = value
        self.keys = np.asarray(keys, dtype=np.int64)
        classes, labels_ = np.unique(raw.astype(np.int64), return_inverse=True)
        self.labels = labels_.astype(np.int64).reshape(-1)
        self.identity_names = [str(int(c)) for c in classes]

    # --------------------------------------------------------------------------------------------
    def _map(self) -> mmap.mmap:
        with self._lock:
            if self._mm is None:
                with open(self.rec_path, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size == 0:
                        raise DataFormatError(f"{self.rec_path}: empty RecordIO file; expected "
                                              "records starting with magic 0xCED7230A")
                    self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            return self._mm

    def _where(self, key: int) -> str:
        return f"{self.rec_path}: record key {key} at byte offset {self.offsets.get(key)}"

    def _part(self, key: int, pos: int) -> tuple[int, int, int]:
        """Check the part framed at ``pos``: (cflag, payload start, payload length)."""
        mm = self._map()
        size = len(mm)
        if pos + 8 > size:
            raise DataFormatError(
                f"{self._where(key)}: truncated record: expected 8 header bytes at offset {pos}, "
                f"{max(0, size - pos)} available (file size {size})")
        magic, lrec = _PREFIX.unpack_from(mm, pos)
        if magic != MAGIC:
            raise DataFormatError(
                f"{self._where(key)}: bad magic 0x{magic:08X} at offset {pos}, expected "
                f"0x{MAGIC:08X} (not a RecordIO file, or the index does not match it)")
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        if pos + 8 + length > size:
            raise DataFormatError(
                f"{self._where(key)}: truncated record: expected {length} payload bytes at "
                f"offset {pos + 8}, {size - pos - 8} available (file size {size})")
        return cflag, pos + 8, length

    def read_payload(self, key: int) -> bytes:
        """The whole payload of record ``key`` (split parts joined)."""
        if key not in self.offsets:
            raise DataFormatError(f"{self.idx_path}: no record key {key} in the index")
        mm = self._map()
        pos = self.offsets[key]
        parts: list[bytes] = []
        while True:
            cflag, start, length = self._part(key, pos)
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                raise DataFormatError(
                    f"{self._where(key)}: part {len(parts)} at offset {pos} has cflag {cflag}, "
                    f"expected one of {expected}")
            parts.append(mm[start:start + length])
            pos = start + _pad4(length)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)

    def _read_head(self, key: int) -> tuple[int, float | np.ndarray]:
        """(flag, label) of record ``key``: the float label if flag is 0, else the labels."""
        cflag, start, length = self._part(key, self.offsets[key])
        mm = self._map()
        if cflag == 0 and length < _HEAD.size:
            raise DataFormatError(f"{self._where(key)}: payload of {length} bytes, expected at "
                                  f"least {_HEAD.size} (header <IfQQ)")
        flag = _PREFIX.unpack_from(mm, start)[0] if length >= 4 else 0
        need = _HEAD.size + 4 * flag
        if cflag == 0 and length >= need:
            head = mm[start:start + need]
        elif cflag == 1 and length >= need:
            head = mm[start:start + need]
            self.read_payload(key)  # validates the remaining parts' framing
        else:
            head = self.read_payload(key)
        return self._parse_head(key, head)[:2]

    def _parse_head(self, key: int, payload: bytes) -> tuple[int, float | np.ndarray, int]:
        if len(payload) < _HEAD.size:
            raise DataFormatError(f"{self._where(key)}: payload of {len(payload)} bytes, "
                                  f"expected at least {_HEAD.size} (header <IfQQ)")
        flag, label, _, _ = _HEAD.unpack_from(payload, 0)
        end = _HEAD.size + 4 * flag
        if flag > 0:
            if len(payload) < end:
                raise DataFormatError(
                    f"{self._where(key)}: header flag {flag} needs {end} bytes of header and "
                    f"labels, the payload has {len(payload)}")
            return flag, np.frombuffer(payload, dtype="<f4", count=flag, offset=_HEAD.size), end
        return 0, label, end

    # --------------------------------------------------------------------------------------------
    def load(self, i: int) -> np.ndarray:
        key = int(self.keys[self._check_index(int(i))])
        payload = self.read_payload(key)
        _, _, end = self._parse_head(key, payload)
        if end >= len(payload):
            raise DataFormatError(f"{self._where(key)}: record holds no image bytes; expected "
                                  "an encoded JPEG/PNG after the header")
        return decode_image(payload[end:], f"{self._where(key)} (image {i})")

    def describe(self) -> dict:
        return {"kind": "recordio", "path": str(self.rec_path.resolve()), "num_images": len(self),
                "num_identities": self.num_identities}

    def digest_extra(self) -> bytes:
        """The image keys (their order defines the image indices) and the portable content
        fingerprints of the .rec and .idx files (``fedfr.digest``)."""
        if "_content" not in self.__dict__:  # read once per source object
            self._content = files_fingerprint([self.rec_path, self.idx_path], "portable",
                                              what="RecordIO file")
        return np.ascontiguousarray(self.keys, dtype="<i8").tobytes() + self._content.encode()

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mm"] = state["_lock"] = None  # the file is mapped again on first use
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class RecordIOWriter:
    """Write a ``.rec`` + ``.idx`` pair (context manager).

    ``write_header(num_images, num_classes)`` writes record 0; ``write(key, label, image)`` one
    image record (``id`` = key). Images may be encoded bytes or (H, W, 3) uint8 arrays, encoded as
    ``fmt`` ("png", lossless, or "jpeg", quality 95).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike,
                 fmt: str = "png"):
        self.rec_path, self.idx_path, self.fmt = Path(rec_path), Path(idx_path), fmt
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self.idx_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w", encoding="ascii")
        self._keys: set[int] = set()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_payload(self, key: int, payload: bytes) -> int:
        """Append a raw payload as record ``key``; returns its byte offset."""
        key = int(key)
        if key < 0 or key in self._keys:
            raise ValueError(f"{self.rec_path}: record key {key} is negative or already written")
        self._keys.add(key)
        offset = self._rec.tell()
        self._rec.write(encode_record(payload))
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def write_header(self, num_images: int, num_classes: int) -> None:
        """Record 0: labels [num_images + 1, num_classes] (images are keys 1..num_images)."""
        self.write_payload(0, pack_payload([num_images + 1, num_classes], b""))

    def write(self, key: int, label: float | Sequence[float], image: bytes | np.ndarray,
              fmt: str | None = None) -> None:
        """Record ``key``: one float label (or a list: flag = its length) and an image."""
        data = image if isinstance(image, bytes | bytearray) else encode_image(image,
                                                                              fmt or self.fmt)
        self.write_payload(key, pack_payload(label, bytes(data), id=int(key)))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()


def write_source_as_recordio(source: FaceSource, out_dir: str | os.PathLike, fmt: str = "png"
                             ) -> Path:
    """Convert any ``FaceSource`` to ``out_dir/train.rec`` + ``train.idx`` (keys 1..N, header 0).

    Returns ``out_dir``; ``RecordIOSource(out_dir)`` reads it back with the same labels.
    """
    out = Path(out_dir)
    with RecordIOWriter(out / "train.rec", out / "train.idx", fmt=fmt) as w:
        w.write_header(len(source), source.num_identities)
        for i in range(len(source)):
            w.write(i + 1, float(source.labels[i]), source.load(i))
    return out
