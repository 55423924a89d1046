"""The FedFR ServerApp: resolves the run config and hands the grid to the round loop."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedfr.config import resolve
from fedfr.runtime import configure_threads
from server import exit_status, flower_patches
from server.federation import run_federation

flower_patches.apply()  # Flower 1.41 simulation engine: see server/flower_patches.py
app = ServerApp()


def route_library_logs() -> None:
    """Show fedfr's INFO progress through Flower's log handlers (streamed by ``flwr run``)."""
    lib, flwr_logger = logging.getLogger("fedfr"), logging.getLogger("flwr")
    lib.setLevel(logging.INFO)
    if not lib.handlers and flwr_logger.handlers:
        for h in flwr_logger.handlers:
            lib.addHandler(h)
        lib.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) the experiment described by the run config; write the report."""
    configure_threads()
    route_library_logs()
    run_config = dict(context.run_config)
    try:
        run_federation(grid, resolve(run_config))
    except Exception as exc:
        exit_status.record_server_error(run_config, exc)  # one ERROR line + status.json
        raise  # Flower marks the run failed
