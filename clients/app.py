"""The fedfr ClientApp: a thin Flower adapter over the run's workload (``fedfr.workloads``).

The run-config key ``task`` names the workload (``face`` by default, ``reid``, ...); this module
knows nothing of faces or pedestrians: it resolves the config, checks the server's config digest,
finds the node's partition and state folder, and hands the message to ``Workload.train`` /
``Workload.evaluate``.

Messages (the contract with ``server/``):
- ``train``: in ``arrays`` (``backbone.*`` [+ ``phi``]) and ``config`` (``server-round``,
  ``experiment-id``, ``config-digest``). Out: the same array keys and a MetricRecord with
  ``num-examples`` (the aggregation weight), ``num-hard-negatives`` and ``num-steps``. Nothing else:
  classifiers, personal branches, features, labels and images stay on the node (the strategy
  rejects anything else; ``tests/test_federation.py`` audits every message). The one exception is
  the face FedFace baseline (``strategy = "fedface"``), whose reply adds the class proxies W_l
  under ``proxies`` (its privacy cost, see strategies/fedface.py).
- ``evaluate``: the workload's personalised protocol on this client for the models named in
  ``config["eval-models"]`` (faces: ``global``, ``local``, ``personal``, and the two-stage
  baselines ``finetune`` / ``kd``); replies with averaged-ready scalar metrics
  ``<model>.<metric>``, never with features or scores.

Personal state is stored on the node's disk (``state-dir`` from node-config or run-config).
With node-config ``data-dir`` (a folder written by ``fedfr export``) the node opens only its own
data and the public set; a missing or wrong folder gives one error reply naming the path, not a
traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedfr.config import Config, resolve, resolve_path
from fedfr.node_data import NodeDataError
from fedfr.runtime import configure_threads
from fedfr.workloads import get_workload
from fedfr.workloads.base import NodeInfo
from strategies.records import COUNT_KEYS, pack_arrays, unpack_arrays

log = logging.getLogger(__name__)
app = ClientApp()

#: the only keys a train reply's MetricRecord may carry
REPLY_METRIC_KEYS = COUNT_KEYS
#: Error code of a reply from a node whose data directory is missing or invalid
NODE_DATA_ERROR = 100

__all__ = ["NODE_DATA_ERROR", "REPLY_METRIC_KEYS", "app", "client_config", "node_info",
           "pack_arrays", "partition_id", "state_root", "unpack_arrays"]


# --- helpers shared by both handlers --------------------------------------------------------
def client_config(context: Context) -> Config:
    """Run config over the defaults (``run_config`` may be empty in programmatic runs);
    ``num-clients = 0`` becomes the node's ``num-partitions``."""
    cfg = resolve(dict(context.run_config))
    return cfg.with_clients(int(context.node_config.get("num-partitions", 0)))


def partition_id(context: Context) -> int:
    try:
        return int(context.node_config["partition-id"])
    except KeyError as e:
        raise KeyError("node-config lacks 'partition-id' (the client's index in the split)") from e


def state_root(cfg: Config, context: Context) -> Path:
    """Where this node keeps personal state: node-config > run-config > <output-dir>."""
    value = str(context.node_config.get("state-dir", "") or cfg.state_dir)
    if value:
        return resolve_path(value)
    return cfg.output_path / "client-state"


def node_info(cfg: Config, context: Context) -> NodeInfo:
    """What the workload is told about this node."""
    return NodeInfo(partition_id(context), dict(context.node_config), state_root(cfg, context))


def _node_data_error(msg: Message, exc: NodeDataError) -> Message:
    """A clean error reply (one line, no traceback) for a node whose data-dir is unusable."""
    log.error("%s", exc)
    return Message(Error(code=NODE_DATA_ERROR, reason=f"NodeDataError: {exc}"), reply_to=msg)


def _check_digest(cfg: Config, conf) -> None:
    sent = conf.get("config-digest")
    if sent is not None and sent != cfg.digest():
        raise ValueError(f"run config digest {cfg.digest()} differs from the server's {sent}: "
                         "client and server were started with different settings")


# --- train ------------------------------------------------------------------------------------
@app.train()
def train(msg: Message, context: Context) -> Message:
    """One local round of the run's workload on this node's private data."""
    configure_threads()
    t0 = time.perf_counter()
    cfg = client_config(context)
    conf = msg.content["config"]
    _check_digest(cfg, conf)
    workload = get_workload(cfg.task)
    workload.check_config(cfg)
    node = node_info(cfg, context)
    server_round = int(conf["server-round"])
    try:
        result = workload.train(cfg, node, msg.content["arrays"], server_round,
                                str(conf["experiment-id"]))
    except NodeDataError as exc:
        return _node_data_error(msg, exc)
    counts = {k: int(result.counts[k]) for k in COUNT_KEYS}
    log.info("client %d round %d: %d private + %d hard negatives, %d steps, loss %.4f, %.1f s",
             node.partition_id, server_round,
             int(result.log.get("private", counts["num-examples"])),
             counts["num-hard-negatives"], counts["num-steps"],
             result.log.get("loss", float("nan")), time.perf_counter() - t0)
    content = RecordDict({"arrays": result.arrays, "metrics": MetricRecord(counts)})
    return Message(content=content, reply_to=msg)


# --- personalised evaluation -----------------------------------------------------------------
@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The workload's personalised protocol on this client; scalar metrics only."""
    configure_threads()
    cfg = client_config(context)
    conf = msg.content["config"]
    _check_digest(cfg, conf)
    workload = get_workload(cfg.task)
    workload.check_config(cfg)
    server_round = int(conf["server-round"])
    names = [n for n in str(conf.get("eval-models", "global")).split(",") if n]
    unknown = [n for n in names if n not in workload.eval_models]
    if unknown:
        raise ValueError(f"unknown evaluation model(s) {unknown}; expected {workload.eval_models}")
    experiment_id = str(conf["experiment-id"]) if "experiment-id" in conf else None
    try:
        metrics = workload.evaluate(cfg, node_info(cfg, context), msg.content["arrays"],
                                    server_round, experiment_id, names)
    except NodeDataError as exc:
        return _node_data_error(msg, exc)
    out: dict[str, float] = {"num-examples": 1}
    out.update(metrics)
    return Message(content=RecordDict({"metrics": MetricRecord(out)}), reply_to=msg)
