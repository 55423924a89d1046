"""Server-side aggregation of client updates (numpy only, no Flower).

FedFR's server step (dissertation Ch. 7, Algorithm 4) averages what the sampled clients return,
weighted by their private image counts N_l(i):

    Theta_g^{t+1} = sum_i N_l(i) Theta_l(i)^t / N      (eq. 7.2, every backbone tensor)
    Phi_g^{t+1}   = sum_i N_l(i) Phi_l(i)^t / N        (eq. 7.4, the K_g x d public class matrix)

with N = sum_i N_l(i). Both are the same weighted mean over a dict of named arrays, so one
routine serves both. Sums are accumulated in float64 and cast back to each key's dtype at the end;
integer keys (BatchNorm's ``num_batches_tracked``) are rounded to the nearest integer.

``check_update`` and ``check_weight`` validate one client's reply before it is averaged; they
return a short human-readable reason instead of raising, so the server can log and skip a bad
client without losing the round.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

#: dtype kinds that can be averaged: float, signed/unsigned integer, bool.
_AVERAGEABLE_KINDS = "fiub"
#: dtype kinds compared as one group by ``check_update`` (int64 may arrive as int32, etc.).
_KIND_GROUPS = {"f": "float", "i": "integer", "u": "integer", "b": "bool"}
#: at most this many key names are quoted in a "missing/unexpected keys" reason.
_MAX_KEYS_SHOWN = 5


def _kind_group(dtype: np.dtype) -> str:
    return _KIND_GROUPS.get(dtype.kind, f"kind '{dtype.kind}'")


def _key_list(keys: set[str]) -> str:
    names = sorted(keys)
    shown = repr(names[:_MAX_KEYS_SHOWN])
    if len(names) > _MAX_KEYS_SHOWN:
        shown = shown[:-1] + f", ... (+{len(names) - _MAX_KEYS_SHOWN} more)]"
    return shown


def check_weight(value: object) -> str | None:
    """Return None if ``value`` is a usable aggregation weight, else a short reason.

    A weight must be a single finite real number > 0 (an image count, in FedFR). Booleans and
    lists are refused even though Python treats them as numbers / sequences.
    """
    if value is None:
        return "weight is missing"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"weight must be a single number, got {type(value).__name__}"
    as_float = float(value)
    if not math.isfinite(as_float):
        return f"weight {value!r} is not finite"
    if as_float <= 0.0:
        return f"weight {value!r} must be > 0"
    return None


def check_update(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[tuple[int, ...], np.dtype]],
) -> str | None:
    """Return None if a client's ``arrays`` match what the server sent, else a short reason.

    ``expected`` maps every key sent to ``(shape, dtype)``. The update must have exactly those
    keys, each an ndarray of that shape whose dtype is of the same kind (float / integer / bool;
    float64 for a float32 key is accepted and cast back when averaging), and float arrays must
    be finite (no NaN / inf).
    """
    if not isinstance(arrays, Mapping):
        return f"arrays must be a mapping of name -> ndarray, got {type(arrays).__name__}"
    missing = set(expected) - set(arrays)
    unexpected = set(arrays) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_key_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_key_list(unexpected)}")
        return "; ".join(parts)
    for key, (shape, dtype) in expected.items():
        value = arrays[key]
        if not isinstance(value, np.ndarray):
            return f"key {key!r}: expected an ndarray, got {type(value).__name__}"
        if tuple(value.shape) != tuple(shape):
            return f"key {key!r}: shape {tuple(value.shape)}, expected {tuple(shape)}"
        want = np.dtype(dtype)
        if _kind_group(value.dtype) != _kind_group(want):
            return f"key {key!r}: dtype {value.dtype}, expected {want}"
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return f"key {key!r}: non-finite values"
    return None


class WeightedMean:
    """Running weighted mean of dicts of arrays: add updates one at a time, then ``result()``.

    Holds one float64 accumulator per key (2x the size of a float32 model), so a server can
    fold in each client's update as soon as it is decoded instead of keeping them all.
    ``dtypes`` fixes the output dtype of each key; when None, the first update's dtypes are used.
    """

    def __init__(self, dtypes: Mapping[str, np.dtype | str] | None = None) -> None:
        self._dtypes = None if dtypes is None else {k: np.dtype(v) for k, v in dtypes.items()}
        self._sums: dict[str, np.ndarray] = {}
        self._total = 0.0
        self.count = 0

    def add(self, update: Mapping[str, np.ndarray], weight: float) -> None:
        """Fold in one update (key -> array) with its weight (finite, > 0)."""
        reason = check_weight(weight)
        if reason is not None:
            raise ValueError(f"update {self.count}: {reason}")
        dtypes = self._dtypes
        if dtypes is None:
            dtypes = {k: np.asarray(v).dtype for k, v in update.items()}
        if set(update) != set(dtypes):
            diff = set(update) ^ set(dtypes)
            raise ValueError(
                f"update {self.count}: keys differ from the first update's: {_key_list(diff)}"
            )
        # Validate everything first so a bad update leaves the accumulator untouched.
        values = {k: np.asarray(update[k]) for k in dtypes}
        for key, dtype in dtypes.items():
            value = values[key]
            for kind_of, what in ((dtype, "output"), (value.dtype, "update")):
                if kind_of.kind not in _AVERAGEABLE_KINDS:
                    raise ValueError(
                        f"update {self.count}, key {key!r}: {what} dtype {kind_of} cannot be "
                        "averaged"
                    )
            if key in self._sums and value.shape != self._sums[key].shape:
                raise ValueError(
                    f"update {self.count}, key {key!r}: shape {value.shape}, expected "
                    f"{self._sums[key].shape}"
                )
        for key, value in values.items():
            term = value.astype(np.float64)  # always a fresh array: safe to scale in place
            term *= float(weight)
            if key in self._sums:
                self._sums[key] += term
            else:
                self._sums[key] = term
        self._dtypes = dtypes
        self._total += float(weight)
        self.count += 1

    @property
    def total_weight(self) -> float:
        """Sum of the weights added so far."""
        return self._total

    def result(self) -> dict[str, np.ndarray]:
        """Return sum_i w_i x_i / sum_i w_i per key, in the output dtypes (ints rounded)."""
        if self.count == 0 or self._dtypes is None:
            raise ValueError("weighted mean of zero updates is undefined")
        out: dict[str, np.ndarray] = {}
        for key, dtype in self._dtypes.items():
            mean = self._sums[key] / self._total
            if dtype.kind in "iub":
                mean = np.rint(mean)
            out[key] = np.asarray(mean, dtype=dtype)  # 0-d stays an ndarray, not a scalar
        return out


def weighted_average(
    updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """Weighted mean of same-keyed, same-shaped dicts of arrays: sum_i w_i x_i / sum_i w_i.

    Accumulated in float64; each key's result has the dtype of that key in ``updates[0]``
    (integer keys rounded to the nearest integer). Eq. 7.2 for the backbone ``backbone.*``
    keys and eq. 7.4 for ``phi`` (K_g x d) when the weights are the clients' image counts.
    Raises ValueError on no updates, a length mismatch, a bad weight, or mismatched keys/shapes.
    """
    if len(updates) == 0:
        raise ValueError("weighted_average needs at least one update")
    if len(updates) != len(weights):
        raise ValueError(f"got {len(updates)} updates but {len(weights)} weights")
    mean = WeightedMean()
    for update, weight in zip(updates, weights, strict=True):
        mean.add(update, weight)
    return mean.result()
