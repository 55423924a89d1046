"""Run the same ServerApp and ClientApp in one process, without Ray (tests, notebooks, CI).

``InProcessGrid`` implements Flower's ``Grid`` by calling the ClientApp directly, one message at a
time, with one persistent ``Context`` per virtual node (node-config ``partition-id`` /
``num-partitions`` as in Flower's simulation). A ClientApp that raises produces an error reply,
exactly as the simulation engine does, so the strategy sees the same failures.

Command line::

    python -m server.inprocess --run-config "num-server-rounds=2 dataset='folder' data-root='/abs'"
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from fedfr.config import format_run_config, parse_run_config, resolve  # noqa: F401 (re-exported)
from fedfr.errors import run_entry_point
from fedfr.runtime import configure_threads

log = logging.getLogger("fedfr.inprocess")
DEFAULT_NUM_NODES = 4  # virtual nodes when num-clients = 0 (auto)
CLIENT_APP_RAISED_EXCEPTION = 2  # flwr.common.constant.ErrorCode.CLIENT_APP_RAISED_EXCEPTION


def claim_task_identity(run_id: int = 1, node_id: int = 0, task_id: int = 0) -> None:
    """Give this process the identity Flower's Message constructor needs (a ServerApp task).

    Under ``flwr run`` the runtime sets it; in-process runs have no runtime, so set it here
    (only where nothing set it before).
    """
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", run_id), ("_node_id", node_id), ("_task_id", task_id)):
        if getattr(TaskIdentity, attr, None) is None:
            setattr(TaskIdentity, attr, value)


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process."""

    def __init__(self, client_app: Callable[[Message, Context], Message], num_nodes: int,
                 run_config: dict[str, Any], node_configs: list[dict[str, Any]] | None = None,
                 run_id: int = 1):
        claim_task_identity(run_id)
        self.client_app = client_app
        self.run_id = run_id
        self._run = None
        self.node_ids = list(range(1001, 1001 + num_nodes))
        configs = node_configs or [{"partition-id": i, "num-partitions": num_nodes}
                                   for i in range(num_nodes)]
        self.contexts = {
            nid: Context(run_id=run_id, node_id=nid, node_config=dict(nc), state=RecordDict(),
                         run_config=dict(run_config))
            for nid, nc in zip(self.node_ids, configs, strict=True)
        }
        self._replies: dict[str, Message] = {}
        self.calls: list[tuple[int, str]] = []  # (node id, message type) log, for tests

    # --- Grid API -----------------------------------------------------------------------------
    def set_run(self, run) -> None:  # noqa: ANN001 - flwr's internal Run type
        self._run = run

    @property
    def run(self):  # noqa: ANN201
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type,
                       group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = uuid.uuid4().hex
            msg.metadata.__dict__["_message_id"] = mid
            nid = msg.metadata.dst_node_id
            self.calls.append((nid, msg.metadata.message_type))
            try:
                reply = self.client_app(msg, self.contexts[nid])
            except Exception as ex:  # noqa: BLE001 - reported as an error reply, as Flower does
                log.error("ClientApp on node %s raised: %s\n%s", nid, ex, traceback.format_exc())
                reason = f"{type(ex)}:<'{ex}'>"
                reply = Message(Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                                reply_to=msg)
            reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            self._replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in list(message_ids) if m in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_inprocess(run_config: dict[str, Any] | None = None, client_app=None,
                  num_nodes: int | None = None) -> dict[str, Any]:
    """Run the ServerApp over an InProcessGrid; returns the report dict."""
    from clients.app import app as default_client_app
    from server.federation import run_federation

    cfg = resolve(run_config or {})
    nodes = num_nodes or cfg.num_clients or DEFAULT_NUM_NODES
    grid = InProcessGrid(client_app or default_client_app, nodes, cfg.to_dict())
    return run_federation(grid, cfg)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 the run failed (a round not aggregated, a failed final
    evaluation; see allow-partial), 2 a user error (one line; traceback with --debug)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-config", default="", help="overrides, Flower syntax")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a user error (default: one line, exit 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    configure_threads()

    def run() -> int:
        run_inprocess(parse_run_config(args.run_config))
        return 0

    return run_entry_point(run, "server.inprocess", debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
