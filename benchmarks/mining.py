"""Hard-negative mining phase for 1, 10 and 40 clients: shared public features vs per client.

One round's mining on one machine, in one process (as a Ray actor or the in-process runner
serves its clients): for every client, (1) the public set D_g's features under Theta_g^t,
(2) the client's private features, (3) the selection of D_HN (``select_hard_negatives``).

- ``uncached``: every client computes (1) itself (``FEDFR_FEATURE_CACHE=off``, the old path);
- ``cached``: (1) comes from ``fedfr.feature_cache`` (computed by the first client, reused).

The *mining phase* is (1) + (3), the work of finding D_HN; (2) is the client's own-data
embedding, which it needs anyway (it also initialises W_l) and which grows with the number of
clients by construction, so it is reported separately (``with own features``). Each cell is the
median [min-max] over repeats; the ratio to one client is taken within each repeat. The
benchmark also checks that both paths select identical hard-negative sets for every client.

    python -m benchmarks.mining --out outputs/speed [--clients 1,10,40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed_common import ROOT, environment, fmt_spread, spread, write_outputs
from fedfr import feature_cache
from fedfr.config import resolve
from fedfr.face.evaluation.features import embed
from fedfr.face.models.template import loaded_model
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace
from fedfr.hard_negatives import select_hard_negatives
from fedfr.runtime import configure_threads

#: data sizes: the default public set (200 ids x 20 images) and 40 clients of 10 ids x 12 images
CONFIG: dict[str, Any] = {"num-clients": 40, "ids-per-client": 10, "num-generic-ids": 20,
                          "pretrain-epochs": 2}
TARGET_RATIO = 1.2


def mine_round(cfg, backbone: dict[str, torch.Tensor], public_images: torch.Tensor, clients,
               mode: str, server_round: int) -> dict[str, Any]:
    """Mining for ``clients`` (list of uint8 image tensors) in one round; times in seconds."""
    feature_cache.clear_memory()
    t_public = t_own = t_select = 0.0
    sets = []
    model = loaded_model(cfg, backbone)
    model.eval()
    for images in clients:
        t0 = time.perf_counter()
        if mode == "off":
            pub = feature_cache.compute_public_features(cfg, backbone, public_images)
        else:
            pub = feature_cache.shared_public_features(cfg, backbone, public_images,
                                                       server_round, mode="process")
        t1 = time.perf_counter()
        own = embed(model, images, batch_size=cfg.eval_batch_size)
        t2 = time.perf_counter()
        sets.append(select_hard_negatives(pub, own, cfg.hn_threshold))
        t3 = time.perf_counter()
        t_public, t_own, t_select = t_public + t1 - t0, t_own + t2 - t1, t_select + t3 - t2
    return {"public_s": t_public, "own_s": t_own, "select_s": t_select,
            "mining_s": t_public + t_select, "with_own_s": t_public + t_own + t_select,
            "computed": feature_cache.stats["computed"] if mode != "off" else len(clients),
            "sets": sets}


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "### Hard-negative mining phase (one round, one process)",
        "",
        f"{env['time_utc']}, {env['host_cpus']} CPUs, load average "
        f"{env['load_average_1_5_15'][0]:.1f}, torch threads {result['torch_threads']}; "
        f"|D_g| = {result['num_public']} public images, {result['private_per_client']} private "
        f"images per client, {result['model']} at {result['image_size']} px; median [min-max] of "
        f"{result['repeats']} repeats; target: 40 clients <= {TARGET_RATIO}x one client "
        "(mining = public features + selection).",
        "",
        "| clients | public embeddings | mining s (cached) | x 1 client | mining s (uncached) "
        "| x 1 client | with own features s (cached) | x 1 client | same D_HN |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['clients']} | {row['computed']} | {fmt_spread(row['cached']['mining_s'])} | "
            f"**{fmt_spread(row['cached_ratio'])}** | {fmt_spread(row['uncached']['mining_s'])} | "
            f"{fmt_spread(row['uncached_ratio'])} | "
            f"{fmt_spread(row['cached']['with_own_s'])} | "
            f"{fmt_spread(row['cached_with_own_ratio'])} | "
            f"{'yes' if row['identical_sets'] else 'NO'} |")
    return "\n".join(lines)


def run(out: Path, clients: list[int], repeats: int, cache_dir: Path | None = None,
        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    configure_threads()
    conf = {**CONFIG, "num-clients": max(clients), **(overrides or {}),
            "cache-dir": str(cache_dir or out / "cache")}
    cfg = resolve(conf)
    ws = open_workspace(cfg)
    backbone, _, _ = load_or_pretrain(cfg, ws)
    public_images, _ = ws.public()
    private = [ws.client(c).train_images for c in range(cfg.num_clients)]
    samples: dict[int, dict[str, list]] = {n: {"cached": [], "uncached": []} for n in clients}
    identical = dict.fromkeys(clients, True)
    for rep in range(repeats):
        for n in clients:
            for mode, label in (("process", "cached"), ("off", "uncached")):
                res = mine_round(cfg, backbone, public_images, private[:n], mode, 1)
                samples[n][label].append(res)
            a, b = samples[n]["cached"][-1]["sets"], samples[n]["uncached"][-1]["sets"]
            identical[n] &= all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        print(f"mining repeat {rep + 1}/{repeats} done", flush=True)
    base = min(clients)
    rows = []
    for n in clients:
        row: dict[str, Any] = {"clients": n, "identical_sets": identical[n],
                               "computed": samples[n]["cached"][0]["computed"],
                               "hard_negatives_per_client": [
                                   int(len(s)) for s in samples[n]["cached"][0]["sets"]][:5]}
        for label in ("cached", "uncached"):
            row[label] = {k: spread([r[k] for r in samples[n][label]])
                          for k in ("public_s", "own_s", "select_s", "mining_s", "with_own_s")}
        for label, key, name in (("cached", "mining_s", "cached_ratio"),
                                 ("uncached", "mining_s", "uncached_ratio"),
                                 ("cached", "with_own_s", "cached_with_own_ratio")):
            row[name] = spread([samples[n][label][i][key] / samples[base][label][i][key]
                                for i in range(repeats)])
        rows.append(row)
    result = {"environment": environment(None), "torch_threads": torch.get_num_threads(),
              "repeats": repeats, "config": conf, "num_public": int(len(public_images)),
              "private_per_client": int(len(private[0])), "model": cfg.model,
              "image_size": cfg.image_size, "rows": rows}
    if not all(identical.values()):
        raise AssertionError(f"cached and uncached hard-negative sets differ: {identical}")
    write_outputs(out, "mining", result, markdown(result))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--clients", default="1,10,40")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    res = run(args.out, [int(c) for c in args.clients.split(",")], args.repeats, args.cache_dir)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
