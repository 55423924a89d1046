"""The baseline of the overhead benchmark: a FedFR federation as a plain in-process PyTorch loop.

No Flower, no Ray, no messages, no checkpoints: the same work as ``server.federation`` +
``clients.app`` written as one loop over ``fedfr/``: the workspace and the pre-trained model
(loaded from the cache), the start-of-run personalised evaluation with Theta_g^0, then per round
every client's ``train_local_round`` (same seeds: ``seeded_generator(seed, round, client)``) and
the weighted mean of eq. 7.2 / 7.4 (``fedfr.aggregation.WeightedMean``), the generic evaluation
every ``eval-every`` rounds, and the final personalised evaluation (global, local, personal).
Personal state stays in a list in memory. Writes ``final_model.pt`` (the global backbone and Phi)
and ``plain.json`` (metrics) to ``--out``, so a run can be checked against the federation's.

    python -m benchmarks.plain_loop --out DIR --run-config "num-clients=4 num-server-rounds=3"

``--workers N`` trains the clients of a round in N forked processes (the same cores the
federation's N Ray actors get; one torch thread each with ``FEDFR_NUM_THREADS=1``); the mean is
folded in client order either way, so the result equals the sequential loop's bit for bit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from fedfr.aggregation import WeightedMean
from fedfr.config import resolve
from fedfr.dfc import DFCHead
from fedfr.face.evaluation.run import (
    embed_eval,
    evaluate_generic,
    personalized_metrics,
    split_by_model,
)
from fedfr.face.models.template import model_factory
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.local import LocalData, PersonalState, train_local_round
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace
from fedfr.feature_cache import compute_public_features
from fedfr.runtime import configure_threads


def _eval_client(pid: int) -> dict[str, float]:
    """One client's personalised protocol for ``_ROUND["names"]`` (global/local/personal)."""
    r = _ROUND
    cfg, ws, backbone, state = r["cfg"], r["ws"], r["backbone"], r["states"][pid]
    data, others = ws.client(pid), ws.other_clients_test(pid)
    out: dict[str, float] = {}
    for name in r["names"]:
        model = model_factory(cfg)()
        use_global = name == "global" or state is None or state.prev_backbone is None
        model.load_state_dict(backbone if use_global else state.prev_backbone)
        head = None
        if name == "personal" and state is not None and state.dfc is not None:
            dfc = DFCHead(cfg.embedding_size, state.w.shape[0])
            dfc.load_personal_state(state.dfc)
            head = dfc.pi
        res = personalized_metrics(embed_eval(cfg, model, data.test_images, head),
                                   data.test_labels,
                                   embed_eval(cfg, model, data.train_images, head),
                                   data.train_labels, embed_eval(cfg, model, others, head))
        out.update({f"{name}.{k}": v for k, v in res.items()})
    return out


def _personal_eval(cfg, ws, backbone: dict[str, torch.Tensor],
                   states: list[PersonalState | None], names: list[str],
                   workers: int = 1) -> dict[str, Any]:
    """Each client's personalised protocol for ``names`` (global/local/personal), averaged
    in client order (clients evaluated in ``workers`` processes)."""
    _ROUND.update(cfg=cfg, ws=ws, backbone=backbone, states=states, names=names)
    return split_by_model(list(_map_clients(_eval_client, len(states), workers)))


#: what a forked worker needs of the current round (set before the pool forks)
_ROUND: dict[str, Any] = {}


def _train_client(pid: int):
    """One client's local round (in a worker forked from the loop, or in the loop itself)."""
    r = _ROUND
    data = r["ws"].client(pid)
    res = train_local_round(
        r["make"], r["backbone"], r["phi"], LocalData(data.train_images, data.train_labels,
                                                      data.num_classes),
        r["cfg"], r["states"][pid], seeded_generator(r["cfg"].seed, r["round"], pid),
        public_images=r["public_images"], public_labels=r["public_labels"],
        public_features=r["feats"], server_round=r["round"])
    return pid, res


def _map_clients(fn, clients: int, workers: int):
    """``fn(pid)`` for every client, results in client order; in ``workers`` processes forked
    from this one (they see ``_ROUND`` as it is now) or here."""
    if workers <= 1:
        yield from (fn(pid) for pid in range(clients))
        return
    import multiprocessing

    from fedfr.runtime import configure_threads

    with multiprocessing.get_context("fork").Pool(workers, initializer=configure_threads) as pool:
        yield from pool.imap(fn, range(clients))


def run_plain(run_config: dict[str, Any], out: Path, workers: int = 1) -> dict[str, Any]:
    """Run the federation's workload as a plain loop; returns {final, rounds, seconds}."""
    t0, started_at = time.perf_counter(), time.time()
    cfg = resolve(run_config)
    if cfg.num_clients < 1:
        raise SystemExit("plain_loop: set num-clients >= 1 in --run-config")
    if cfg.fraction_train != 1.0:
        raise SystemExit("plain_loop: only fraction-train = 1.0 (every client every round)")
    ws = open_workspace(cfg)
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    phi = phi if cfg.uses_public_data else None
    states: list[PersonalState | None] = [None] * cfg.num_clients
    pre = _personal_eval(cfg, ws, backbone, states, ["global"], workers)
    rounds = []
    public_images = public_labels = None
    if cfg.uses_public_data:
        public_images, public_labels = ws.public()
    make = model_factory(cfg)
    for rnd in range(1, cfg.num_server_rounds + 1):
        mean = WeightedMean()
        feats = None
        if cfg.uses_public_data and cfg.hard_negatives:
            feats = compute_public_features(cfg, backbone, public_images)  # once a round
        _ROUND.update(ws=ws, make=make, backbone=backbone, phi=phi, cfg=cfg, states=states,
                      round=rnd, public_images=public_images, public_labels=public_labels,
                      feats=feats)
        for pid, res in _map_clients(_train_client, cfg.num_clients, workers):
            states[pid] = res.state
            weight = res.num_examples + (res.num_hard_negatives
                                         if cfg.aggregation_weight == "private+hn" else 0)
            update = {f"backbone.{k}": v.numpy() for k, v in res.backbone.items()}
            if res.phi is not None:
                update["phi"] = res.phi.numpy()
            mean.add(update, weight)
        avg = mean.result()
        backbone = {k[len("backbone."):]: torch.from_numpy(v) for k, v in avg.items()
                    if k.startswith("backbone.")}
        phi = torch.from_numpy(avg["phi"]) if "phi" in avg else None
        row: dict[str, Any] = {"round": rnd}
        if rnd % cfg.eval_every == 0 or rnd == cfg.num_server_rounds:
            row["generic"] = evaluate_generic(cfg, ws, backbone)
        rounds.append(row)
    final = _personal_eval(cfg, ws, backbone, states, ["global", "local", "personal"], workers)
    out.mkdir(parents=True, exist_ok=True)
    model = {f"backbone.{k}": v for k, v in backbone.items()}
    if phi is not None:
        model["phi"] = phi
    torch.save(model, out / "final_model.pt")
    result = {"pretrained": {"personalized": pre.get("global", {})}, "rounds": rounds,
              "final": final, "seconds": time.perf_counter() - t0,
              "started_at": started_at, "workers": workers}
    (out / "plain.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    from server.inprocess import parse_run_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run-config", default="")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes training a round's clients side by side")
    args = parser.parse_args(argv)
    configure_threads()
    run_plain(parse_run_config(args.run_config), args.out, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
