"""An in-process federation that records every message in and out (the workload tests' audits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clients.app import app as client_app
from fedfr.config import resolve
from server.federation import run_federation
from server.inprocess import InProcessGrid


class Recording:
    """Wraps the (unchanged) ClientApp and keeps every message in and out:
    ``log`` = [(message type, content sent, reply content)]."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any, Any]] = []

    def __call__(self, msg, context):
        reply = client_app(msg, context)
        self.log.append((msg.metadata.message_type, msg.content, reply.content))
        return reply


def run_recorded(conf: dict) -> tuple[dict, Recording]:
    """The federation of run config ``conf`` in this process (``num-clients`` nodes): its report
    and the recording of its messages."""
    rec = Recording()
    cfg = resolve(conf)
    return run_federation(InProcessGrid(rec, cfg.num_clients, cfg.to_dict()), cfg), rec


def run_clients_on(cfg: Any, client_root: Path) -> dict:
    """The federation of ``cfg`` whose server reads ``cfg``'s data-root and whose clients read
    ``client_root`` (node config ``data-root``): the report. A server-side test of data that
    only the clients hold."""
    n = cfg.num_clients
    ncs = [{"partition-id": i, "num-partitions": n, "data-root": str(client_root)}
           for i in range(n)]
    return run_federation(InProcessGrid(client_app, n, cfg.to_dict(), node_configs=ncs), cfg)


def split_without_client_records(report: dict) -> dict:
    """The run's split.json, checked: the run completed, each client set is named as held by the
    client (no records digest, no summary), the server's sets have their records digests."""
    assert report["rounds"][0]["aggregated"] and not report["failures"]["final-evaluation"]
    doc = json.loads(Path(report["split"]["manifest"]).read_text())
    assert all(c["held-by"] == "client" and "records-digest" not in c and "summary" not in c
               for c in doc["clients"])
    assert doc["public"]["records-digest"] and all(u["records-digest"] for u in doc["unseen"])
    assert doc["digest"] == report["split"]["digest"]
    return doc
