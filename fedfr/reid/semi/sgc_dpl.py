"""SGC-DPL (dissertation Ch. 3): semantics-guided clustering with deep progressive learning.

Iteration 0 (Sec. 3.3.1, Fig. 3.2): BoT on {X^l, Y^l} (CE + batch-hard triplet on P x K
labelled batches) plus, with ``init='augmented'``, the augmented triplet: each step also draws
``aug_batch`` unlabelled images, augments each twice (BoT's flip / pad-crop / random erasing,
independently), and applies the batch-hard triplet to the cross-set triplets of the combined
batch: an unlabelled view's positive is its twin, a labelled image's positive is a same-identity
labelled image, and negatives are only pairs of one labelled and one unlabelled image (two
unlabelled images may show the same person, so they are never negatives).

Iterations t = 1..T (Fig. 3.1): extract features of X^l and X^u (eval transform), cluster X^u
(SG-AP, or the ablations' AP / DBSCAN / DBSCAN-SSG), tau = tau_l + d_t from the labelled
distance distributions, reliable subsets (Eq. 3.4; all clustered points when ``progressive``
is off), soft (Eq. 3.5) or hard pseudo-labels on the classifier expanded to C^l + C' classes,
then train on {X^l, Y^l, X^r, Y^p}: soft CE + batch-hard triplet over the labelled identities
and the clusters (hard), P x K batches over both. Each iteration restarts the lr schedule with
a fresh optimiser on the same (fine-tuned, not re-initialised) net. Every iteration logs the
Fig. 3.5 quantities. See docs/unsupervised-reid.md ("SGC-DPL") for every choice.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedfr.errors import ConfigError
from fedfr.metric_losses import batch_hard_triplet_loss, pairwise_distance
from fedfr.reid.data.records import ReidImage
from fedfr.reid.data.sampler import PKSampler
from fedfr.reid.data.transforms import build_transform, train_batch
from fedfr.reid.evaluation.rank import features_to_rank
from fedfr.reid.models import IdentityClassifier, ReidNet, build_reid_model
from fedfr.reid.semi.clustering import (
    SGAPConfig,
    dbscan_default,
    dbscan_ssg,
    medoid_exemplars,
    plain_ap,
    sg_ap,
)
from fedfr.reid.semi.pseudo_labels import (
    LABEL_KINDS,
    expand_classifier,
    expanded_targets,
    soft_cross_entropy,
    soft_pseudo_labels,
)
from fedfr.reid.semi.reliability import TAU_PAIRS, labelled_tau, select_reliable, threshold
from fedfr.reid.training import (
    ReidTrainConfig,
    build_optimizer,
    extract_features,
    set_epoch_lr,
    training_dataset,
)

log = logging.getLogger(__name__)

INITS = ("augmented", "labelled")
CLUSTERINGS = ("sg-ap", "ap", "dbscan", "dbscan-ssg", "none", "oracle", "oracle-camera")
#: diagnostics only: X^u's true identities (per camera) in place of a clustering
ORACLES = ("oracle", "oracle-camera")


def thesis_train_config() -> ReidTrainConfig:
    """Sec. 3.4.3: SGD, lr 0.01 / 10 every 50 epochs (200 epochs), P 16 x K 4, BoT's warm-up
    (10 epochs) and random erasing; momentum 0.9 and weight decay 5e-4 are BoT's [I]."""
    return ReidTrainConfig(optimizer="sgd", lr=0.01, milestones=(50, 100, 150), p=16, k=4)


@dataclass
class SGCDPLConfig:
    """SGC-DPL's switches; defaults are the thesis's (Ours row of Table 3.2).

    init: ``augmented`` (Sec. 3.3.1) or ``labelled`` ({X^l, Y^l} only); clustering: ``sg-ap``,
    ``ap`` (standard AP on X^u, p = median, ``ap_preference`` uniform or adaptive), ``dbscan``,
    ``dbscan-ssg`` or ``none`` (rows 1-2 of Table 3.2: no iterations); ``oracle`` /
    ``oracle-camera`` (diagnostics, never a method: X^u's true identities, or identity x
    camera, as the clusters, exemplar = the member nearest the mean); progressive: Eq. 3.4's
    selection (off: every clustered point); labels: ``soft`` / ``hard``; feature: the net's
    output used for clustering, distances and the test ("after" = BNNeck, "before" = f);
    normalize: L2-normalise those features; tau_*: see ``reliability`` (tau_pairs: which
    labelled distances give tau_l, ``pairwise`` as in the thesis or ``exemplar``); temperature /
    pl_distance: Eq. 3.5; aug_batch / aug_weight: the augmented triplet's unlabelled images per
    step and its weight; keep_labelled_weights: copy the labelled classes' rows when the
    classifier grows; centre_cameras (ours, not the thesis's): subtract each camera's mean
    feature over X^l u X^u (and re-normalise when ``normalize``) before clustering, tau_l, the
    reliable sets and the soft labels, so that camera appearance does not decide the clusters;
    the test features are never centred.
    """

    train: ReidTrainConfig = field(default_factory=thesis_train_config)
    model: str = "small_reid"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "augmented"
    clustering: str = "sg-ap"
    ap_preference: str = "uniform"
    progressive: bool = True
    labels: str = "soft"
    iterations: int = 8
    init_epochs: int = 200
    iter_epochs: int = 200
    feature: str = "after"
    normalize: bool = False
    tau_rule: str = "histogram"
    tau_pairs: str = "pairwise"
    tau_bins: int = 100
    tau_step: float = 1.0
    tau_units: str = "distance"
    temperature: float = 1.0
    pl_distance: str = "sqeuclidean"
    aug_batch: int = 32
    aug_weight: float = 1.0
    keep_labelled_weights: bool = True
    centre_cameras: bool = False
    sgap: SGAPConfig = field(default_factory=SGAPConfig)
    eval_batch: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("init", INITS), ("clustering", CLUSTERINGS),
                              ("labels", LABEL_KINDS), ("feature", ("after", "before")),
                              ("ap_preference", ("uniform", "adaptive")),
                              ("tau_pairs", TAU_PAIRS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"SGC-DPL {name}: expected one of {allowed}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("iterations", "init_epochs", "iter_epochs", "aug_batch"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 0:
                raise ConfigError(f"SGC-DPL {name}: expected an int >= 0, "
                                  f"got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"]["transform"] = asdict(self.train.transform)
        return d


# --- losses ---------------------------------------------------------------------------------
def augmented_triplet_loss(f_l: Tensor, y_l: Tensor, f_u1: Tensor, f_u2: Tensor,
                           margin: float | None = None) -> Tensor:
    """The cross-set batch-hard triplet of Sec. 3.3.1 on labelled features f_l (B, d) with ids
    y_l (B,) and two augmented views f_u1, f_u2 (M, d) of M unlabelled images. Positives:
    same-id labelled pairs and each view's twin; negatives: labelled-unlabelled pairs only.
    margin None: soft margin (the thesis); else hinge with that margin."""
    m = f_u1.shape[0]
    x = torch.cat([f_l, f_u1, f_u2]).float()
    b = f_l.shape[0]
    n = x.shape[0]
    dist = pairwise_distance(x)
    is_l = torch.zeros(n, dtype=torch.bool, device=x.device)
    is_l[:b] = True
    ids = torch.cat([y_l.to(x.device), -1 - torch.arange(m, device=x.device).repeat(2)])
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    pos = (ids[:, None] == ids[None]) & ~eye
    neg = is_l[:, None] ^ is_l[None]
    valid = pos.any(1) & neg.any(1)
    d_ap = dist.masked_fill(~pos, float("-inf")).amax(1)[valid]
    d_an = dist.masked_fill(~neg, float("inf")).amin(1)[valid]
    gap = d_ap - d_an
    per = torch.nn.functional.softplus(gap) if margin is None else torch.relu(gap + margin)
    return per.mean()


# --- the training loop ------------------------------------------------------------------------
def train_semi_epochs(model: ReidNet, classifier: IdentityClassifier,
                      records: Sequence[ReidImage], targets: Tensor, groups: Sequence[int],
                      cfg: SGCDPLConfig, *, epochs: int, unlabelled: Sequence[ReidImage] = (),
                      generator: torch.Generator | None = None,
                      device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train in place: P x K batches over ``groups`` (N,) hard ids (labelled classes and
    clusters), CE against ``targets`` (N, C) (soft or smoothed one-hot), the batch-hard triplet
    over ``groups`` and, when ``unlabelled`` is given, the augmented triplet. The lr follows
    ``cfg.train.lr_factor(epoch)`` from epoch 0 with a fresh optimiser. Returns last-epoch
    means (loss, ce, triplet, aug) and seconds."""
    tc = cfg.train
    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    if targets.shape != (len(records), classifier.num_classes):
        raise ValueError(f"targets: expected ({len(records)}, {classifier.num_classes}), got "
                         f"{tuple(targets.shape)}")
    groups_t = torch.as_tensor(np.asarray(groups)).long()
    num_groups = int(np.unique(groups_t.numpy()).size)
    p = min(tc.p, num_groups)
    if p < 2:
        raise ConfigError(f"SGC-DPL training: {num_groups} identity/cluster(s); the triplet "
                          f"needs at least 2")
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    sampler = PKSampler(groups_t, p, tc.k, seed=seed, epoch=tc.sampler_epoch)
    ds = training_dataset(records, tc)
    uds = training_dataset(unlabelled, tc) if len(unlabelled) else None
    model.to(device)
    classifier.to(device)
    opt = build_optimizer(model, classifier, tc)
    margin = None if tc.triplet == "soft" else tc.margin
    model.train()
    classifier.train()
    t0 = time.perf_counter()
    row: dict[str, float] = {}
    for e in range(epochs):
        lr = set_epoch_lr(opt, tc, e)
        sampler.set_epoch(e)
        sums = np.zeros(4)
        steps = 0
        for idx in sampler.batches():
            x = train_batch(torch.stack([ds[i][0] for i in idx]), tc.transform, gen)
            b = x.shape[0]
            if uds is not None:
                pick = torch.randint(0, len(uds), (cfg.aug_batch,), generator=gen).tolist()
                u8 = torch.stack([uds[i][0] for i in pick])
                x = torch.cat([x, train_batch(u8, tc.transform, gen),
                               train_batch(u8, tc.transform, gen)])
            f, f_bn = model(x.to(device))
            logits = classifier(f_bn[:b])
            y = groups_t[idx].to(device)
            ce = soft_cross_entropy(logits, targets[idx].to(device))
            tri = torch.zeros((), device=f.device)
            if tc.triplet != "none":
                tri = batch_hard_triplet_loss(f[:b], y, margin=margin, metric=tc.distance)
            aug = torch.zeros((), device=f.device)
            if uds is not None and cfg.aug_weight > 0:
                m = cfg.aug_batch
                aug = augmented_triplet_loss(f[:b], y, f[b:b + m], f[b + m:], margin)
            loss = tc.ce_weight * ce + tc.triplet_weight * tri + cfg.aug_weight * aug
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += [float(v.detach()) for v in (loss, ce, tri, aug)]
            steps += 1
        row = dict(zip(("loss", "ce", "triplet", "aug"), (sums / max(steps, 1)).tolist(),
                       strict=True))
        log.info("semi epoch %d/%d: loss %.4f (ce %.4f, tri %.4f, aug %.4f), lr %.2e", e + 1,
                 epochs, row["loss"], row["ce"], row["triplet"], row["aug"], lr)
    model.eval()
    classifier.eval()
    return {**row, "seconds": time.perf_counter() - t0}


def centre_per_camera(f: Tensor, camids: Sequence[int], normalize: bool) -> Tensor:
    """(N, d) features ``f`` minus the mean feature of each image's camera (``camids`` (N,)),
    L2-normalised again when ``normalize``."""
    cams = torch.as_tensor(np.asarray(camids))
    out = f.clone()
    for c in torch.unique(cams):
        m = cams == c
        out[m] = f[m] - f[m].mean(0)
    return torch.nn.functional.normalize(out, dim=1) if normalize else out


def cluster_features(model: ReidNet, labelled: Sequence[ReidImage],
                     unlabelled: Sequence[ReidImage], cfg: SGCDPLConfig,
                     device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """The features (N^l, d), (N^u, d) an iteration clusters and thresholds: ``cfg.feature``
    under the eval transform, L2-normalised when ``cfg.normalize``, camera-centred over
    X^l u X^u when ``cfg.centre_cameras``."""
    tf = build_transform(cfg.train.transform)
    recs = list(labelled) + list(unlabelled)
    f, _, _ = extract_features(model, recs, tf, cfg.eval_batch, device=device,
                               normalize=cfg.normalize, feature=cfg.feature)
    if cfg.centre_cameras:
        f = centre_per_camera(f, [r.camid for r in recs], cfg.normalize)
    return f[:len(labelled)], f[len(labelled):]


def evaluate(model: ReidNet, query: Sequence[ReidImage], gallery: Sequence[ReidImage],
             cfg: SGCDPLConfig, device: str | torch.device = "cpu") -> dict[str, float]:
    """R1 / mAP (fractions) of ``model`` on the query / gallery (Euclidean, cfg's feature)."""
    tf = build_transform(cfg.train.transform)
    qf, qp, qc = extract_features(model, query, tf, cfg.eval_batch, device=device,
                                  normalize=cfg.normalize, feature=cfg.feature)
    gf, gp, gc = extract_features(model, gallery, tf, cfg.eval_batch, device=device,
                                  normalize=cfg.normalize, feature=cfg.feature)
    res = features_to_rank(qf, gf, qp, gp, qc, gc)
    return {"R1": res.rank(1), "mAP": res.mAP}


def cluster_unlabelled(fl: Tensor, yl: np.ndarray, fu: Tensor, cfg: SGCDPLConfig,
                       truth: Sequence[ReidImage] = ()
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(labels (N^u,) with -1 = noise, exemplars (C',), info) of ``cfg.clustering``; ``truth``:
    X^u's records, read only by the oracle diagnostics."""
    info: dict[str, Any] = {}
    if cfg.clustering in ORACLES:
        if len(truth) != fu.shape[0]:
            raise ConfigError(f"SGC-DPL clustering {cfg.clustering!r} needs X^u's records")
        keys = [(r.pid, r.camid if cfg.clustering == "oracle-camera" else 0) for r in truth]
        _, labels = np.unique(np.array(keys), axis=0, return_inverse=True)
        labels = labels.reshape(-1).astype(np.int64)
        return labels, medoid_exemplars(fu, labels), {}
    if cfg.clustering == "sg-ap":
        res = sg_ap(fl, int(np.unique(yl).size), fu, cfg.sgap)
        info.update(p_star=res.p_star, search_steps=len(res.trace), search_stop=res.stop,
                    search=res.trace)
        out = res.result
    elif cfg.clustering == "ap":
        out = plain_ap(fu, cfg.sgap, cfg.ap_preference)
    elif cfg.clustering == "dbscan":
        out = dbscan_default(fu)
    elif cfg.clustering == "dbscan-ssg":
        out = dbscan_ssg(fu)
    else:
        raise ConfigError("cluster_unlabelled: clustering is 'none'")
    info.update({k: v for k, v in out.info.items() if k in ("noise", "eps", "fallback")})
    info.update(ap_iterations=out.iterations, ap_converged=out.converged)
    return out.labels, out.exemplars, info


def cluster_quality(labels: np.ndarray, pids: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Purity (share of points whose pid is their cluster's majority pid) and NMI (scikit-learn)
    over the points of ``mask`` (cluster label >= 0), and NMI over every clustered point."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    ok = labels >= 0
    sel = mask & ok
    out = {"purity": float("nan"), "nmi_reliable": float("nan"), "nmi_all": float("nan")}
    if sel.any():
        lab, pid = labels[sel], pids[sel]
        correct = 0
        for c in np.unique(lab):
            _, counts = np.unique(pid[lab == c], return_counts=True)
            correct += counts.max()
        out["purity"] = correct / sel.sum()
        out["nmi_reliable"] = float(nmi(pid, lab))
    if ok.any():
        out["nmi_all"] = float(nmi(pids[ok], labels[ok]))
    return out


def labelled_classes(records: Sequence[ReidImage]) -> tuple[np.ndarray, int]:
    """Class index (N^l,) of each labelled record (its pid's rank among the sorted pids), C^l."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return np.array([mapping[r.pid] for r in records], dtype=np.int64), len(mapping)


@dataclass
class InitState:
    """The iteration-0 model: net, labelled classifier and its evaluation row."""

    model: ReidNet
    classifier: IdentityClassifier
    row: dict[str, Any]


def initialise(labelled: Sequence[ReidImage], unlabelled: Sequence[ReidImage],
               query: Sequence[ReidImage], gallery: Sequence[ReidImage], cfg: SGCDPLConfig,
               *, device: str | torch.device = "cpu",
               backbone: ReidNet | None = None) -> InitState:
    """Iteration 0 (Sec. 3.3.1): ``cfg.model`` trained ``cfg.init_epochs`` on {X^l, Y^l}, with
    the augmented triplet on X^u when ``cfg.init == 'augmented'``; with ``init='labelled'``
    this is the labelled-only baseline (row 1 of Table 3.2). The net starts as a copy of
    ``backbone`` (a pre-trained net: the thesis fine-tunes an ImageNet-pretrained ResNet-50)
    or, when None, fresh from ``cfg.seed``."""
    if not labelled:
        raise ConfigError("SGC-DPL: the labelled set is empty")
    gen = torch.Generator().manual_seed(cfg.seed)
    yl, cl = labelled_classes(labelled)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = (build_reid_model(cfg.model, **cfg.model_kwargs) if backbone is None
                 else copy.deepcopy(backbone))
        classifier = IdentityClassifier(model.feature_dim, cl)
    targets = expanded_targets(yl, cl, torch.zeros(0, 0), cfg.train.label_smoothing)
    aug = list(unlabelled) if cfg.init == "augmented" and cfg.aug_batch > 0 else []
    stats = train_semi_epochs(model, classifier, labelled, targets, yl, cfg,
                              epochs=cfg.init_epochs, unlabelled=aug, generator=gen,
                              device=device)
    row = {"iteration": 0, **evaluate(model, query, gallery, cfg, device),
           "train_seconds": stats.get("seconds", 0.0)}
    return InitState(model, classifier, row)


@dataclass
class IterationResult:
    """One SGC-DPL iteration: the expanded classifier (C^l + C' classes), the number of images
    trained on (N^l + |X^r|) and the log row (no test metrics)."""

    classifier: IdentityClassifier
    num_examples: int
    row: dict[str, Any]


def sgc_dpl_iteration(model: ReidNet, classifier: IdentityClassifier,
                      labelled: Sequence[ReidImage], unlabelled: Sequence[ReidImage],
                      cfg: SGCDPLConfig, t: int, *, generator: torch.Generator,
                      device: str | torch.device = "cpu") -> IterationResult:
    """Iteration t >= 1 of Fig. 3.1, training ``model`` in place: features of X^l and X^u,
    clustering of X^u, tau = tau_l + d_t, the reliable subset (Eq. 3.4), soft (Eq. 3.5) or hard
    pseudo-labels on ``classifier`` (its first C^l rows are the labelled classes) expanded to
    C^l + C' classes, then ``cfg.iter_epochs`` epochs on {X^l, Y^l, X^r, Y^p}. The row holds
    clusters, gt_ids, reliable, share, purity, nmi_reliable, nmi_all, tau_l, tau, the
    clustering's info (p_star, search_steps, search_stop, ...), the last epoch's losses,
    train_seconds and cluster_seconds."""
    t0 = time.perf_counter()
    yl, cl = labelled_classes(labelled)
    pids_u = np.array([r.pid for r in unlabelled])
    fl, fu = cluster_features(model, labelled, unlabelled, cfg, device)
    labels, exemplars, info = cluster_unlabelled(fl, yl, fu, cfg, truth=unlabelled)
    tau_l = labelled_tau(fl, yl, cfg.tau_rule, cfg.tau_bins, seed=cfg.seed, pairs=cfg.tau_pairs)
    tau = threshold(tau_l, t, cfg.tau_step, cfg.tau_units)
    sel = select_reliable(fu, labels, exemplars, tau if cfg.progressive else float("inf"))
    mask = sel.mask
    idx = np.flatnonzero(mask)
    cp = len(exemplars)
    if idx.size == 0:  # nothing clustered / reliable (e.g. DBSCAN all noise): X^l only
        log.warning("SGC-DPL iteration %d: no reliable unlabelled image (%d clusters); "
                    "training on X^l only", t, cp)
        pseudo = torch.zeros(0, cp)
    elif cfg.labels == "soft":
        pseudo = soft_pseudo_labels(fu[idx], fu[exemplars], cfg.temperature, cfg.pl_distance)
    else:
        pseudo = torch.nn.functional.one_hot(torch.as_tensor(labels[idx]), cp).float()
    quality = cluster_quality(labels, pids_u, mask)
    cluster_s = time.perf_counter() - t0
    classifier = expand_classifier(classifier, cl, cp, cfg.keep_labelled_weights)
    recs = list(labelled) + [unlabelled[i] for i in idx]
    targets = expanded_targets(yl, cl, pseudo, cfg.train.label_smoothing)
    groups = np.concatenate([yl, cl + labels[idx]])
    stats = train_semi_epochs(model, classifier, recs, targets, groups, cfg,
                              epochs=cfg.iter_epochs, generator=generator, device=device)
    row = {"iteration": t, "clusters": cp, "gt_ids": int(np.unique(pids_u).size),
           "reliable": int(mask.sum()), "share": float(mask.mean()), **quality,
           "tau_l": tau_l, "tau": tau, **{k: v for k, v in info.items() if k != "search"},
           **{k: stats[k] for k in ("loss", "ce", "triplet") if k in stats},
           "train_seconds": stats["seconds"], "cluster_seconds": cluster_s}
    return IterationResult(classifier, len(recs), row)


def run_sgc_dpl(labelled: Sequence[ReidImage], unlabelled: Sequence[ReidImage],
                query: Sequence[ReidImage], gallery: Sequence[ReidImage], cfg: SGCDPLConfig,
                *, device: str | torch.device = "cpu",
                on_iteration: Callable[[dict[str, Any]], None] | None = None,
                init: InitState | None = None, backbone: ReidNet | None = None
                ) -> tuple[ReidNet, list[dict[str, Any]]]:
    """The whole method (or an ablation row). Returns the final net and one row per iteration
    (0 = the initialised model; then ``sgc_dpl_iteration``'s row with R1 and mAP). init: start
    from a copy of an ``initialise`` result (rows that share the same initialisation reuse it)
    instead of training one; backbone: the pre-trained net ``initialise`` starts from."""
    if not labelled:
        raise ConfigError("SGC-DPL: the labelled set is empty")
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if init is None:
        init = initialise(labelled, unlabelled, query, gallery, cfg, device=device,
                          backbone=backbone)
    model, classifier = copy.deepcopy(init.model), copy.deepcopy(init.classifier)
    rows = [dict(init.row)]
    if on_iteration:
        on_iteration(rows[-1])
    iterations = 0 if cfg.clustering == "none" else cfg.iterations
    for t in range(1, iterations + 1):
        step = sgc_dpl_iteration(model, classifier, labelled, unlabelled, cfg, t,
                                 generator=gen, device=device)
        classifier = step.classifier
        row = {**step.row, **evaluate(model, query, gallery, cfg, device)}
        rows.append(row)
        log.info("SGC-DPL iteration %d: %d clusters (%d ids), reliable %.2f, purity %.3f, "
                 "NMI %.3f, R1 %.3f, mAP %.3f", t, row["clusters"], row["gt_ids"], row["share"],
                 row["purity"], row["nmi_reliable"], row["R1"], row["mAP"])
        if on_iteration:
            on_iteration(row)
    return model, rows
