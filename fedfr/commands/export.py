"""``fedfr export``: write each client's partition (and the public set) to its own folder.

    fedfr export --out /srv/fedfr/nodes --format recordio \\
        --run-config "dataset='folder' data-root='/data/faces' num-clients=3 ids-per-client=4"

The split is made from the run config exactly as the server makes it (or read from
``--manifest``), so the folders match the federation the server will run. Copy
``<out>/client-NNNN`` to client host NNNN and start its SuperNode with
``--node-config "partition-id=NNNN num-partitions=C data-dir='<folder>' state-dir='<dir>'"``.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from fedfr.config import parse_run_config, resolve
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.export import FORMATS, export_node_data
from fedfr.face.data.split import FederatedSplit
from fedfr.face.workspace import open_workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder; one client-NNNN folder per client is written")
    parser.add_argument("--format", choices=FORMATS, default="recordio",
                        help="recordio (.rec/.idx per part) or folder (<part>/<label>/<n>.png)")
    parser.add_argument("--run-config", default="",
                        help="run-config overrides, Flower syntax (num-clients must be > 0)")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML file of run-config values (applied before --run-config)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="split manifest (split.json) to export instead of re-splitting")
    parser.add_argument("--clients", default="",
                        help="comma-separated client ids to export (default: all)")


def _client_ids(text: str) -> list[int] | None:
    """'0,2' -> [0, 2]; '' -> None (all); ConfigError naming --clients for anything else."""
    items = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in items if not c.isdigit()]
    if bad:
        raise ConfigError(f"--clients: expected comma-separated client ids (0, 1, ...), "
                          f"got {bad[0]!r}")
    return [int(c) for c in items] or None


def main(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values.update(tomllib.loads(args.config.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{args.config}: cannot read the run config ({exc})") from exc
    values.update(parse_run_config(args.run_config))
    if args.manifest is not None:
        if not args.manifest.is_file():
            raise DataFormatError(f"{args.manifest}: split manifest not found")
        values.setdefault("num-clients", FederatedSplit.load(args.manifest).spec.num_clients)
    cfg = resolve(values)
    if cfg.task != "face":  # another workload writes its own node folders
        from fedfr.workloads import get_workload

        workload = get_workload(cfg.task)
        workload.check_config(cfg)
        out = args.out.resolve()
        for path in workload.export_nodes(cfg, out):
            print(path)
        data = workload.open_server_data(cfg)
        data.split.save(out / "split.json")
        print(f"split {data.split.digest()} -> {out / 'split.json'}")
        return 0
    if cfg.num_clients < 1:
        raise ConfigError("config 'num-clients': set it (> 0) in the run config, or give "
                          "--manifest: the split needs the number of clients")
    ws = open_workspace(cfg, manifest=args.manifest)
    clients = _client_ids(args.clients)
    out = args.out.resolve()
    ws.split.save(out / "split.json")
    paths = export_node_data(ws.source, ws.split, out, fmt=args.format, clients=clients)
    for path in paths:
        print(path)
    print(f"split {ws.split.digest()} -> {out / 'split.json'}")
    return 0
