"""Run the app with ``flwr run . --stream`` in a clean, self-contained way, and clean up after.

``flwr run`` starts a managed local SuperLink in the background and leaves it running. This
wrapper gives the run its own ``FLWR_HOME`` and free ports (so it never reuses a SuperLink started
elsewhere with other settings), turns off Flower's per-run dependency installation (the current
environment already has everything), streams the logs, and stops the SuperLink it started, by its
process id, on exit or Ctrl-C.

    python -m server.simulate --num-supernodes 4 --run-config "num-server-rounds=3"

``flwr run`` exits 0 even when the ServerApp raised, so the exit status comes from the run's
``<output-dir>/status.json`` (server/exit_status.py): the run config is validated with
fedfr.config's rules before Flower starts (exit 2, one line), a previous run's ``results.md`` and
``status.json`` are removed first, and the exit status is 0 only when this run wrote a status
``ok`` or ``partial`` (1 otherwise, with the reason on stderr).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def superlink_pids(flwr_home: Path) -> list[int]:
    """Process ids of flower-superlink processes whose command line names ``flwr_home``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "flower-superlink" in cmd and str(flwr_home) in cmd:
            pids.append(int(entry.name))
    return pids


def stop_superlinks(flwr_home: Path, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the SuperLink processes (and their groups) of ``flwr_home``."""
    pids = superlink_pids(flwr_home)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            for kill in (lambda p, s: os.killpg(os.getpgid(p), s), os.kill):
                try:
                    kill(pid, sig)
                    break
                except (ProcessLookupError, PermissionError, OSError):
                    continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and superlink_pids(flwr_home):
            time.sleep(0.2)
        pids = superlink_pids(flwr_home)
        if not pids:
            return


def flwr_executable() -> str:
    exe = Path(sys.executable).with_name("flwr")
    return str(exe) if exe.exists() else (shutil.which("flwr") or "flwr")


def stage_app(app: Path, dest: Path) -> Path:
    """Copy the app's sources (pyproject.toml, README.md, .gitignore and every top-level Python
    package) to ``dest`` and return it.

    ``flwr run <dir>`` builds its FAB by walking *every* file under ``<dir>`` before filtering
    (Flower 1.41 ``collect_files``): with the virtual environment, caches and outputs inside
    the repository that is ~46k files and ~7 s of every run. The staged copy holds ~100 files.
    ``FEDFR_STAGE_APP=0`` runs from ``app`` itself (the benchmarks' "before" runs).
    """
    if os.environ.get("FEDFR_STAGE_APP") == "0":
        return app
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for entry in sorted(app.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists() and not entry.is_symlink():
            shutil.copytree(entry, dest / entry.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif entry.name in ("pyproject.toml", "README.md", ".gitignore") and entry.is_file():
            shutil.copy2(entry, dest / entry.name)
    return dest


def run(run_config: str, num_supernodes: int, flwr_home: Path, app: Path = ROOT,
        extra_federation_config: str = "") -> int:
    """``flwr run <app> --stream`` with an isolated FLWR_HOME; returns flwr's exit code."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    stop_superlinks(flwr_home)  # a leftover from an interrupted run
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join([str(app), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        # flwr spawns flower-superlink & co. by name: the running environment's bin comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    fed = f"num-supernodes={num_supernodes} {extra_federation_config}".strip()
    staged = stage_app(app, flwr_home / "app")
    cmd = [flwr_executable(), "run", str(staged), "--stream", "--federation-config", fed]
    if run_config:
        cmd += ["--run-config", run_config]
    print("+ " + " ".join(cmd), flush=True)
    try:
        return subprocess.call(cmd, env=env, cwd=staged)
    except KeyboardInterrupt:
        return 130
    finally:
        stop_superlinks(flwr_home)


def checked_output_dir(run_config: str | dict, num_nodes: int | None = None) -> Path:
    """Validate the run config (``--run-config`` text or parsed values) as the ServerApp will,
    the task's method switches included, for ``num_nodes`` SuperNodes (ConfigError naming the
    key otherwise); returns the run's output folder."""
    from fedfr.config import parse_run_config, resolve
    from fedfr.errors import ConfigError
    from fedfr.workloads import get_workload

    values = parse_run_config(run_config) if isinstance(run_config, str) else run_config
    cfg = resolve(values)
    get_workload(cfg.task).check_config(cfg.with_clients(num_nodes) if num_nodes else cfg)
    if cfg.dataset != "synthetic" and not Path(cfg.data_root).exists():
        raise ConfigError(f"config 'data-root': {cfg.data_root!r} does not exist; expected the "
                          f"absolute path of the {cfg.dataset} data")
    return cfg.output_path


def run_outcome(flwr_status: int, out: Path) -> int:
    """The exit status of a finished ``flwr run``: flwr's own if non-zero, else 1 unless the
    run wrote status ``ok`` or ``partial`` to ``out`` (the reason is printed on stderr)."""
    from server.exit_status import STATUS_FILE, read_status

    if flwr_status != 0:
        return flwr_status
    status = read_status(out)
    if status is None:
        print(f"server.simulate: error: the run wrote no {out / STATUS_FILE}: the ServerApp "
              "stopped before the end (see its log above)", file=sys.stderr)
        return 1
    if status.get("status") not in ("ok", "partial"):
        problems = status.get("problems") or ["unknown"]
        print(f"server.simulate: error: run failed: {problems[0]}"
              + (f" (and {len(problems) - 1} more, see {out / 'results.md'})"
                 if len(problems) > 1 else ""), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 the run finished (ok or partial), 1 it failed, 2 a user error."""
    from fedfr.errors import run_entry_point
    from server.exit_status import clear_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    parser.add_argument("--num-supernodes", type=int, default=4)
    parser.add_argument("--federation-config", default="",
                        help="extra federation settings, e.g. 'client-resources-num-cpus=1'")
    parser.add_argument("--flwr-home", type=Path, default=ROOT / ".flwr-home")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a user error (default: one line, exit 2)")
    args = parser.parse_args(argv)

    def simulate() -> int:
        out = checked_output_dir(args.run_config, args.num_supernodes)  # before Flower starts
        clear_results(out)  # an older run's table must never pass for this one's
        rc = run(args.run_config, args.num_supernodes, args.flwr_home.resolve(),
                 extra_federation_config=args.federation_config)
        return run_outcome(rc, out)

    return run_entry_point(simulate, "server.simulate", debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
