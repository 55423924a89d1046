"""SGC-DPL at one federated site (``task = "semi-reid"``): one local round = one step of the
method on the site's own labelled and unlabelled images, from the received backbone.

Step 0 (the first ``semi-init-rounds`` rounds) is SGC-DPL's iteration 0 (Sec. 3.3.1): BoT on
{X^l, Y^l} plus the augmented triplet on X^u. Step t >= 1 is iteration t (Fig. 3.1): features of
X^l and X^u under the current net, clustering of X^u (``semi-clustering``; SG-AP searches p* with
the site's labelled identities), tau = tau_l + d_t with t counted in rounds, the reliable subset,
soft pseudo-labels on the classifier expanded to C^l + C' classes, ``local-epochs`` epochs. All of
it composes ``fedfr.reid.semi``'s public pieces (``cluster_unlabelled``, ``labelled_tau``,
``threshold``, ``select_reliable``, ``soft_pseudo_labels``, ``expand_classifier``,
``expanded_targets``, ``train_semi_epochs``) as ``run_sgc_dpl``'s loop does, one step per call.

What stays on the site: the labelled classifier W^l (C^l, d), the features, the clusters, the
reliable set and the pseudo-labels; what the caller sends is the backbone only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.transforms import build_transform
from fedfr.reid.models import IdentityClassifier, ReidNet
from fedfr.reid.semi.clustering import SGAPConfig
from fedfr.reid.semi.pseudo_labels import (
    expand_classifier,
    expanded_targets,
    soft_pseudo_labels,
)
from fedfr.reid.semi.reliability import labelled_tau, select_reliable, threshold
from fedfr.reid.semi.sgc_dpl import (
    SGCDPLConfig,
    cluster_quality,
    cluster_unlabelled,
    train_semi_epochs,
)
from fedfr.reid.semi.splits import SemiSplit, make_semi_split, num_labelled
from fedfr.reid.training import extract_features

log = logging.getLogger(__name__)

#: AP's neighbours on the k-NN graph (the synthetic preset of benchmarks/sgc_dpl.py)
AP_NEIGHBOURS = 100


def check_ratio(setting: str) -> None:
    """ConfigError naming ``semi-ratio`` when it is not a split setting."""
    try:
        num_labelled(setting, 100)
    except ConfigError as e:
        raise ConfigError(f"config 'semi-ratio': {e}") from None


def semi_config(cfg: Config) -> SGCDPLConfig:
    """SGC-DPL's settings for a federation: the run's local recipe (``fed.train_config``: SGD at
    ``lr``, P x K from ``batch-size`` / ``reid-instances``), ``local-epochs`` per step, the
    clustering ``semi-clustering`` on the 100-NN graph, and the synthetic preset's feature
    choices (L2-normalised f_bn, temperature 0.1, d_t in tau_l units of 0.1)."""
    from fedfr.reid import federated as fed

    return SGCDPLConfig(train=fed.train_config(cfg, pretrain=False), model=cfg.reid_model,
                        clustering=cfg.semi_clustering, iterations=1,
                        init_epochs=cfg.local_epochs, iter_epochs=cfg.local_epochs,
                        normalize=True, temperature=0.1, tau_step=0.1, tau_units="tau_l",
                        sgap=SGAPConfig(k=AP_NEIGHBOURS, seed=cfg.seed),
                        eval_batch=cfg.eval_batch_size, seed=cfg.seed)


def site_split(records: Sequence[ReidImage], name: str, setting: str, seed: int
               ) -> tuple[SemiSplit, list[ReidImage], list[ReidImage]]:
    """The site's identity-disjoint labelled / unlabelled parts (``make_semi_split``, seeded):
    (manifest, X^l, X^u)."""
    split = ReidSplit(name=name, root=Path("."), train=list(records), query=[], gallery=[])
    semi = make_semi_split(split, setting, seed)
    xl, xu = semi.parts(list(records))
    return semi, xl, xu


def labelled_classes(records: Sequence[ReidImage]) -> tuple[np.ndarray, int]:
    """Class index (N^l,) of each labelled record (its pid's rank among the sorted pids), C^l."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return np.array([mapping[r.pid] for r in records], dtype=np.int64), len(mapping)


def features(model: ReidNet, records: Sequence[ReidImage], scfg: SGCDPLConfig) -> Tensor:
    """The clustering / distance features (N, d) of ``records`` (SGC-DPL's eval transform)."""
    f, _, _ = extract_features(model, records, build_transform(scfg.train.transform),
                               scfg.eval_batch, normalize=scfg.normalize, feature=scfg.feature)
    return f


@dataclass
class SemiStep:
    """One local step: the labelled classifier rows to keep (C^l, d) and the log numbers."""

    w: Tensor
    num_examples: int
    row: dict[str, Any] = field(default_factory=dict)


def semi_step(model: ReidNet, w: Tensor | None, labelled: Sequence[ReidImage],
              unlabelled: Sequence[ReidImage], scfg: SGCDPLConfig, step: int,
              generator: torch.Generator) -> SemiStep:
    """Train ``model`` in place for one SGC-DPL step (module doc); ``w``: the site's labelled
    classifier (C^l, d) from its last round, None at its first (imprinted: the normalised class
    means under ``model``). step 0 = iteration 0, step t >= 1 = iteration t."""
    yl, cl = labelled_classes(labelled)
    if cl < 2:
        raise ConfigError(f"semi-reid: a site needs at least 2 labelled identities, got {cl} "
                          "(raise 'semi-ratio' or 'reid-synthetic-ids')")
    fl = features(model, labelled, scfg)
    classifier = IdentityClassifier(model.feature_dim, cl)
    with torch.no_grad():
        if w is None:
            from fedfr.reid.federated import imprint

            w = imprint(fl, torch.as_tensor(yl), cl)
        classifier.fc.weight.copy_(w)
    ls = scfg.train.label_smoothing
    if step == 0:
        targets = expanded_targets(yl, cl, torch.zeros(0, 0), ls)
        aug = list(unlabelled) if scfg.init == "augmented" and scfg.aug_batch > 0 else []
        stats = train_semi_epochs(model, classifier, labelled, targets, yl, scfg,
                                  epochs=scfg.init_epochs, unlabelled=aug, generator=generator)
        return SemiStep(classifier.weight.detach().clone(), len(labelled),
                        {"step": 0, "loss": stats.get("loss", float("nan"))})
    fu = features(model, unlabelled, scfg)
    labels, exemplars, info = cluster_unlabelled(fl, yl, fu, scfg)
    tau_l = labelled_tau(fl, yl, scfg.tau_rule, scfg.tau_bins, seed=scfg.seed)
    tau = threshold(tau_l, step, scfg.tau_step, scfg.tau_units)
    sel = select_reliable(fu, labels, exemplars, tau if scfg.progressive else float("inf"))
    idx = np.flatnonzero(sel.mask)
    cp = len(exemplars)
    if scfg.labels == "soft":
        pseudo = soft_pseudo_labels(fu[idx], fu[exemplars], scfg.temperature, scfg.pl_distance)
    else:
        pseudo = torch.nn.functional.one_hot(torch.as_tensor(labels[idx]), cp).float()
    quality = cluster_quality(labels, np.array([r.pid for r in unlabelled]), sel.mask)
    classifier = expand_classifier(classifier, cl, cp, scfg.keep_labelled_weights)
    recs = list(labelled) + [unlabelled[i] for i in idx]
    targets = expanded_targets(yl, cl, pseudo, ls)
    groups = np.concatenate([yl, cl + labels[idx]])
    stats = train_semi_epochs(model, classifier, recs, targets, groups, scfg,
                              epochs=scfg.iter_epochs, generator=generator)
    row = {"step": step, "clusters": cp, "reliable": int(sel.mask.sum()),
           "share": float(sel.mask.mean()), "tau_l": tau_l, "tau": tau,
           "loss": stats.get("loss", float("nan")), **quality,
           **{k: v for k, v in info.items() if k in ("p_star", "search_stop")}}
    log.info("semi-reid step %d: %d clusters, reliable %.2f, purity %.3f", step, cp,
             row["share"], row["purity"])
    return SemiStep(classifier.weight.detach()[:cl].clone(), len(recs), row)
