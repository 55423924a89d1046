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

Start-up paid once: with ``--keep`` (or ``FEDFR_KEEP_DEPLOYMENT=1``) the SuperLink and its
SuperExec stay up after the run, their ports in ``<flwr-home>/deployment.json``; the next run
with the same ``--flwr-home`` reuses them when they answer and were started with the same
environment (``FEDFR_*``, ``OMP_*``, ``RAY_*``, ``PYTHONPATH``, ...; else they are replaced).
``python -m server.simulate --stop --flwr-home H`` stops them. Ray is trimmed (``RAY_TRIM_ENV``;
``FEDFR_TRIM_RAY=0`` restores Flower's start).

    python -m server.simulate --keep --run-config "num-server-rounds=3"   # twice: start-up once
    python -m server.simulate --stop
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


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group id, state) of every live process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _descendants(roots: list[int]) -> set[int]:
    """The processes under ``roots`` (children, grandchildren, ...), zombies excluded."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out and table[child][2] != "Z":
                out.add(child)
                todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    table = _process_table()
    return {p for p in pids if p in table and table[p][2] != "Z"}


def stop_superlinks(flwr_home: Path, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the SuperLink processes of ``flwr_home`` and their process groups;
    then whatever ran under them (SuperExec, ``flwr-simulation`` in its own session, the Ray it
    started: GCS, raylet, actors), listed before the first signal, gets SIGKILL if it has not
    exited within ``timeout`` (a run interrupted mid-way leaves them behind otherwise)."""
    pids = superlink_pids(flwr_home)
    below = _descendants(pids)
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
            break
    below.discard(os.getpid())
    deadline = time.monotonic() + timeout
    while _alive(below) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _alive(below):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


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


#: Ray settings every simulation gets (benchmarks/speed_ray.py measures each): no idle workers
#: pre-started next to the actors, no usage-stats reporting. Dashboard off and WARNING logging
#: are Flower's defaults. ``init-args-log-to-driver=false`` (Flower's backend options) is *not*
#: set by default: its saving is within the noise and it hides the ClientApps' log lines from
#: ``flwr run --stream``; ``FEDFR_RAY_QUIET=1`` adds it. ``FEDFR_TRIM_RAY=0`` leaves Ray as
#: Flower starts it.
RAY_TRIM_ENV = {"RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0",
                "RAY_USAGE_STATS_ENABLED": "0"}
RAY_FEDERATION_CONFIG = "init-args-log-to-driver=false"
#: environment variables whose values a kept deployment's processes inherited at its start:
#: a run with other values gets a fresh deployment (prefixes and exact names)
ENV_KEYS = ("FEDFR_", "OMP_", "MKL_", "RAY_", "TORCH_", "PYTHONPATH", "PATH", "VIRTUAL_ENV")
STATE_FILE = "deployment.json"


#: models small enough that parallel clients (1 torch thread each) beat intra-op threads
SMALL_MODELS = ("small_cnn", "small_reid")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def plan_parallel(cores: int, clients: int, model: str,
                  threads: int | None = None) -> tuple[int, int]:
    """(Ray actors, torch threads per actor) for ``clients`` clients on ``cores`` cores.

    A small model (``SMALL_MODELS``: a few ms per batch) gains little from intra-op threads
    (torch's per-op overhead dominates) and nearly linearly from clients trained side by side:
    one thread per actor, as many actors as cores (and clients). A large model gets up to 4
    threads per actor (convolutions scale well) and the cores left over go to more actors.
    ``threads`` (e.g. ``FEDFR_NUM_THREADS``) overrides the per-actor choice.
    """
    if threads is None:
        threads = 1 if model in SMALL_MODELS else min(cores, 4)
    threads = max(1, min(threads, cores))
    return max(1, min(clients, cores // threads)), threads


def parallel_settings(parallel: str, run_config: str, num_supernodes: int,
                      env: dict[str, str]) -> tuple[str, dict[str, str], tuple[int, int]]:
    """Flower federation settings and environment for ``--parallel`` (``off``, ``auto`` or a
    number of actors): ``client-resources-num-cpus`` = threads per actor and
    ``init-args-num-cpus`` = actors x threads (so Ray makes exactly that many actors), and
    ``FEDFR_NUM_THREADS`` = threads per actor unless already set. Returns (federation config,
    environment additions, (actors, threads)); ``off`` adds nothing (Flower's default: 2 CPUs
    per ClientApp)."""
    if parallel == "off":
        return "", {}, (0, 0)
    from fedfr.config import parse_run_config  # no torch

    values = parse_run_config(run_config) if run_config else {}
    task = str(values.get("task", "face"))
    model = str(values.get("reid-model" if "reid" in task else "model",
                           "small_reid" if "reid" in task else "small_cnn"))
    clients = int(values.get("num-clients", 0) or num_supernodes)
    fixed = env.get("FEDFR_NUM_THREADS")
    cores = usable_cores()
    actors, threads = plan_parallel(cores, clients, model, int(fixed) if fixed else None)
    if parallel != "auto":
        actors = max(1, int(parallel))
    fed = f"client-resources-num-cpus={threads}"
    if not env.get("RAY_ADDRESS"):  # Ray refuses num_cpus when joining a running cluster
        fed += f" init-args-num-cpus={actors * threads}"
    return fed, ({} if fixed else {"FEDFR_NUM_THREADS": str(threads)}), (actors, threads)


def trim_ray() -> bool:
    return os.environ.get("FEDFR_TRIM_RAY", "1") != "0"


def _env_digest(env: dict[str, str]) -> str:
    import hashlib
    import json

    keep = {k: v for k, v in sorted(env.items()) if k.startswith(ENV_KEYS)
            and not k.startswith("FLWR_")}
    keep["python"] = sys.executable
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def read_state(flwr_home: Path) -> dict | None:
    import json

    try:
        return json.loads((flwr_home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def superlink_healthy(port: int) -> bool:
    """True when a SuperLink answers ``/health`` on 127.0.0.1:``port`` (as ``flwr`` checks)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


def deployment_env(flwr_home: Path, app: Path, http_port: int, control_port: int,
                   extra: dict[str, str] | None = None) -> dict:
    """The environment of ``flwr run`` and of the SuperLink it starts (inherited by SuperExec,
    ``flwr-simulation``, Ray and the actors); ``extra`` is added to this process's own."""
    env = {**os.environ, **(extra or {})}
    if trim_ray():
        for k, v in RAY_TRIM_ENV.items():
            env.setdefault(k, v)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(http_port),
        "FLWR_LOCAL_CONTROL_API_PORT": str(control_port),
        "PYTHONPATH": os.pathsep.join([str(app), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        # flwr spawns flower-superlink & co. by name: the running environment's bin comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    return env


def start_superlink(flwr_home: Path, env: dict[str, str], http_port: int,
                    control_port: int, timeout: float = 60.0) -> int:
    """Start the local SuperLink ``flwr run`` would start (the same command: simulation mode,
    subprocess isolation, its database and log under ``<flwr_home>/local-superlink``), with its
    own and its children's output (SuperExec, ``flwr-simulation``) in ``processes.log`` there;
    returns its process id once ``/health`` answers. ``flwr run`` finds it on the port and
    reuses it."""
    folder = flwr_home / "local-superlink"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("flower-superlink")), "--insecure", "--simulation",
           "--isolation", "subprocess", "--control-api-address", f"127.0.0.1:{control_port}",
           "--host", "127.0.0.1", "--port", str(http_port),
           "--log-file", str(folder / "superlink.log"), "--database", str(folder / "state.db")]
    with open(folder / "processes.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=flwr_home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {proc.returncode}; see "
                               f"{folder / 'processes.log'}")
        if superlink_healthy(http_port):
            return proc.pid
        time.sleep(0.1)
    stop_superlinks(flwr_home)
    raise RuntimeError(f"flower-superlink did not answer within {timeout:.0f} s; see "
                       f"{folder / 'processes.log'}")


def ensure_deployment(flwr_home: Path, app: Path = ROOT,
                      extra_env: dict[str, str] | None = None) -> tuple[dict, bool]:
    """The local deployment (SuperLink + SuperExec) of ``flwr_home``: the running one when it
    answers and was started with this environment, else a fresh one (``start_superlink``, on
    new ports). Returns (state, reused)."""
    import json

    flwr_home.mkdir(parents=True, exist_ok=True)
    state = read_state(flwr_home)
    digest = _env_digest(deployment_env(flwr_home, app, 0, 0, extra_env))
    if state and state.get("env") == digest and superlink_pids(flwr_home) \
            and superlink_healthy(int(state["http_port"])):
        return state, True
    stop_superlinks(flwr_home)  # a leftover with other settings, or from an interrupted run
    http_port, control_port = free_port(), free_port()
    env = deployment_env(flwr_home, app, http_port, control_port, extra_env)
    pid = start_superlink(flwr_home, env, http_port, control_port)
    state = {"http_port": http_port, "control_port": control_port, "env": digest,
             "app": str(app), "pid": pid}
    (flwr_home / STATE_FILE).write_text(json.dumps(state) + "\n")
    return state, False


def stop_deployment(flwr_home: Path) -> None:
    """Stop the SuperLink (its SuperExec exits with it) of ``flwr_home`` and forget its ports."""
    stop_superlinks(flwr_home)
    (flwr_home / STATE_FILE).unlink(missing_ok=True)


def run(run_config: str, num_supernodes: int, flwr_home: Path, app: Path = ROOT,
        extra_federation_config: str = "", keep: bool = False, parallel: str = "off") -> int:
    """``flwr run <app> --stream`` with an isolated FLWR_HOME; returns flwr's exit code.

    ``keep``: leave the local SuperLink and SuperExec running for the next run with the same
    ``flwr_home`` (and reuse one left running, if it was started with this environment);
    otherwise stop it on exit, as before. ``stop_deployment`` stops a kept one.
    ``parallel``: ``off`` (Flower's resources: one actor on <= 3 cores), ``auto`` or a number
    of actors (``parallel_settings``).
    """
    par_fed, par_env, (actors, threads) = parallel_settings(parallel, run_config,
                                                            num_supernodes, dict(os.environ))
    if actors:
        print(f"server.simulate: {actors} Ray actor(s) x {threads} torch thread(s) "
              f"({usable_cores()} cores)", flush=True)
    state, reused = ensure_deployment(flwr_home, app, par_env)
    env = deployment_env(flwr_home, app, state["http_port"], state["control_port"], par_env)
    fed = f"num-supernodes={num_supernodes} {par_fed} {extra_federation_config}".strip()
    if os.environ.get("FEDFR_RAY_QUIET") == "1" and "init-args-log-to-driver" not in fed:
        fed = f"{fed} {RAY_FEDERATION_CONFIG}"
    staged = stage_app(app, flwr_home / "app")
    cmd = [flwr_executable(), "run", str(staged), "--stream", "--federation-config", fed]
    if run_config:
        cmd += ["--run-config", run_config]
    print(("+ (deployment reused) " if reused else "+ ") + " ".join(cmd), flush=True)
    ok = False
    try:
        rc = subprocess.call(cmd, env=env, cwd=staged)
        ok = True
        return rc
    except KeyboardInterrupt:
        return 130
    finally:
        if not (keep and ok):
            stop_deployment(flwr_home)


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


def checked_in_child(run_config: str, num_supernodes: int,
                     debug: bool = False) -> subprocess.Popen:
    """Start ``checked_output_dir`` + ``clear_results`` in a short-lived child process:
    validating a config imports the workloads (torch, ~0.6 GiB resident), which this process,
    that then only waits for ``flwr run``, need not hold. ``check_outcome`` reads its answer."""
    cmd = [sys.executable, "-m", "server.simulate", "--check-only", "--run-config", run_config,
           "--num-supernodes", str(num_supernodes)] + (["--debug"] if debug else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def check_outcome(check: subprocess.Popen) -> Path | int:
    """The checked output folder, or the check's exit status (2: the user error it printed,
    passed on to this process's stderr)."""
    out, err = check.communicate()
    if err:
        sys.stderr.write(err)
        sys.stderr.flush()
    if check.returncode != 0:
        return check.returncode
    return Path(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 the run finished (ok or partial), 1 it failed, 2 a user error."""
    from fedfr.errors import run_entry_point

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    parser.add_argument("--num-supernodes", type=int, default=4)
    parser.add_argument("--federation-config", default="",
                        help="extra federation settings, e.g. 'client-resources-num-cpus=1'")
    parser.add_argument("--flwr-home", type=Path, default=ROOT / ".flwr-home")
    parser.add_argument("--keep", action="store_true",
                        help="leave the local SuperLink + SuperExec running for the next run "
                             "with this --flwr-home (reused when its environment matches); "
                             "FEDFR_KEEP_DEPLOYMENT=1 does the same")
    parser.add_argument("--parallel", default="off",
                        help="clients side by side: 'auto' (Ray actors x torch threads chosen "
                             "from the cores and the model), a number of actors, or 'off' "
                             "(default: Flower's resources, one actor on 2 cores)")
    parser.add_argument("--stop", action="store_true",
                        help="stop the deployment kept in --flwr-home and exit")
    parser.add_argument("--check-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a user error (default: one line, exit 2)")
    args = parser.parse_args(argv)
    # Ctrl-C stops the run even when started with SIGINT ignored (a background job of a
    # non-interactive shell inherits SIG_IGN; Python then never raises KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    home = args.flwr_home.resolve()
    if args.stop:
        stop_deployment(home)
        return 0
    if args.check_only:
        def check() -> int:
            from server.exit_status import clear_results

            out = checked_output_dir(args.run_config, args.num_supernodes)
            clear_results(out)  # an older run's table must never pass for this one's
            print(out)
            return 0
        return run_entry_point(check, "server.simulate", debug=args.debug)
    keep = args.keep or os.environ.get("FEDFR_KEEP_DEPLOYMENT") == "1"

    def simulate() -> int:
        # the config is checked before any Flower process starts
        out = check_outcome(checked_in_child(args.run_config, args.num_supernodes, args.debug))
        if isinstance(out, int):
            return out
        rc = run(args.run_config, args.num_supernodes, home,
                 extra_federation_config=args.federation_config, keep=keep,
                 parallel=args.parallel)
        return run_outcome(rc, out)

    return run_entry_point(simulate, "server.simulate", debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
