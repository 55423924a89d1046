"""Where one client round's time goes inside a Ray actor, step by step, against the plain loop.

A simulated client round is the ClientApp call plus what Flower and Ray do around it. This
benchmark runs the *same* steps in one process, each timed on its own, on the overhead
benchmark's small workload (real messages, contexts, state files and training):

- ``ray-args`` / ``ray-reply``: the (de)serialisation of the call's arguments (Message +
  Context: ``pickle`` protocol 5, what Ray does for Python objects) and of its result (reply
  + updated Context), both directions;
- ``handler-setup``: thread setting, config resolution, digest check, workload lookup;
- ``unpack``: ArrayRecord -> torch tensors; ``pack``: torch tensors -> ArrayRecord;
- ``workspace``: the node's data (cached per process after the first call);
- ``state-load`` / ``state-save``: the personal state file on the node's disk (resume);
- ``public-features``: the shared D_g embedding (computed once per round per machine);
- ``train``: ``train_local_round`` itself;
- ``handler-total``: the real ClientApp call measured as a whole (the steps above, re-timed
  together, so ``unaccounted`` = handler-total - the sum of its parts).

The plain loop (``benchmarks/plain_loop.py``) does ``train`` (+ the shared public features
once a round) and a numpy view for the mean; everything else is the framework's.
``--fast-arrays 0|1`` compares Flower's ArrayRecord conversion (``np.save`` / ``np.load`` per
tensor) with ``strategies.records``' zero-copy one, interleaved, in the same run.

    python -m benchmarks.speed_steps --out outputs/speed --repeats 5
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed_common import TINY_WORKLOAD, environment, write_outputs

CONF: dict[str, Any] = {**TINY_WORKLOAD, "num-clients": 4, "num-server-rounds": 3}
STEPS = ("ray-args", "handler-setup", "unpack", "workspace", "state-load", "public-features",
         "train", "state-save", "pack", "ray-reply")
FRAMEWORK = tuple(s for s in STEPS if s not in ("train", "public-features"))


def _timed(times: dict[str, float], name: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    times[name] = times.get(name, 0.0) + time.perf_counter() - t0
    return out


def one_round(cfg_values: dict[str, Any], state_dir: Path, server_round: int, pid: int,
              arrays, experiment: str) -> dict[str, float]:
    """The steps of one client round, each timed (seconds), then the real handler as a whole."""
    from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

    from clients.app import client_config, node_info
    from clients.app import train as client_train
    from fedfr.client_state import ClientStateStore
    from fedfr.face.models.template import model_factory
    from fedfr.face.training.batches import seeded_generator
    from fedfr.face.training.local import LocalData, train_local_round
    from fedfr.feature_cache import shared_public_features
    from fedfr.runtime import configure_threads
    from fedfr.workloads import get_workload
    from fedfr.workloads.face import node_workspace
    from strategies.records import pack_arrays, unpack_arrays

    t: dict[str, float] = {}
    run_config = {**cfg_values, "state-dir": str(state_dir)}
    cfg0 = client_config(Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                                 run_config=run_config))
    conf = ConfigRecord({"server-round": server_round, "experiment-id": experiment,
                         "config-digest": cfg0.digest()})
    msg = Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=1000 + pid,
                  message_type=MessageType.TRAIN)
    ctx = Context(run_id=1, node_id=1000 + pid, node_config={"partition-id": pid,
                                                             "num-partitions": 4},
                  state=RecordDict(), run_config=run_config)
    blob = _timed(t, "ray-args", pickle.dumps, (msg, ctx), protocol=5)
    msg, ctx = _timed(t, "ray-args", pickle.loads, blob)

    def setup():
        configure_threads()
        cfg = client_config(ctx)
        workload = get_workload(cfg.task)
        workload.check_config(cfg)
        return cfg, node_info(cfg, ctx)

    cfg, node = _timed(t, "handler-setup", setup)
    backbone, phi = _timed(t, "unpack", unpack_arrays, msg.content["arrays"])
    ws = _timed(t, "workspace", node_workspace, cfg, node)
    data = ws.client(pid)
    store = ClientStateStore(node.state_root, experiment, pid)
    state = _timed(t, "state-load", store.load_before, server_round)
    public_images, public_labels = ws.public()
    feats = _timed(t, "public-features", shared_public_features, cfg, backbone, public_images,
                   server_round, data_key=f"{ws.data_digest()}-")
    res = _timed(t, "train", train_local_round, model_factory(cfg), backbone, phi,
                 LocalData(data.train_images, data.train_labels, data.num_classes), cfg, state,
                 seeded_generator(cfg.seed, server_round, pid), public_images=public_images,
                 public_labels=public_labels, public_features=feats, server_round=server_round)
    _timed(t, "state-save", store.save, server_round, res.state)
    out = _timed(t, "pack", pack_arrays, res.backbone, res.phi)
    reply = Message(RecordDict({"arrays": out, "metrics": MetricRecord({"num-examples": 1})}),
                    reply_to=msg)
    blob = _timed(t, "ray-reply", pickle.dumps, (reply, ctx), protocol=5)
    _timed(t, "ray-reply", pickle.loads, blob)

    # the real handler as a whole (a fresh message: same round, its state file rewritten)
    msg2 = Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=1000 + pid,
                   message_type=MessageType.TRAIN)
    t0 = time.perf_counter()
    client_train(msg2, ctx)
    t["handler-total"] = time.perf_counter() - t0
    return t


def run(out: Path, repeats: int, cache: Path) -> dict[str, Any]:
    """``repeats`` x (4 clients x 3 rounds) of timed steps, alternating the array codec."""
    from flwr.app import ArrayRecord

    from fedfr.config import resolve
    from fedfr.face.training.pretrain import load_or_pretrain
    from fedfr.face.workspace import open_workspace
    from server.inprocess import claim_task_identity
    from strategies import records

    claim_task_identity()
    values = {**CONF, "cache-dir": str(cache)}
    cfg = resolve(values)
    backbone0, phi0, _ = load_or_pretrain(cfg, open_workspace(cfg))
    samples: dict[str, list[dict[str, float]]] = {"flower": [], "fast": []}
    for rep in range(repeats):
        for codec in ("flower", "fast") if rep % 2 == 0 else ("fast", "flower"):
            os.environ["FEDFR_FAST_ARRAYS"] = "1" if codec == "fast" else "0"
            with tempfile.TemporaryDirectory() as tmp:
                arrays: ArrayRecord = records.pack_arrays(backbone0, phi0)
                for rnd in range(1, CONF["num-server-rounds"] + 1):
                    for pid in range(CONF["num-clients"]):
                        samples[codec].append(one_round(values, Path(tmp), rnd, pid, arrays,
                                                        f"e{rep}"))
    os.environ.pop("FEDFR_FAST_ARRAYS", None)
    n_bytes = sum(len(a.data) for a in records.pack_arrays(backbone0, phi0).values())
    result: dict[str, Any] = {"environment": environment(None), "repeats": repeats,
                              "config": values, "model_bytes": n_bytes, "summary": {}}
    for codec, rows in samples.items():
        per = {k: statistics.median([r.get(k, 0.0) for r in rows])
               for k in (*STEPS, "handler-total")}
        inside = [k for k in STEPS if not k.startswith("ray-")]
        per["unaccounted"] = per["handler-total"] - sum(per[k] for k in inside)
        per["framework"] = sum(per[k] for k in FRAMEWORK)
        result["summary"][codec] = per
    write_outputs(out, "speed_steps", result, markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    s = result["summary"]
    lines = [
        "### One client round inside the actor, step by step",
        "",
        f"{env['time_utc']}, {env['host_cpus']} CPUs, load average "
        f"{env['load_average_1_5_15'][0]:.1f}; small workload (4 clients x 3 rounds, "
        f"{result['model_bytes'] / 1024:.0f} KiB of arrays per message); median ms per client "
        f"round over {result['repeats']} repeats; `python -m benchmarks.speed_steps`.",
        "",
        "| step | Flower's codec ms | zero-copy codec ms | in the plain loop |",
        "|---|---:|---:|---|",
    ]
    plain = {"train": "same", "public-features": "same (once a round)"}
    for k in (*STEPS, "handler-total", "unaccounted", "framework"):
        lines.append(f"| {k} | {1e3 * s['flower'][k]:.2f} | {1e3 * s['fast'][k]:.2f} | "
                     f"{plain.get(k, '-' if k not in FRAMEWORK else 'none')} |")
    share = s["fast"]["framework"] / max(s["fast"]["train"], 1e-9)
    lines += ["", f"framework steps (zero-copy codec) = {100 * share:.1f} % of `train`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.speed_common import ROOT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("FEDFR_NUM_THREADS", "1")))
    res = run(args.out, args.repeats, args.cache_dir or (args.out / "cache"))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
