"""SGC-DPL at one federated site (``task = "semi-reid"``): one local round = one step of the
method on the site's own labelled and unlabelled images, from the received backbone.

Step 0 (the first ``semi-init-rounds`` rounds) is SGC-DPL's iteration 0 (Sec. 3.3.1): BoT on
{X^l, Y^l} plus the augmented triplet on X^u. Step t >= 1 is iteration t (Fig. 3.1): features of
X^l and X^u under the current net, clustering of X^u (``semi-clustering``; SG-AP searches p* with
the site's labelled identities), tau = tau_l + d_t with t counted in rounds, the reliable subset,
soft pseudo-labels on the classifier expanded to C^l + C' classes, ``local-epochs`` epochs: the
same ``sgc_dpl_iteration`` that ``run_sgc_dpl``'s loop calls, one iteration per round.

What stays on the site: the labelled classifier W^l (C^l, d), the features, the clusters, the
reliable set and the pseudo-labels; what the caller sends is the backbone only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.models import IdentityClassifier, ReidNet
from fedfr.reid.semi.clustering import SGAPConfig
from fedfr.reid.semi.pseudo_labels import expanded_targets
from fedfr.reid.semi.sgc_dpl import (
    SGCDPLConfig,
    cluster_features,
    labelled_classes,
    sgc_dpl_iteration,
    train_semi_epochs,
)
from fedfr.reid.semi.splits import SemiSplit, make_semi_split, num_labelled

log = logging.getLogger(__name__)

#: AP's neighbours on the k-NN graph (the synthetic preset of benchmarks/sgc_dpl.py)
AP_NEIGHBOURS = 100
#: the keys of an iteration's row that a site logs (all of them stay on the site)
SITE_ROW = ("clusters", "reliable", "share", "tau_l", "tau", "loss", "purity", "nmi_reliable",
            "nmi_all", "p_star", "search_stop")


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
    choices (L2-normalised f_bn, temperature 0.1, d_t in tau_l units of 0.1, tau_l from the
    exemplar distances, camera-centred clustering features with ``semi-centre-cameras``)."""
    from fedfr.reid import federated as fed

    return SGCDPLConfig(train=fed.train_config(cfg, pretrain=False), model=cfg.reid_model,
                        init=cfg.semi_init, clustering=cfg.semi_clustering, iterations=1,
                        init_epochs=cfg.local_epochs, iter_epochs=cfg.local_epochs,
                        normalize=True, temperature=0.1, tau_step=0.1, tau_units="tau_l",
                        tau_pairs="exemplar", centre_cameras=cfg.semi_centre_cameras,
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
    classifier = IdentityClassifier(model.feature_dim, cl)
    with torch.no_grad():
        if w is None:
            from fedfr.reid.federated import imprint

            fl, _ = cluster_features(model, labelled, [], dataclasses.replace(
                scfg, centre_cameras=False))
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
    res = sgc_dpl_iteration(model, classifier, labelled, unlabelled, scfg, step,
                            generator=generator)
    row = {"step": step, **{k: res.row[k] for k in SITE_ROW if k in res.row}}
    log.info("semi-reid step %d: %d clusters, reliable %.2f, purity %.3f", step,
             row["clusters"], row["share"], row["purity"])
    return SemiStep(res.classifier.weight.detach()[:cl].clone(), res.num_examples, row)
