"""HSR, Hard Samples Rectification (thesis Ch. 4): source pre-training, direct transfer and the
clustering / training iterations on an unlabelled target domain, with Table 4.2's switches.

Per iteration (Fig. 4.2): extract the target features (global + upper / lower parts,
``features.py``) -> DBSCAN on the k-reciprocal Jaccard distance (``clustering.py``; outliers
dropped) -> PBH splits imperfect clusters (``pbh.py``) -> ICM mutual inter-camera pairs
(``icm.py``) -> ``epochs`` epochs of training with L_CE + L_trip + L_ICM (``losses.py``) through
the re-ID engine (``fedfr.reid.training.train_epochs``: P x K pseudo-identity batches, BoT
augmentation; L_trip and L_ICM enter as its ``extra_loss``, one ICM batch per step). A fresh
classifier is made each iteration (the number of clusters changes). Every choice the thesis
leaves open is a field of ``HSRConfig``; docs/unsupervised-reid.md (section HSR) lists them.

Target identity labels are read only for diagnostics (V-measure / NMI of the pseudo-labels, ICM
precision) and the evaluation, never for training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedfr.errors import ConfigError
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.transforms import ReidTransformConfig, train_batch
from fedfr.reid.evaluation import features_to_rank
from fedfr.reid.models import IdentityClassifier, ReidNet
from fedfr.reid.training import (
    ReidTrainConfig,
    split_transform_keys,
    train_epochs,
    train_reid,
)
from fedfr.reid.unsup.clustering import (
    MIN_SAMPLES,
    RHO,
    cluster_stats,
    dbscan_labels,
    jaccard_graph,
)
from fedfr.reid.unsup.features import (
    GLOBAL_FEATURES,
    PartFeatures,
    extract_part_features,
    uint8_dataset,
)
from fedfr.reid.unsup.icm import ICM_K, ICMSampler, buddies, icm_stats, inter_camera_rank
from fedfr.reid.unsup.losses import icm_masks, weighted_soft_triplet, weighted_triplet_from_labels
from fedfr.reid.unsup.pbh import SIL_METRICS, pbh_refine

log = logging.getLogger(__name__)

TRIPLET_KINDS = ("weighted", "batch_hard")
CLASSIFIER_INITS = ("random", "centroids")

#: Table 4.2's rows (besides "direct", the source model without target training): switches
#: applied to HSRConfig.
ABLATIONS: dict[str, dict[str, bool]] = {
    "baseline": {"use_icm": False, "use_pbh": False},
    "baseline+pbh": {"use_icm": False, "use_pbh": True},
    "baseline+icm": {"use_icm": True, "use_pbh": False},
    "hsr": {"use_icm": True, "use_pbh": True},
}


@dataclass
class HSRConfig:
    """HSR's settings; defaults are the thesis's where it gives them (iterations 30, epochs 10,
    SGD lr 0.005, batch 8 x 4, ICM K = 10, PBH n_std 3), else SSG's / ours (see the docs).

    classifier_init: the fresh classifier of each iteration, ``random`` (N(0, 0.001^2), the
    engine's) or ``centroids`` (each row the L2-normalised mean clustering feature of its
    cluster, so the first steps' CE gradients follow the clusters instead of random classes).
    """

    transform: ReidTransformConfig = field(default_factory=ReidTransformConfig)
    iterations: int = 30
    epochs: int = 10
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    p: int = 8
    k: int = 4
    use_ce: bool = True
    use_trip: bool = True
    use_icm: bool = True
    use_pbh: bool = True
    triplet: str = "weighted"
    label_smoothing: float = 0.1
    feature: str = "after"
    normalize: bool = True
    k1: int = 20
    k2: int = 6
    jaccard_metric: str = "euclidean"
    rho: float = RHO
    eps: float | None = None
    eps_every_iteration: bool = False
    min_samples: int = MIN_SAMPLES
    icm_k: int = ICM_K
    pbh_std: float = 3.0
    pbh_min_size: int = 2
    silhouette_metric: str = "euclidean"
    kmeans_n_init: int = 10
    pbh_diagnostic: bool = True
    classifier_init: str = "random"
    eval_every: int = 1
    batch_size: int = 128
    chunk: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("triplet", TRIPLET_KINDS), ("feature", GLOBAL_FEATURES),
                              ("silhouette_metric", SIL_METRICS),
                              ("jaccard_metric", ("euclidean", "cosine")),
                              ("classifier_init", CLASSIFIER_INITS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"hsr {name}: expected one of {allowed}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("iterations", "epochs", "p", "k", "icm_k", "min_samples", "eval_every",
                     "batch_size", "k1", "k2"):
            v = getattr(self, name)
            if type(v) is not int or v < (0 if name in ("iterations", "epochs") else 1):
                raise ConfigError(f"hsr {name}: expected a positive int, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"hsr lr: expected > 0, got {self.lr!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> HSRConfig:
        """From plain keys (``-`` or ``_``); transform keys (height, width, ...) go to the
        transform. Unknown keys raise ConfigError naming them."""
        mine, trans = split_transform_keys(cls, values, "hsr")
        return cls(transform=ReidTransformConfig(**trans), **mine)

    def ablation(self, name: str) -> HSRConfig:
        """This config with Table 4.2's row ``name`` switched on (see ABLATIONS)."""
        if name not in ABLATIONS:
            raise ConfigError(f"hsr ablation: expected one of {sorted(ABLATIONS)}, got {name!r}")
        return replace(self, **ABLATIONS[name])

    def train_config(self) -> ReidTrainConfig:
        """The engine's config for one iteration: SGD at a constant lr (no warm-up / decay;
        the thesis gives none), CE weight 1 or 0, the engine's own soft batch-hard triplet
        only when ``triplet="batch_hard"`` (the weighted one is added as an extra loss)."""
        engine_triplet = "soft" if self.use_trip and self.triplet == "batch_hard" else "none"
        return ReidTrainConfig(transform=self.transform, p=self.p, k=self.k, optimizer="sgd",
                               lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, warmup_epochs=0, milestones=(),
                               label_smoothing=self.label_smoothing, triplet=engine_triplet,
                               ce_weight=1.0 if self.use_ce else 0.0)


def pretrain_source(source: ReidSplit, cfg: ReidTrainConfig, *, epochs: int,
                    model_name: str = "small_reid", seed: int = 0,
                    device: str | torch.device = "cpu") -> tuple[ReidNet, dict[str, Any]]:
    """Supervised source pre-training phi(.; theta_s) with the re-ID engine (BoT recipe by
    default; the thesis gives none). Returns (model, the engine's stats)."""
    model, _, stats = train_reid(source, cfg, epochs=epochs, model_name=model_name, seed=seed,
                                 device=device)
    return model, stats


def evaluate_target(model: ReidNet, split: ReidSplit, tcfg: ReidTransformConfig, *,
                    device: str | torch.device = "cpu", batch_size: int = 128,
                    feature: str = "after") -> dict[str, Any]:
    """R1 / mAP / mINP of ``model`` on ``split``'s query / gallery (Euclidean on ``feature``,
    the re-ID workload's default f_bn; non-interpolated AP)."""
    q = extract_part_features(model, uint8_dataset(split.query, tcfg), tcfg, device=device,
                              batch_size=batch_size, feature=feature, normalize=False)
    g = extract_part_features(model, uint8_dataset(split.gallery, tcfg), tcfg, device=device,
                              batch_size=batch_size, feature=feature, normalize=False)
    return features_to_rank(q.global_, g.global_, q.pids, g.pids, q.camids,
                            g.camids).summary()


def label_quality(pids: Tensor, labels: np.ndarray) -> dict[str, float]:
    """V-measure and NMI (scikit-learn) of pseudo-labels against the true identities, over the
    clustered images (outliers left out); also the clustered share."""
    from sklearn.metrics import normalized_mutual_info_score, v_measure_score

    keep = labels >= 0
    if keep.sum() < 2:
        return {"v_measure": float("nan"), "nmi": float("nan"), "clustered_share": 0.0}
    gt = np.asarray(pids)[keep]
    return {"v_measure": float(v_measure_score(gt, labels[keep])),
            "nmi": float(normalized_mutual_info_score(gt, labels[keep])),
            "clustered_share": float(keep.mean())}


def cluster_centroids(features: Tensor, labels: np.ndarray, num_classes: int) -> Tensor:
    """(C, D) L2-normalised mean feature of each cluster 0..C-1 of ``labels`` (N,) (-1 =
    outlier, ignored) over ``features`` (N, D)."""
    keep = torch.as_tensor(labels >= 0)
    y = torch.as_tensor(labels)[keep].long()
    f = features[keep].float()
    sums = torch.zeros(num_classes, f.shape[1]).index_add_(0, y, f)
    return torch.nn.functional.normalize(sums, dim=1)


def _unique_outliers(labels: np.ndarray) -> Tensor:
    """Labels with each outlier given its own negative label (for ICM's negative rule)."""
    y = labels.copy()
    out = y < 0
    y[out] = -1 - np.arange(int(out.sum()))
    return torch.from_numpy(y)


@dataclass
class HSRRun:
    """The result of ``run_hsr``: the trained model and one history row per iteration."""

    model: ReidNet
    history: list[dict[str, Any]]
    eps: float | None
    config: dict[str, Any]


def run_hsr(model: ReidNet, target: ReidSplit, cfg: HSRConfig, *,
            device: str | torch.device = "cpu", evaluate: bool = True,
            on_iteration: Callable[[dict[str, Any]], None] | None = None) -> HSRRun:
    """Adapt ``model`` (source-pretrained, trained in place) to ``target``'s unlabelled train
    images for ``cfg.iterations`` iterations; evaluates on target query / gallery every
    ``cfg.eval_every`` iterations (and after the last) if ``evaluate``."""
    records: list[ReidImage] = list(target.train)
    if len(records) < 2:
        raise ConfigError(f"run_hsr: target {target.name} has {len(records)} train images")
    tcfg = cfg.transform
    base = uint8_dataset(records, tcfg)
    eps = cfg.eps
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    for it in range(cfg.iterations):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"iteration": it + 1}
        feats = extract_part_features(model, base, tcfg, device=device,
                                      batch_size=cfg.batch_size, feature=cfg.feature,
                                      normalize=cfg.normalize)
        fresh = eps is None or (cfg.eps_every_iteration and cfg.eps is None)
        graph = jaccard_graph(feats.global_, eps=None if fresh else eps, rho=cfg.rho,
                              k1=cfg.k1, k2=cfg.k2, metric=cfg.jaccard_metric, chunk=cfg.chunk)
        eps = graph.eps if fresh else eps
        row["eps"] = graph.eps
        db = dbscan_labels(graph, cfg.min_samples)
        row.update(cluster_stats(db))
        row.update({f"dbscan_{k}": v for k, v in label_quality(feats.pids, db).items()})
        labels = db
        if cfg.use_pbh or cfg.pbh_diagnostic:
            res = pbh_refine(db, feats.global_, feats.upper, feats.lower, n_std=cfg.pbh_std,
                             metric=cfg.silhouette_metric, min_size=cfg.pbh_min_size,
                             seed=cfg.seed + 1000 * it, n_init=cfg.kmeans_n_init)
            row.update(res.stats())
            row.update({f"pbh_{k}": v for k, v in label_quality(feats.pids, res.labels).items()})
            if cfg.use_pbh:
                labels = res.labels
        row["train_clusters"] = int(labels.max()) + 1 if (labels >= 0).any() else 0
        rank = inter_camera_rank(feats.global_, feats.camids, cfg.icm_k)
        row.update(icm_stats(rank, feats.pids, labels))
        row["train"] = _train_iteration(model, base, records, labels, rank, feats, cfg, it,
                                        gen, device)
        if evaluate and ((it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iterations):
            row.update({f"eval_{k}": v for k, v in evaluate_target(
                model, target, tcfg, device=device, batch_size=cfg.batch_size).items()})
        row["seconds"] = time.perf_counter() - t0
        log.info("hsr iteration %d: %d clusters (%d outliers), V %.3f -> %.3f, ICM pairs %d, "
                 "mAP %s, %.1f s", it + 1, row["clusters"], row["outliers"],
                 row["dbscan_v_measure"], row.get("pbh_v_measure", float("nan")),
                 row["icm_pairs"], row.get("eval_mAP"), row["seconds"])
        history.append(row)
        if on_iteration is not None:
            on_iteration(row)
    return HSRRun(model, history, eps, asdict(cfg))


def _train_iteration(model: ReidNet, base: Any, records: list[ReidImage], labels: np.ndarray,
                     rank: Tensor, feats: PartFeatures, cfg: HSRConfig, it: int,
                     gen: torch.Generator, device: str | torch.device) -> dict[str, Any]:
    kept = np.flatnonzero(labels >= 0)
    n_cls = int(labels.max()) + 1 if kept.size else 0
    if n_cls < 2 or cfg.epochs == 0:
        log.warning("hsr iteration %d: %d clusters, no training this iteration", it + 1, n_cls)
        return {"skipped": True, "clusters": n_cls}
    tr = cfg.train_config()
    if n_cls < tr.p:
        log.warning("hsr iteration %d: %d clusters < p=%d; p lowered to %d", it + 1, n_cls,
                    tr.p, n_cls)
        tr = replace(tr, p=n_cls)
    sub = uint8_dataset([records[i] for i in kept], cfg.transform)
    assert sub.cache is not None
    for j, i in enumerate(kept):  # share the decoded images
        sub.cache[j] = base[int(i)][0]
    pseudo_all = _unique_outliers(labels)
    stream = None
    if cfg.use_icm:
        sampler = ICMSampler(buddies(rank), cfg.p, cfg.k, seed=cfg.seed * 7919 + it)
        stream = sampler.stream() if sampler.usable else None
        if stream is None:
            log.warning("hsr iteration %d: fewer than p=%d images with mutual inter-camera "
                        "pairs; no L_ICM this iteration", it + 1, cfg.p)
    icm_gen = torch.Generator().manual_seed(cfg.seed * 104729 + it)

    def extra(net: ReidNet, x: Tensor, f: Tensor, f_bn: Tensor, y: Tensor) -> Tensor:
        loss = f.sum() * 0.0
        if cfg.use_trip and cfg.triplet == "weighted":
            loss = loss + weighted_triplet_from_labels(f, y)
        if stream is not None:
            idx, grp = next(stream)
            xb = torch.stack([base[i][0] for i in idx])
            fi, _ = net(train_batch(xb, cfg.transform, icm_gen).to(f.device))
            b = torch.as_tensor(idx)
            pos, neg = icm_masks(b, torch.as_tensor(grp), pseudo_all, rank)
            loss = loss + weighted_soft_triplet(fi.float(), pos.to(f.device), neg.to(f.device))
        return loss

    with torch.random.fork_rng(devices=[]):  # seeded per iteration: rows stay comparable
        torch.manual_seed(cfg.seed * 100003 + it)
        clf = IdentityClassifier(model.feature_dim, n_cls)
    if cfg.classifier_init == "centroids":
        with torch.no_grad():
            clf.fc.weight.copy_(cluster_centroids(feats.global_, labels, n_cls))
    stats = train_epochs(model, clf, [records[i] for i in kept], labels[kept].tolist(), tr,
                         epochs=cfg.epochs, device=device, extra_loss=extra,
                         generator=torch.Generator().manual_seed(
                             int(torch.randint(0, 2**62, (1,), generator=gen))),
                         dataset=sub)
    return {k: stats[k] for k in ("loss", "ce", "triplet", "extra", "accuracy", "steps",
                                  "seconds")}
