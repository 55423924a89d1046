"""FedFR's server strategy: validate each client's reply on its own, then average (eq. 7.2, 7.4).

Message contract (fixed for the project):

* sent to each sampled node: ``RecordDict({"arrays": ArrayRecord, "config": ConfigRecord})``;
  ``arrays`` holds the backbone's state_dict under ``backbone.<name>`` (BN buffers and the int64
  ``num_batches_tracked`` included) and, for FedFR, ``phi``: the K_g x d float32 public class
  matrix Phi_g.
* a train reply: ``RecordDict({"arrays": ArrayRecord(same keys), "metrics": MetricRecord({
  "num-examples": N_l, "num-hard-negatives": int, "num-steps": int})})`` and nothing else.

Unlike Flower's ``FedAvg``, which drops the whole round when one reply is inconsistent, this
strategy checks every reply against what was sent and aggregates the valid ones; bad or error
replies are logged with their node id and recorded in ``failures``.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any, ClassVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedfr.aggregation import WeightedMean, check_update, check_weight
from fedfr.errors import ConfigError
from strategies.records import (
    ARRAYS_KEY,
    BACKBONE_PREFIX,
    CONFIG_KEY,
    COUNT_KEYS,
    METRICS_KEY,
    PHI_KEY,
    array_from_numpy,
    fast_arrays,
    numpy_view,
)

#: key -> (shape, dtype) of what was sent
ArraySpec = dict[str, tuple[tuple[int, ...], np.dtype]]


class FedFR(FedAvg):
    """FedFR server (Algorithm 4): average backbone Theta and public matrix Phi over clients.

    Both are weighted by ``weighted_by_key`` (default ``"num-examples"``, the clients' private
    image counts N_l, as in the paper). Replies are validated one by one; fewer than
    ``min_train_nodes`` valid replies keeps the previous global model (``aggregate_train``
    returns ``(None, None)``).

    Attributes:
        failures: round -> list of ``{"node_id": int, "reason": str}`` for each reply skipped
            (error reply) or rejected (bad content) in that round.
    """

    #: True: the sent arrays must hold ``phi``; False: they must not (FedAvg baseline).
    sends_phi: ClassVar[bool] = True

    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        min_train_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        **kw: Any,
    ) -> None:
        for key, fixed in (("arrayrecord_key", ARRAYS_KEY), ("configrecord_key", CONFIG_KEY)):
            if kw.get(key, fixed) != fixed:
                raise ConfigError(
                    f"{key}={kw[key]!r}: the FedFR message contract fixes it to {fixed!r}"
                )
        if kw.get("train_metrics_aggr_fn") is not None:
            raise ConfigError(
                "train_metrics_aggr_fn: not supported; FedFR sums the reply counters itself"
            )
        if not 0.0 <= fraction_train <= 1.0:
            raise ConfigError(f"fraction_train={fraction_train!r}: expected a value in [0, 1]")
        for name, value in (("min_train_nodes", min_train_nodes),
                            ("min_available_nodes", min_available_nodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r}: expected an integer >= 0")
        if not isinstance(weighted_by_key, str) or not weighted_by_key:
            raise ConfigError(f"weighted_by_key={weighted_by_key!r}: expected a metric name")
        super().__init__(
            fraction_train=fraction_train,
            min_train_nodes=min_train_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            **kw,
        )
        self.failures: dict[int, list[dict[str, Any]]] = {}
        self._sent_round: int | None = None
        self._sent_spec: ArraySpec = {}

    # -- sending ---------------------------------------------------------------------------

    def _check_sent_layout(self, spec: ArraySpec) -> None:
        """Raise ValueError if the arrays to send break the message contract."""
        stray = sorted(k for k in spec if k != PHI_KEY and not k.startswith(BACKBONE_PREFIX))
        if stray:
            raise ValueError(
                f"arrays to send hold keys {stray[:5]} that are neither "
                f"'{BACKBONE_PREFIX}<name>' nor '{PHI_KEY}'"
            )
        if not any(k.startswith(BACKBONE_PREFIX) for k in spec):
            raise ValueError(f"arrays to send hold no '{BACKBONE_PREFIX}*' keys")
        if self.sends_phi:
            if PHI_KEY not in spec:
                raise ValueError(
                    f"FedFR sends the public class matrix under '{PHI_KEY}' (K_g x d); "
                    "it is missing from the arrays"
                )
            shape, dtype = spec[PHI_KEY]
            if len(shape) != 2 or dtype.kind != "f":
                raise ValueError(
                    f"'{PHI_KEY}' must be a 2-D float matrix (K_g x d), got shape {shape} "
                    f"dtype {dtype}"
                )

    def expect_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Remember the keys, shapes and dtypes sent in ``server_round`` to validate replies.

        ``configure_train`` calls this; call it yourself only when bypassing configure_train.
        Raises ValueError if ``arrays`` break the message contract.
        """
        spec: ArraySpec = {
            key: (tuple(int(n) for n in arr.shape), np.dtype(arr.dtype))
            for key, arr in arrays.items()
        }
        self._check_sent_layout(spec)
        self._sent_round, self._sent_spec = server_round, spec

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Record what is sent this round, then sample nodes and build messages (FedAvg's)."""
        self.expect_arrays(server_round, arrays)
        return super().configure_train(server_round, arrays, config, grid)

    # -- receiving -------------------------------------------------------------------------

    def _parse_reply(
        self, content: RecordDict, spec: ArraySpec
    ) -> tuple[dict[str, np.ndarray], float, dict[str, int]] | str:
        """Return (arrays, weight, counters) of a valid reply, or the reason it is invalid."""
        keys = set(content.keys())
        if keys != {ARRAYS_KEY, METRICS_KEY}:
            return f"record keys {sorted(keys)}, expected ['{ARRAYS_KEY}', '{METRICS_KEY}']"
        record, metrics = content[ARRAYS_KEY], content[METRICS_KEY]
        if not isinstance(record, ArrayRecord):
            return f"'{ARRAYS_KEY}' is a {type(record).__name__}, expected an ArrayRecord"
        if not isinstance(metrics, MetricRecord):
            return f"'{METRICS_KEY}' is a {type(metrics).__name__}, expected a MetricRecord"

        if self.weighted_by_key not in metrics:
            return f"metrics lack the weight '{self.weighted_by_key}'"
        reason = check_weight(metrics[self.weighted_by_key])
        if reason is not None:
            return f"metric '{self.weighted_by_key}': {reason}"
        wanted = set(COUNT_KEYS) | {self.weighted_by_key}
        if set(metrics) != wanted:
            missing, extra = sorted(wanted - set(metrics)), sorted(set(metrics) - wanted)
            return f"metric keys: missing {missing}, unexpected {extra}"
        counts: dict[str, int] = {}
        for key in COUNT_KEYS:
            value = metrics[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return f"metric '{key}': {value!r} is not a non-negative integer"
            counts[key] = value

        # Cheap key check before decoding any bytes.
        if set(record.keys()) != set(spec):
            return check_update(dict.fromkeys(record.keys()), spec) or "key mismatch"
        try:
            decode = numpy_view if fast_arrays() else (lambda a: a.numpy())  # view: no copy
            arrays = {key: decode(record[key]) for key in spec}
        except (ValueError, TypeError, OSError, EOFError) as exc:  # corrupt bytes, bad stype
            return f"arrays could not be decoded: {exc}"
        reason = check_update(arrays, spec)
        if reason is not None:
            return reason
        return arrays, float(metrics[self.weighted_by_key]), counts

    def _record_failure(self, server_round: int, node_id: int, reason: str) -> None:
        log(WARNING, "aggregate_train round %d: reply from node %d rejected: %s",
            server_round, node_id, reason)
        self.failures.setdefault(server_round, []).append({"node_id": node_id, "reason": reason})

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Weighted mean of the valid replies' arrays (eq. 7.2, 7.4) and summed counters.

        Returns ``(None, None)`` (the server keeps the previous model) when fewer than
        ``min_train_nodes`` (and at least one) replies are valid. The averaged arrays keep the
        dtypes that were sent. Metrics: ``num-examples``, ``num-hard-negatives``, ``num-steps``
        (sums over valid replies), ``num-replies`` (valid) and ``num-failures`` (skipped or
        rejected).
        """
        if self._sent_round != server_round:
            raise RuntimeError(
                f"aggregate_train(round {server_round}): the arrays sent this round are unknown "
                f"(last recorded round: {self._sent_round}); call configure_train or "
                "expect_arrays first"
            )
        spec = self._sent_spec
        self.failures[server_round] = []
        mean = WeightedMean(dtypes={key: dtype for key, (_, dtype) in spec.items()})
        totals = dict.fromkeys(COUNT_KEYS, 0)
        for msg in replies:
            node_id = msg.metadata.src_node_id
            if msg.has_error():
                err = msg.error
                self._record_failure(server_round, node_id,
                                     f"error reply (code {err.code}): {err.reason}")
                continue
            parsed = self._parse_reply(msg.content, spec)
            if isinstance(parsed, str):
                self._record_failure(server_round, node_id, parsed)
                continue
            arrays, weight, counts = parsed
            mean.add(arrays, weight)
            for key, value in counts.items():
                totals[key] += value

        num_failures = len(self.failures[server_round])
        log(INFO, "aggregate_train round %d: %d valid replies, %d failures",
            server_round, mean.count, num_failures)
        if mean.count == 0 or mean.count < self.min_train_nodes:
            log(WARNING, "aggregate_train round %d: %d valid replies < min_train_nodes=%d; "
                "keeping the previous global model", server_round, mean.count,
                max(self.min_train_nodes, 1))
            return None, None

        averaged = mean.result()
        encode = array_from_numpy if fast_arrays() else Array
        arrays_out = ArrayRecord({key: encode(averaged[key]) for key in spec})
        metrics_out = MetricRecord({
            **totals,
            "num-replies": mean.count,
            "num-failures": num_failures,
        })
        return arrays_out, metrics_out
