"""The Workload interface: what a federated task (faces, person re-ID, ...) owns.

The federation plumbing (``clients/app.py``, ``server/app.py``, ``server/federation.py``, the
strategies, checkpoint/resume, failure accounting, reports and the launcher) is one generic path;
everything domain-specific goes through a ``Workload`` chosen by the run-config key ``task``
(``fedfr.workloads.get_workload``). Adding a workload means subclassing this and calling
``register_workload``; no Flower adapter changes.

Message contract (fixed by the federation, filled by the workload): a train message carries an
ArrayRecord whose keys are ``backbone.<name>`` (the shared model) and optionally ``phi`` (a shared
class matrix), see ``strategies/records.py``; a train reply carries the same keys and the counters
``COUNT_KEYS``; an evaluate reply carries scalar metrics ``<model>.<metric>`` only. What a
workload puts in ``backbone.*`` / ``phi`` is its business; what it keeps on the node (classifiers,
personal branches, features, labels, images) never enters a reply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from flwr.app import ArrayRecord

from fedfr.config import Config
from fedfr.errors import ConfigError

#: the method switches of the run config and the value that means "off" (None: a choice key)
METHOD_SWITCHES: dict[str, Any] = {
    "strategy": None, "hard-negatives": False, "contrastive": False, "dfc": False,
}


class SplitInfo(Protocol):
    """The federated split a workload runs on: saved next to the report, named by its digest."""

    def save(self, path: Path) -> None: ...

    def digest(self) -> str: ...

    def summary(self) -> dict[str, Any]: ...


class ServerData(Protocol):
    """What the server process opens: at least the split (``.split``)."""

    split: SplitInfo


@dataclass(frozen=True)
class NodeInfo:
    """What a ClientApp knows about the node it runs on.

    partition_id: the client's index in the split; node_config: Flower's node config
    (``data-dir``, ``data-root``, ...); state_root: the folder of the node's personal state.
    """

    partition_id: int
    node_config: dict[str, Any]
    state_root: Path


@dataclass
class TrainOutcome:
    """A local round's reply: the arrays sent back (same keys as received, see the module doc)
    and the counters (``num-examples`` = aggregation weight, ``num-hard-negatives``,
    ``num-steps``); ``log`` holds extra numbers for the node's log line only."""

    arrays: ArrayRecord
    counts: dict[str, int]
    log: dict[str, float] = field(default_factory=dict)


class Workload(ABC):
    """One federated task: its data, models, pre-training, local step and evaluation protocols.

    Subclasses set ``name`` and ``supported`` (method switch -> the values it accepts; a switch
    not listed is accepted with any value) and implement the abstract methods.
    """

    #: the run-config ``task`` value
    name: ClassVar[str] = ""
    #: method switch -> accepted values (e.g. {"strategy": ("fedavg",), "dfc": (False,)})
    supported: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: evaluation models a client can be asked for (``eval-models`` / ``final-eval-models``)
    eval_models: ClassVar[tuple[str, ...]] = ("global",)

    # --- configuration ---------------------------------------------------------------------------
    def check_config(self, cfg: Config) -> None:
        """Refuse switches this task does not support (ConfigError naming the key and the task)."""
        for key, allowed in self.supported.items():
            value = getattr(cfg, key.replace("-", "_"))
            if value not in allowed:
                raise ConfigError(
                    f"config '{key}' = {value!r} is not supported by task '{self.name}' "
                    f"(it accepts {', '.join(repr(a) for a in allowed)})")
        models = [m for m in cfg.final_eval_models.split(",") if m]
        bad = [m for m in models if m not in self.eval_models]
        if bad:
            raise ConfigError(f"config 'final-eval-models': task '{self.name}' evaluates "
                              f"{self.eval_models}, not {bad}")

    def personal_model(self, cfg: Config) -> str:
        """The evaluation model reported as 'personalised' (per round and in ``final``)."""
        return "local"

    # --- server side -----------------------------------------------------------------------------
    @abstractmethod
    def open_server_data(self, cfg: Config) -> ServerData:
        """The data the server needs (split, public set for pre-training, generic test)."""

    @abstractmethod
    def initial_arrays(self, cfg: Config, data: ServerData) -> tuple[ArrayRecord, dict[str, Any]]:
        """The arrays of round 1 (pre-trained or loaded from the cache) and an info dict for
        the report's ``pretraining`` section."""

    @abstractmethod
    def evaluate_generic(self, cfg: Config, data: ServerData,
                         arrays: ArrayRecord) -> dict[str, float]:
        """The generic protocol with the global model (server side); scalar metrics."""

    def summary_table(self, report: dict[str, Any]) -> str:
        """The printed results table (``results.md``) of a finished report."""
        from fedfr.report import summary_table

        return summary_table(report)

    def export_nodes(self, cfg: Config, out: Path) -> list[Path]:
        """Write one folder per client under ``out`` (its own data and the public set) for a
        deployment with node-local data (``server/launch.py``); returns the folders in
        partition order. Up-to-date folders are kept."""
        raise ConfigError(f"task '{self.name}' cannot export per-node data folders (no "
                          "deployment with node-local data for it)")

    # --- client side -----------------------------------------------------------------------------
    @abstractmethod
    def train(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
              experiment_id: str) -> TrainOutcome:
        """One local round on the node's private data, from the received global ``arrays``."""

    @abstractmethod
    def evaluate(self, cfg: Config, node: NodeInfo, arrays: ArrayRecord, server_round: int,
                 experiment_id: str | None, models: list[str]) -> dict[str, float]:
        """The personalised protocol on this node for ``models`` (a subset of ``eval_models``);
        returns ``{"<model>.<metric>": value}`` scalars only."""
