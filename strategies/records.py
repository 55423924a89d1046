"""The layout of FedFR's messages, shared by the ServerApp, the strategies and the ClientApp.

A train message carries ``arrays`` (ArrayRecord: the backbone's state_dict under
``backbone.<name>`` and, for FedFR, the public class matrix under ``phi``) and ``config``; a train
reply carries the same ``arrays`` keys and ``metrics`` with exactly ``COUNT_KEYS``.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"
#: prefix of every backbone tensor in the ArrayRecord
BACKBONE_PREFIX = "backbone."
#: key of the public class-embedding matrix Phi_g (K_g x d)
PHI_KEY = "phi"
#: the counters every train reply carries; all are summed over valid replies
COUNT_KEYS = ("num-examples", "num-hard-negatives", "num-steps")


#: Flower's serialisation type of an Array holding ``np.save`` bytes
NUMPY_STYPE = "numpy.ndarray"


def fast_arrays() -> bool:
    """The zero-copy codec below (default) or Flower's own (``FEDFR_FAST_ARRAYS=0``)."""
    return os.environ.get("FEDFR_FAST_ARRAYS", "1") != "0"


def array_from_numpy(arr: np.ndarray) -> Array:
    """``Array(arr)`` with the same bytes (an ``.npy`` image, as ``np.save`` writes it), the
    data copied once (header and body joined) instead of Flower's chunked BytesIO writes."""
    arr = arr if arr.flags.c_contiguous else np.array(arr, order="C")  # keeps 0-d arrays 0-d
    if arr.dtype.hasobject:
        raise ValueError("object arrays cannot be sent (Flower refuses pickled arrays)")
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    body = memoryview(arr.reshape(-1)).cast("B") if arr.size else b""
    return Array(dtype=str(arr.dtype), shape=tuple(int(n) for n in arr.shape),
                 stype=NUMPY_STYPE, data=b"".join((head.getvalue(), body)))


def numpy_view(array: Array) -> np.ndarray:
    """A read-only numpy view of an Array's ``.npy`` bytes: no copy (``Array.numpy()`` copies
    through ``np.load``). Callers must not write to it (the tensors built on it neither)."""
    if array.stype != NUMPY_STYPE:
        raise TypeError(f"array of serialisation type {array.stype!r}; expected {NUMPY_STYPE!r}")
    buf = io.BytesIO(array.data)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
    if dtype.hasobject:
        raise ValueError("object arrays are refused (they would need pickle)")
    count = int(np.prod(shape)) if shape else 1
    out = np.frombuffer(array.data, dtype=dtype, count=count, offset=buf.tell())
    return out.reshape(shape, order="F" if fortran else "C")


def tensor_view(array: Array) -> torch.Tensor:
    """A torch tensor sharing the Array's bytes (read-only memory: never modify it in place;
    ``load_state_dict``, ``clone`` and arithmetic all copy)."""
    with warnings.catch_warnings():  # torch warns that the numpy buffer is not writable
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(numpy_view(array))


def pack_arrays(backbone: dict[str, torch.Tensor], phi: torch.Tensor | None) -> ArrayRecord:
    """(backbone state_dict, phi or None) -> ArrayRecord with ``backbone.*`` [+ ``phi``] keys."""
    sd = {f"{BACKBONE_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in backbone.items()}
    if phi is not None:
        sd[PHI_KEY] = phi.detach().cpu().contiguous()
    if not fast_arrays():
        return ArrayRecord(sd)
    return ArrayRecord({k: array_from_numpy(v.numpy()) for k, v in sd.items()})


def unpack_arrays(arrays: ArrayRecord) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """ArrayRecord -> (backbone state_dict without the prefix, phi or None).

    By default the tensors are zero-copy views of the message's bytes (``tensor_view``):
    read-only; every user loads them into a model or copies them."""
    if fast_arrays():
        sd = {k: tensor_view(v) for k, v in arrays.items()}
    else:
        sd = arrays.to_torch_state_dict()
    n = len(BACKBONE_PREFIX)
    backbone = {k[n:]: v for k, v in sd.items() if k.startswith(BACKBONE_PREFIX)}
    return backbone, sd.get(PHI_KEY)
