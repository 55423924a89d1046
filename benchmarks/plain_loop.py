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


def _personal_eval(cfg, ws, backbone: dict[str, torch.Tensor],
                   states: list[PersonalState | None], names: list[str]) -> dict[str, Any]:
    """Each client's personalised protocol for ``names`` (global/local/personal), averaged."""
    per_client = []
    for pid, state in enumerate(states):
        data, others = ws.client(pid), ws.other_clients_test(pid)
        out: dict[str, float] = {}
        for name in names:
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
        per_client.append(out)
    return split_by_model(per_client)


def run_plain(run_config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the federation's workload as a plain loop; returns {final, rounds, seconds}."""
    t0 = time.perf_counter()
    cfg = resolve(run_config)
    if cfg.num_clients < 1:
        raise SystemExit("plain_loop: set num-clients >= 1 in --run-config")
    if cfg.fraction_train != 1.0:
        raise SystemExit("plain_loop: only fraction-train = 1.0 (every client every round)")
    ws = open_workspace(cfg)
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    phi = phi if cfg.uses_public_data else None
    states: list[PersonalState | None] = [None] * cfg.num_clients
    pre = _personal_eval(cfg, ws, backbone, states, ["global"])
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
        for pid in range(cfg.num_clients):
            data = ws.client(pid)
            res = train_local_round(
                make, backbone, phi, LocalData(data.train_images, data.train_labels,
                                               data.num_classes),
                cfg, states[pid], seeded_generator(cfg.seed, rnd, pid),
                public_images=public_images, public_labels=public_labels,
                public_features=feats, server_round=rnd)
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
    final = _personal_eval(cfg, ws, backbone, states, ["global", "local", "personal"])
    out.mkdir(parents=True, exist_ok=True)
    model = {f"backbone.{k}": v for k, v in backbone.items()}
    if phi is not None:
        model["phi"] = phi
    torch.save(model, out / "final_model.pt")
    result = {"pretrained": {"personalized": pre.get("global", {})}, "rounds": rounds,
              "final": final, "seconds": time.perf_counter() - t0}
    (out / "plain.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    from server.inprocess import parse_run_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run-config", default="")
    args = parser.parse_args(argv)
    configure_threads()
    run_plain(parse_run_config(args.run_config), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
