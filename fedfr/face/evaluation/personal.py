"""The personalised protocol on a finished run's output folder, outside a federation.

A run folder (``output-dir``) holds ``report.json`` (its config and experiment id),
``final_model.pt`` (Theta_g, Phi_g) and the clients' saved personal states
(``<state-dir>/<experiment>/client-NNNN/state-rNNNN.pt``: W_l, Pi_l / Omega_l / b, Theta_l).
``evaluate_run`` embeds every client's test and training images and the other clients' test
images with each requested model (``global`` = Theta_g, ``local`` = Theta_l,
``personal`` = [Theta_l, Pi_l], and the two-stage ``finetune`` / ``kd`` trained here as the
client's evaluate handler trains them) and returns per-client ``ClientScores`` (for the
bootstrap of ``fedfr.face.evaluation.uncertainty``) plus per-client diagnostics of the branch:
how far Pi_l is from the identity, the one-vs-all accuracy of Omega on the client's training
and test images, and how far Theta_l is from Theta_g.

In a real deployment this runs on each node over its own data; in a simulation all clients'
data are on one machine (the benchmark convention of ``docs/method.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedfr.checkpoint import safe_load
from fedfr.client_state import ClientStateStore
from fedfr.config import Config, resolve, resolve_path
from fedfr.dfc import DFCHead
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.transforms import to_float
from fedfr.face.evaluation.run import embed_eval
from fedfr.face.evaluation.uncertainty import (
    ClientScores,
    client_metrics,
    client_scores,
    mean_metrics,
)
from fedfr.face.models import model_from_config
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.local import LocalData, PersonalState
from fedfr.face.workspace import Workspace, open_workspace
from fedfr.losses import cosine_logits, expand_cosine

MODELS = ("global", "local", "personal", "finetune", "kd")


@dataclass
class FinishedRun:
    """What ``evaluate_run`` needs from a run folder."""

    cfg: Config
    backbone: dict[str, torch.Tensor]
    phi: torch.Tensor | None
    states: dict[int, PersonalState | None]
    num_rounds: int
    folder: Path


def _backbone_and_phi(tensors: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    prefix = "backbone."
    backbone = {k[len(prefix):]: torch.as_tensor(v) for k, v in tensors.items()
                if k.startswith(prefix)}
    phi = tensors.get("phi")
    return backbone, (torch.as_tensor(phi) if phi is not None else None)


def load_run(folder: str | Path, state_dir: str | Path | None = None) -> FinishedRun:
    """Config, final Theta_g / Phi_g and each client's last personal state of a run folder.

    state_dir overrides where the client states are (default: the run's ``state-dir``, else
    ``<folder>/client-state``). A client without a saved state gets None (it never trained:
    its Theta_l is Theta_g and it has no branch).
    """
    folder = Path(folder)
    report_path = folder / "report.json"
    model_path = folder / "final_model.pt"
    for p in (report_path, model_path):
        if not p.is_file():
            raise ConfigError(f"{p}: not found; expected the output folder of a finished run "
                              "(report.json and final_model.pt)")
    try:
        report = json.loads(report_path.read_text())
        cfg = resolve(report["config"])
        experiment = str(report["experiment-id"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataFormatError(f"{report_path}: not a fedfr run report ({e})") from e
    tensors = safe_load(model_path)
    if not isinstance(tensors, dict):
        raise DataFormatError(f"{model_path}: expected a dict of tensors")
    backbone, phi = _backbone_and_phi(tensors)
    if not backbone:
        raise DataFormatError(f"{model_path}: no 'backbone.*' tensors")
    root = Path(state_dir) if state_dir else (
        resolve_path(cfg.state_dir) if cfg.state_dir else folder / "client-state")
    if not (root / experiment).is_dir():
        raise ConfigError(f"{root / experiment}: no client states of experiment {experiment} "
                          "(pass --state-dir where the clients kept them)")
    states = {c: ClientStateStore(root, experiment, c).load_latest()
              for c in range(cfg.num_clients)}
    return FinishedRun(cfg, backbone, phi, states, cfg.num_server_rounds, folder)


@dataclass
class PersonalEvaluation:
    """Per model, per client scores; per client diagnostics (floats)."""

    scores: dict[str, list[ClientScores]] = field(default_factory=dict)
    diagnostics: list[dict[str, float]] = field(default_factory=list)

    def metrics(self, fars, fpirs) -> dict[str, dict[str, float]]:
        """Mean over clients of each model's metrics (the federated evaluation's numbers)."""
        return {m: mean_metrics([client_metrics(s, fars, fpirs) for s in sc])
                for m, sc in self.scores.items()}


def _model(cfg: Config, state: dict[str, torch.Tensor]) -> nn.Module:
    model = model_from_config(cfg)
    model.load_state_dict(state)
    return model.eval()


def _relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    num = den = 0.0
    for k, v in a.items():
        if v.is_floating_point():
            num += float((v.float() - b[k].float()).pow(2).sum())
            den += float(b[k].float().pow(2).sum())
    return math.sqrt(num / den) if den else math.nan


@torch.no_grad()
def converter_gains(head: DFCHead) -> dict[str, float]:
    """How Pi scales the span of the client's one-vs-all weights Omega and its complement.

    ``pi_gain_omega`` = ||Pi U||_F / ||U||_F with U an orthonormal basis of span(Omega rows);
    ``pi_gain_complement`` the same for the projector onto the orthogonal complement. Both
    are 1 for Pi = I; a gain < 1 on span(Omega) shrinks the directions that tell the client's
    own identities apart.
    """
    w = head.pi.weight.detach().float()
    u, sv, _ = torch.linalg.svd(head.omega.detach().float().T, full_matrices=False)
    u = u[:, sv > sv.max() * 1e-6]
    perp = torch.eye(w.shape[0]) - u @ u.T
    out = {"pi_gain_omega": float((w @ u).norm() / u.norm())}
    if float(perp.norm()) > 1e-6:
        out["pi_gain_complement"] = float((w @ perp).norm() / perp.norm())
    return out


@torch.no_grad()
def branch_diagnostics(cfg: Config, backbone: nn.Module, head: DFCHead,
                       images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Omega's one-vs-all decisions on images of the client's identities (labels 0..K_l-1).

    ``ova_tpr``: share of (image, own class) logits s'g(cos)+b > 0; ``ova_tnr``: share of
    (image, other class) logits <= 0; ``ova_bacc`` their mean; ``omega_rank1``: argmax_j cos
    equals the label.
    """
    backbone.eval()
    head.eval()
    f = torch.cat([backbone(to_float(images[a:a + 256]))
                   for a in range(0, len(images), 256)])
    cos = cosine_logits(head(f), head.omega)
    logit = cfg.bce_s * expand_cosine(cos, cfg.bce_t) + head.bias
    own = labels.long().unsqueeze(1) == torch.arange(head.num_local_classes)
    if not bool(own.any()):  # images of no local identity: only the negative decisions
        return {"ova_tnr": float((logit <= 0).float().mean())}
    tpr = float((logit[own] > 0).float().mean())
    tnr = float((logit[~own] <= 0).float().mean())
    return {"ova_tpr": tpr, "ova_tnr": tnr, "ova_bacc": (tpr + tnr) / 2,
            "omega_rank1": float((cos.argmax(1) == labels).float().mean())}


def evaluate_run(run: FinishedRun, models: tuple[str, ...] = ("global", "local", "personal"),
                 ws: Workspace | None = None) -> PersonalEvaluation:
    """The personalised protocol of each client for each model in ``models`` (see module doc)."""
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ConfigError(f"evaluation models {bad}: expected some of {MODELS}")
    cfg = run.cfg
    ws = ws or open_workspace(cfg)
    n = len(ws.split.clients)
    # identity of each test image, unique across clients (client c's label l -> c*K + l)
    offset = max(ws.client(c).num_classes for c in range(n))
    data = [ws.client(c) for c in range(n)]
    global_model = _model(cfg, run.backbone)
    out = PersonalEvaluation({m: [] for m in models}, [])
    global_test = [embed_eval(cfg, global_model, d.test_images) for d in data]
    for c in range(n):
        state = run.states.get(c)
        diag: dict[str, float] = {"client": float(c)}
        nets: dict[str, tuple[nn.Module, nn.Module | None]] = {}
        local = (_model(cfg, state.prev_backbone) if state is not None
                 and state.prev_backbone is not None else global_model)
        head = None
        if state is not None and state.dfc is not None:
            head = DFCHead(cfg.embedding_size, state.w.shape[0])
            head.load_personal_state(state.dfc)
            eye = torch.eye(cfg.embedding_size)
            with torch.no_grad():
                diag["pi_rel_dev"] = float((head.pi.weight - eye).norm() / eye.norm())
                diag["pi_bias_norm"] = float(head.pi.bias.norm())
                diag["b"] = float(head.bias)
                diag.update(converter_gains(head))
            for split, imgs, ys in (("train", data[c].train_images, data[c].train_labels),
                                    ("test", data[c].test_images, data[c].test_labels)):
                diag.update({f"{k}_{split}": v for k, v in branch_diagnostics(
                    cfg, local, head, imgs, ys).items()})
            others = torch.cat([data[o].test_images for o in range(n) if o != c])
            diag["ova_tnr_other"] = branch_diagnostics(
                cfg, local, head, others, torch.full((len(others),), -1))["ova_tnr"]
        if state is not None and state.prev_backbone is not None:
            diag["theta_l_rel_dist"] = _relative_distance(state.prev_backbone, run.backbone)
            lf = embed_eval(cfg, local, data[c].test_images)
            diag["theta_l_feature_cos"] = float((lf * global_test[c]).sum(1).mean())
        for m in models:
            if m == "global":
                nets[m] = (global_model, None)
            elif m == "local":
                nets[m] = (local, None)
            elif m == "personal":
                nets[m] = (local, head.pi if head is not None else None)
            else:
                nets[m] = (_personalized(m, cfg, ws, run, c), None)
        for m, (net, pi) in nets.items():
            if m == "global":
                others = [global_test[o] for o in range(n) if o != c]
            else:
                others = [embed_eval(cfg, net, data[o].test_images, pi)
                          for o in range(n) if o != c]
            other_labels = torch.cat([data[o].test_labels + o * offset
                                      for o in range(n) if o != c])
            test_f = global_test[c] if m == "global" else embed_eval(cfg, net,
                                                                     data[c].test_images, pi)
            out.scores[m].append(client_scores(
                test_f.numpy(), data[c].test_labels.numpy(),
                embed_eval(cfg, net, data[c].train_images, pi).numpy(),
                data[c].train_labels.numpy(), torch.cat(others).numpy(),
                other_labels.numpy()))
        out.diagnostics.append(diag)
    return out


def _personalized(method: str, cfg: Config, ws: Workspace, run: FinishedRun,
                  c: int) -> nn.Module:
    """Yu et al.'s stage 2 on client c, seeded as the client's evaluate handler seeds it."""
    from fedfr.face.models.template import model_factory
    from fedfr.face.training.personalize import personalize

    data = ws.client(c)
    public_images = public_labels = None
    if cfg.uses_public_data and run.phi is not None:
        public_images, public_labels = ws.public()
    model, _ = personalize(method, model_factory(cfg), run.backbone, run.phi,
                           LocalData(data.train_images, data.train_labels, data.num_classes),
                           cfg, run.states.get(c), seeded_generator(cfg.seed, run.num_rounds, c,
                                                                    17),
                           public_images, public_labels)
    return model.eval()


def score_summary(sc: ClientScores) -> dict[str, float]:
    """Mean genuine / impostor score of one client and their separation
    d' = (mu_gen - mu_imp) / sqrt((var_gen + var_imp) / 2)."""
    gen = torch.as_tensor(np.concatenate(sc.genuine)).double()
    imp = torch.as_tensor(sc.impostor).double().ravel()
    sep = float((gen.mean() - imp.mean()) / ((gen.var() + imp.var()) / 2).sqrt())
    return {"mean_genuine": float(gen.mean()), "mean_impostor": float(imp.mean()), "d_prime": sep}


def personal_report(ev: PersonalEvaluation, out: Path, num_samples: int = 500,
                    title: str = "Personalised protocols") -> str:
    """Write ``personal.csv`` (model, metric, estimate, low, high; shares in [0, 1]),
    ``personal_diff.csv`` (model - global) and ``personal.md``; return the markdown.

    Intervals: 95 % percentile bootstrap over clients and identities (``num_samples``
    replicates), differences paired; columns at the levels the data size supports.
    """
    import pandas as pd

    from fedfr.face.evaluation.run import PERSONAL_FARS, PERSONAL_FPIRS, headline_levels
    from fedfr.face.evaluation.uncertainty import bootstrap

    out.mkdir(parents=True, exist_ok=True)
    runs = {m: [sc] for m, sc in ev.scores.items()}
    ref = "global" if "global" in runs and len(runs) > 1 else None
    intervals, diffs = bootstrap(runs, PERSONAL_FARS, PERSONAL_FPIRS,
                                 num_samples=max(1, num_samples), reference=ref)
    point = ev.metrics(PERSONAL_FARS, PERSONAL_FPIRS)
    sample = next(iter(point.values()))
    keys = (headline_levels(sample, "tar", "num_impostor")
            + headline_levels(sample, "tpir", "num_nonmated") + ["rank1"])
    names = {"global": "Theta_g", "local": "Theta_l", "personal": "[Theta_l, Pi_l]",
             "finetune": "Fine-tune", "kd": "KD"}
    rows = [{"model": m, "metric": k, "estimate": iv.estimate, "low": iv.low, "high": iv.high}
            for m, d in intervals.items() for k, iv in d.items() if not k.startswith("num_")]
    pd.DataFrame(rows).to_csv(out / "personal.csv", index=False)
    drows = [{"model": m, "minus": ref, "metric": k, "estimate": iv.estimate, "low": iv.low,
              "high": iv.high} for m, d in diffs.items() for k, iv in d.items()
             if not k.startswith("num_")]
    if drows:
        pd.DataFrame(drows).to_csv(out / "personal_diff.csv", index=False)

    def cell(iv, sign: str = "") -> str:
        if math.isnan(iv.estimate):
            return "n/a"
        star = "*" if sign and (iv.low > 0 or iv.high < 0) else ""
        return (f"{100 * iv.estimate:{sign}.2f} [{100 * iv.low:{sign}.1f}, "
                f"{100 * iv.high:{sign}.1f}]{star}")

    n_clients = len(next(iter(ev.scores.values())))
    lines = [f"# {title}", "", f"{n_clients} clients; values in % with 95 % bootstrap "
             f"intervals ({num_samples} replicates over clients and identities).", "",
             "| model | " + " | ".join(k.upper() for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    lines += [f"| {names.get(m, m)} | " + " | ".join(cell(d[k]) for k in keys) + " |"
              for m, d in intervals.items()]
    if diffs:
        lines += ["", f"Paired differences to {names[ref]} (points; * = interval excludes 0):",
                  "", "| model | " + " | ".join(k.upper() for k in keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        lines += [f"| {names.get(m, m)} | " + " | ".join(cell(d[k], "+") for k in keys) + " |"
                  for m, d in diffs.items()]
    diag = diagnostics_table(ev.diagnostics)
    if diag:
        lines += ["", "Branch and backbone diagnostics (mean over clients):", ""]
        lines += [f"- {k}: {v:.4f}" for k, v in diag.items()]
    text = "\n".join(lines) + "\n"
    (out / "personal.md").write_text(text)
    return text


def diagnostics_table(diags: list[dict[str, float]]) -> dict[str, float]:
    """Mean over clients of each diagnostic (nan-ignoring)."""
    return {k: v for k, v in mean_metrics(diags).items() if k != "client"}


__all__ = ["MODELS", "FinishedRun", "PersonalEvaluation", "load_run", "evaluate_run",
           "branch_diagnostics", "converter_gains", "diagnostics_table", "score_summary",
           "personal_report"]
