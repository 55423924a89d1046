"""What the DFC branch does to the personalised 1:1 protocol when trained longer (issue 13).

From a finished FedFR run folder, each client's branch (Pi = I, Omega from its saved W_l, b = 0)
is trained ALONE with eq. 7.6 on frozen features of its final local backbone Theta_l, for up
to ``--epochs`` epochs, with the negatives of the run (its private images of other identities
plus the public hard negatives selected at ``--thresholds``; ``private`` = no public
negatives). At each checkpoint epoch the personalised protocol of [Theta_l, Pi] is measured
with the genuine / impostor score means and Pi's gains on span(Omega) and its complement
(``fedfr.face.evaluation.personal.converter_gains``). Epoch 0 is Theta_l itself.

Writes ``dfc_probe.{csv,md}`` to ``--out``.

    python -m benchmarks.dfc_probe --run outputs/run --out outputs/dfc-probe --epochs 0,1,4,16,64
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fedfr.dfc import DFCHead
from fedfr.face.data.transforms import to_float
from fedfr.face.evaluation.personal import _model, converter_gains, load_run
from fedfr.face.evaluation.uncertainty import client_metrics, client_scores, mean_metrics
from fedfr.face.workspace import open_workspace
from fedfr.hard_negatives import select_hard_negatives
from fedfr.runtime import configure_threads

FARS, FPIRS = (1e-3, 1e-2), (1e-1,)


@torch.no_grad()
def _raw(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Backbone output (N, d) before any normalisation (what Pi sees)."""
    return torch.cat([model(to_float(images[a:a + 256])) for a in range(0, len(images), 256)])


def probe(run_dir: Path, negatives: str, epochs: list[int], lr: float | None = None
          ) -> list[dict[str, float]]:
    """Rows (one per checkpoint epoch) of client-averaged metrics; see the module doc."""
    run = load_run(run_dir)
    cfg = run.cfg
    ws = open_workspace(cfg)
    n = len(ws.split.clients)
    data = [ws.client(c) for c in range(n)]
    public, _ = ws.public()
    per_epoch: dict[int, list[dict[str, float]]] = {e: [] for e in epochs}
    for c in range(n):
        state = run.states[c]
        if state is None or state.prev_backbone is None:
            raise ValueError(f"{run_dir}: client {c} has no saved local model")
        model = _model(cfg, state.prev_backbone)
        f_train, f_test = _raw(model, data[c].train_images), _raw(model, data[c].test_images)
        f_other = torch.cat([_raw(model, data[o].test_images) for o in range(n) if o != c])
        y_other = torch.cat([data[o].test_labels + 10_000 * o for o in range(n) if o != c])
        x, y = f_train, data[c].train_labels.long()
        n_hn = 0
        if negatives != "private":
            f_pub = _raw(model, public)
            hn = select_hard_negatives(F.normalize(f_pub, dim=1), F.normalize(f_train, dim=1),
                                       float(negatives))
            n_hn = len(hn)
            x = torch.cat([x, f_pub[hn]])
            y = torch.cat([y, torch.full((n_hn,), -1, dtype=torch.long)])
        head = DFCHead(cfg.embedding_size, data[c].num_classes)
        head.init_omega(state.w)
        opt = torch.optim.SGD(head.parameters(), lr=lr or cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + c)
        for epoch in range(max(epochs) + 1):
            if epoch in epochs:
                with torch.no_grad():
                    te, tr, ot = (F.normalize(head(f), dim=1).numpy()
                                  for f in (f_test, f_train, f_other))
                sc = client_scores(te, data[c].test_labels.numpy(), tr,
                                   data[c].train_labels.numpy(), ot, y_other.numpy())
                row = {k: v for k, v in client_metrics(sc, FARS, FPIRS).items()
                       if not k.startswith("num_")}
                row["mean_genuine"] = float(np.concatenate(sc.genuine).mean())
                row["mean_impostor"] = float(sc.impostor.mean())
                row.update(converter_gains(head))
                row["hard_negatives"] = float(n_hn)
                per_epoch[epoch].append(row)
            if epoch == max(epochs):
                break
            perm = torch.randperm(len(x), generator=gen)
            for a in range(0, len(x), cfg.batch_size):
                idx = perm[a:a + cfg.batch_size]
                loss = cfg.alpha_bce * head.loss(x[idx], y[idx], s=cfg.bce_s, m=cfg.bce_m,
                                                 lam=cfg.bce_lambda, t=cfg.bce_t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return [{"negatives": negatives, "epoch": e, **mean_metrics(per_epoch[e])} for e in epochs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished FedFR run folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", default="0,1,4,16,64", help="checkpoint epochs")
    p.add_argument("--negatives", default="0.4,private",
                   help="comma-separated: a t_HN for public hard negatives, or 'private'")
    p.add_argument("--lr", type=float, default=None, help="default: the run's lr")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    configure_threads()
    epochs = sorted({int(e) for e in args.epochs.split(",") if e})
    rows = []
    for neg in [x for x in args.negatives.split(",") if x]:
        rows += probe(args.run, neg, epochs, args.lr)
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "dfc_probe.csv", index=False)
    cols = ["negatives", "epoch", "tar@1e-03", "tar@1e-02", "tpir@1e-01", "mean_genuine",
            "mean_impostor", "pi_gain_omega", "pi_gain_complement", "hard_negatives"]
    cols = [c for c in cols if c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(
            str(r[c]) if c in ("negatives", "epoch") else
            (f"{100 * r[c]:.2f}" if c.startswith(("tar", "tpir")) else f"{r[c]:.3f}")
            for c in cols) + " |")
    md = "\n".join(lines) + "\n"
    (args.out / "dfc_probe.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
