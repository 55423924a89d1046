"""Run configuration: every knob of a federation, its default and its validation.

The defaults here are the single source of truth; ``pyproject.toml``'s ``[tool.flwr.app.config]``
mirrors them (a test checks both agree). Keys use Flower's kebab-case (``hn-threshold``); ``Config``
exposes them as attributes in snake_case (``cfg.hn_threshold``).

Paper values (dissertation Ch. 7) are given in comments where the CPU-sized default differs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shlex
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fedfr.errors import ConfigError

#: key -> default. Order is the order of the README table.
DEFAULTS: dict[str, Any] = {
    # --- experiment -------------------------------------------------------------------------
    "task": "face",  # the workload (fedfr.workloads): face|reid|video-reid|semi-reid|unsup-reid
    "seed": 0,
    "output-dir": "outputs/default",  # relative paths resolve against $FEDFR_HOME (default ~/fedfr)
    "cache-dir": "cache",  # synthetic images and pre-trained checkpoints
    "state-dir": "",  # clients' personal state; "" = <output-dir>/client-state
    "resume": True,  # continue from the last checkpoint in output-dir
    "allow-partial": False,  # a round not aggregated / a failed final evaluation: warn, exit 0
    # --- data ---------------------------------------------------------------------------------
    "dataset": "synthetic",  # synthetic | folder | recordio
    "data-root": "",  # absolute path of the image folder / RecordIO (folder, recordio)
    "image-size": 32,  # model input side in pixels (paper: 112)
    "synthetic-images-per-id": 20,  # images rendered per synthetic identity
    "synthetic-difficulty": 1.0,  # nuisance strength of the synthetic generator
    "num-public-ids": 200,  # K_g, identities of the public set D_g (paper: 6000)
    "num-clients": 0,  # C; 0 = one client per SuperNode (paper: 40)
    "ids-per-client": 25,  # K_l (paper: 100)
    "train-per-id": 12,  # private training images per identity (paper: 60)
    "test-per-id": 8,  # personalised test images per identity (paper: 40)
    "num-generic-ids": 100,  # held-out identities for the generic protocol
    "public-images-per-id": 0,  # 0 = all images of a public identity
    "split-manifest": "",  # manifest from `fedfr split` (fixes the split); "" = the keys above
    # --- model and pre-training ---------------------------------------------------------------
    "model": "small_cnn",  # small_cnn | sphereface64 | iresnet18/34/50/100 | mobilefacenet
    "embedding-size": 512,  # d
    "pretrained-path": "",  # checkpoint of Theta_g^0 and Phi_g^0; "" = cached by digest
    "pretrain-epochs": 12,  # central CosFace epochs on D_g
    "pretrain-lr": 0.1,  # SGD learning rate of pre-training
    "pretrain-batch-size": 128,
    # --- federation ---------------------------------------------------------------------------
    "num-server-rounds": 10,  # T (paper: 30)
    "fraction-train": 1.0,  # share of clients sampled per round
    "min-train-nodes": 2,  # fewer valid replies than this: the round keeps the old model
    "round-timeout": 3600.0,  # seconds to wait for replies in a round
    "strategy": "fedfr",  # fedfr | fedavg (backbone only, local CosFace, no public data)
    "hard-negatives": True,  # sample D_HN from D_g (False: use all of D_g)
    "contrastive": True,  # model-contrastive regulariser (eq. 7.5)
    "dfc": True,  # Decoupled Feature Customisation branch (eq. 7.6)
    "hn-threshold": 0.4,  # t_HN
    "alpha-cos": 1.0,  # alpha_1
    "alpha-con": 5.0,  # alpha_2
    "alpha-bce": 10.0,  # alpha_3
    "local-epochs": 2,  # E (paper: 4)
    "lr": 0.01,  # local SGD learning rate (paper: 0.001 for its 64-layer CNN)
    "momentum": 0.9,  # authors' code
    "weight-decay": 5e-4,
    "batch-size": 64,  # mixed local + hard-negative batch (authors' code: 256)
    "cosface-s": 30.0,  # s
    "cosface-m": 0.4,  # m
    "con-tau": 0.5,  # tau
    "bce-s": 30.0,  # s'
    "bce-m": 0.4,  # m'
    "bce-lambda": 0.7,  # lambda
    "bce-t": 3.0,  # t' of g(z)
    "aggregation-weight": "private",  # private (eq. 7.2/7.4) | private+hn (authors' code)
    # --- baselines (docs/baselines.md) ----------------------------------------------------------
    "dfc-loss": "bce",  # bce (eq. 7.6) | cosface (Table 7.2's multi-class variant of the branch)
    "fedface-margin": 0.4,  # FedFace spread-out margin on the cosine distance (1 - cos) / 2
    "fedface-steps": 20,  # server-side gradient steps on the proxies per round (authors' code)
    "fedface-lr": 0.1,  # server step size (authors' code: 10 x the client learning rate)
    "personalize-epochs": 2,  # epochs of the two-stage Fine-tune / KD personalisation
    "kd-weight": 1.0,  # weight of the KL term of KD
    "kd-temperature": 2.0,  # temperature T of KD's softened logits
    # --- evaluation ---------------------------------------------------------------------------
    "eval-every": 1,  # generic evaluation on the server every k rounds (last round always)
    "personal-eval-every": 0,  # personalised evaluation on clients every k rounds (0: start+end)
    "eval-flip": False,  # sum features of image and its flip
    "personal-impostors": "other-clients",  # other-clients (paper) | public (node-local data)
    "eval-batch-size": 256,
    "final-eval-models": "global,local,personal",  # personalised models evaluated at the end
    # --- person re-ID (task = "reid", docs/reid.md; Sec. 7.7) -----------------------------------
    "reid-clients": "synth-market,synth-duke,synth-cuhk,synth-msmt",  # one dataset per client
    "reid-unseen": "synth-viper,synth-ilids,synth-grid,synth-prid",  # the generic test sets
    "reid-public": "synth-public",  # pre-training, hard negatives and Phi_g
    "reid-synthetic-ids": 60,  # identities per synthetic domain (public: twice); 0 = preset (150)
    "reid-model": "small_reid",  # small_reid | resnet18 | resnet34 | resnet50 (paper)
    "reid-height": 64,  # input height in pixels (paper: 256)
    "reid-width": 32,  # input width (paper: 128)
    "reid-bn": "average",  # BN running statistics: average (sent) | local (never leave a node)
    "reid-triplet": "soft",  # soft (thesis) | hinge (torchreid, margin reid-margin) | none
    "reid-margin": 0.3,  # hinge triplet margin
    "reid-label-smoothing": 0.1,  # epsilon of the identity cross-entropy
    "reid-instances": 4,  # K images per identity in a P x K batch (P = batch-size / K)
    "reid-erasing": 0.5,  # random-erasing probability
    "reid-pretrain-lr": 3.5e-4,  # Adam learning rate of pre-training (BoT)
    "reid-warmup-epochs": 2,  # linear warm-up of pre-training (BoT: 10 of 120 epochs)
    "reid-classifier-lr-scale": 10.0,  # classifier lr / backbone lr in local rounds (Sec. 7.7)
    "reid-hn-ratio": 0.25,  # at most ratio x N_l hardest negatives per round; 0 = all above t_HN
    "reid-ap": "noninterp",  # noninterp (torchreid, fast-reid) | trapezoid (Market MATLAB, FedReID)
    # --- video person re-ID (task = "video-reid", docs/video-reid.md "Federation") ----------
    # the image re-ID recipe keys (reid-triplet, -margin, -label-smoothing, -erasing,
    # -pretrain-lr, -warmup-epochs, -classifier-lr-scale, -hn-ratio, -ap, -bn) apply as well
    "video-clients": "synth-mars,synth-cuhkv,synth-ilidsv",  # one tracklet set per client
    "video-unseen": "synth-pridv,synth-viperv",  # the generic test sets
    "video-public": "synth-publicv",  # pre-training, hard negatives and Phi_g
    "video-synthetic-ids": 32,  # identities per synthetic tracklet set (public: twice)
    "video-model": "baseline",  # build_video_model name: baseline | nvan | ste_nvan | cf_aan ...
    "video-backbone": "small_reid",  # the trunk (paper: resnet50)
    "video-height": 64,  # frame height in pixels (paper: 256)
    "video-width": 32,  # frame width (paper: 128)
    "video-clip-len": 4,  # T frames per RRS clip (paper: 8; CF-AAN 6)
    "video-instances": 4,  # K tracklets per identity in a P x K batch (P = batch-size / K)
    "video-test-clips": "rrs",  # rrs (one RRS test clip) | all | all_continuous (clips averaged)
    # --- re-ID with few or no labels (task = semi-reid / unsup-reid; docs/unsupervised-reid.md) ---
    "semi-ratio": "1/3",  # labelled share of each site's training identities (1/3 1/6 1/12 50id)
    "semi-init-rounds": 1,  # first rounds run SGC-DPL's iteration 0 (labelled + augmented triplet)
    "semi-init": "augmented",  # iteration 0: augmented (thesis) | labelled (X^l only, no X^u)
    "semi-clustering": "sg-ap",  # sg-ap (thesis) | ap | dbscan | dbscan-ssg
    "semi-centre-cameras": True,  # cluster camera-centred features (ours; false = the thesis)
    "unsup-method": "hsr",  # Table 4.2 row: baseline | baseline+pbh | baseline+icm | hsr
    "unsup-rho": 0.016,  # DBSCAN eps share of pairs (SSG: 1.6e-3 at Market size)
    "unsup-labelled-sites": 0,  # the first N sites keep their labels (anchor sites)
}

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": ("synthetic", "folder", "recordio"),
    "strategy": ("fedfr", "fedavg", "fedface"),
    "dfc-loss": ("bce", "cosface"),
    "aggregation-weight": ("private", "private+hn"),
    "personal-impostors": ("other-clients", "public"),
    "reid-bn": ("average", "local"),
    "reid-triplet": ("soft", "hinge", "none"),
    "reid-ap": ("noninterp", "trapezoid"),
    "video-test-clips": ("rrs", "all", "all_continuous"),
    "semi-clustering": ("sg-ap", "ap", "dbscan", "dbscan-ssg"),
    "semi-init": ("augmented", "labelled"),
    "unsup-method": ("baseline", "baseline+pbh", "baseline+icm", "hsr"),
}

#: personalised evaluation models: Theta_g, Theta_l, [Theta_l, Pi_l], and the two-stage
#: personalisation baselines of Yu et al. 2020 (fedfr/face/training/personalize.py)
EVAL_MODELS = ("global", "local", "personal", "finetune", "kd")

POSITIVE = {
    "image-size", "synthetic-images-per-id", "num-public-ids", "ids-per-client",
    "train-per-id", "test-per-id", "embedding-size", "pretrain-batch-size", "batch-size",
    "local-epochs", "eval-every", "eval-batch-size", "round-timeout", "pretrain-lr",
    "cosface-s", "bce-s", "con-tau", "fedface-steps", "kd-temperature",
    "reid-height", "reid-width", "reid-instances", "reid-pretrain-lr", "reid-classifier-lr-scale",
    "video-synthetic-ids", "video-height", "video-width", "video-clip-len", "video-instances",
}
NON_NEGATIVE = {
    "num-clients", "num-generic-ids", "public-images-per-id", "pretrain-epochs",
    "num-server-rounds", "personal-eval-every", "min-train-nodes", "weight-decay", "momentum",
    "alpha-cos", "alpha-con", "alpha-bce", "synthetic-difficulty", "lr",
    "fedface-margin", "fedface-lr", "personalize-epochs", "kd-weight",
    "reid-synthetic-ids", "reid-margin", "reid-label-smoothing", "reid-erasing",
    "reid-warmup-epochs", "reid-hn-ratio", "semi-init-rounds", "unsup-labelled-sites",
}

#: keys that do not change what a run computes (excluded from the experiment digest)
NON_SEMANTIC = {"output-dir", "cache-dir", "state-dir", "resume", "num-server-rounds",
                "round-timeout", "eval-batch-size", "allow-partial"}


def snake(key: str) -> str:
    """'hn-threshold' -> 'hn_threshold'."""
    return key.replace("-", "_")


def fedfr_home() -> Path:
    """Base directory for relative paths: $FEDFR_HOME, default ~/fedfr."""
    return Path(os.environ.get("FEDFR_HOME", Path.home() / "fedfr")).expanduser()


def resolve_path(value: str, base: Path | None = None) -> Path:
    """Absolute path of a config path value (relative ones resolve against ``base`` or home)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base or fedfr_home()) / p


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config '{key}': expected true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config '{key}': expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError as e:
            raise ConfigError(f"config '{key}': expected an integer, got {value!r}") from e
        if f != int(f):
            raise ConfigError(f"config '{key}': expected an integer, got {value!r}")
        return int(f)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ConfigError(f"config '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config '{key}': expected a number, got {value!r}") from e
    if not isinstance(value, str):
        raise ConfigError(f"config '{key}': expected a string, got {value!r}")
    return value


@dataclass(frozen=True)
class Config:
    """Validated run configuration (snake_case attributes of ``DEFAULTS``' keys)."""

    task: str
    seed: int
    output_dir: str
    cache_dir: str
    state_dir: str
    resume: bool
    allow_partial: bool
    dataset: str
    data_root: str
    image_size: int
    synthetic_images_per_id: int
    synthetic_difficulty: float
    num_public_ids: int
    num_clients: int
    ids_per_client: int
    train_per_id: int
    test_per_id: int
    num_generic_ids: int
    public_images_per_id: int
    split_manifest: str
    model: str
    embedding_size: int
    pretrained_path: str
    pretrain_epochs: int
    pretrain_lr: float
    pretrain_batch_size: int
    num_server_rounds: int
    fraction_train: float
    min_train_nodes: int
    round_timeout: float
    strategy: str
    hard_negatives: bool
    contrastive: bool
    dfc: bool
    hn_threshold: float
    alpha_cos: float
    alpha_con: float
    alpha_bce: float
    local_epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    cosface_s: float
    cosface_m: float
    con_tau: float
    bce_s: float
    bce_m: float
    bce_lambda: float
    bce_t: float
    aggregation_weight: str
    dfc_loss: str
    fedface_margin: float
    fedface_steps: int
    fedface_lr: float
    personalize_epochs: int
    kd_weight: float
    kd_temperature: float
    eval_every: int
    personal_eval_every: int
    eval_flip: bool
    personal_impostors: str
    eval_batch_size: int
    final_eval_models: str
    reid_clients: str
    reid_unseen: str
    reid_public: str
    reid_synthetic_ids: int
    reid_model: str
    reid_height: int
    reid_width: int
    reid_bn: str
    reid_triplet: str
    reid_margin: float
    reid_label_smoothing: float
    reid_instances: int
    reid_erasing: float
    reid_pretrain_lr: float
    reid_warmup_epochs: int
    reid_classifier_lr_scale: float
    reid_hn_ratio: float
    reid_ap: str
    video_clients: str
    video_unseen: str
    video_public: str
    video_synthetic_ids: int
    video_model: str
    video_backbone: str
    video_height: int
    video_width: int
    video_clip_len: int
    video_instances: int
    video_test_clips: str
    semi_ratio: str
    semi_init_rounds: int
    semi_init: str
    semi_clustering: str
    semi_centre_cameras: bool
    unsup_method: str
    unsup_rho: float
    unsup_labelled_sites: int

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Kebab-case dict (as in pyproject / run-config)."""
        return {k: getattr(self, snake(k)) for k in DEFAULTS}

    def digest(self, exclude: set[str] | None = None) -> str:
        """16-hex digest of the settings that change results (paths and round count excluded)."""
        skip = NON_SEMANTIC if exclude is None else exclude
        items = {k: v for k, v in self.to_dict().items() if k not in skip}
        if items.get("task") == "face":  # face digests stay those of runs made before `task`
            del items["task"]
        if items.get("task") not in ("semi-reid", "unsup-reid"):  # and before these keys
            items = {k: v for k, v in items.items() if not k.startswith(("semi-", "unsup-"))}
        if items.get("task") != "video-reid":
            items = {k: v for k, v in items.items() if not k.startswith("video-")}
        return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def output_path(self) -> Path:
        return resolve_path(self.output_dir)

    @property
    def cache_path(self) -> Path:
        return resolve_path(self.cache_dir)

    @property
    def uses_public_data(self) -> bool:
        """FedFR trains on (hard-negative) public data with Phi; FedAvg and FedFace do not."""
        return self.strategy == "fedfr"

    def with_clients(self, num_nodes: int) -> Config:
        """Resolve ``num-clients = 0`` (auto) to the number of nodes / partitions."""
        if self.num_clients > 0:
            return self
        if num_nodes < 1:
            raise ConfigError("num-clients = 0 (one client per node) but there are no nodes")
        return self.replace(num_clients=num_nodes,
                            min_train_nodes=min(self.min_train_nodes, num_nodes))

    def replace(self, **overrides: Any) -> Config:
        """A copy with kebab- or snake-case overrides applied and validated."""
        d = self.to_dict()
        d.update({k.replace("_", "-"): v for k, v in overrides.items()})
        return resolve(d)


def unknown_key_message(key: str, value: Any, count: int = 1) -> str:
    """One line naming an unknown key, its value and the closest valid key (difflib)."""
    close = difflib.get_close_matches(key, list(DEFAULTS), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "valid keys are listed in the README"
    more = f" ({count - 1} more unknown key(s))" if count > 1 else ""
    return f"unknown config key(s): '{key}' = {value!r}; {hint}{more}"


def resolve(run_config: dict[str, Any] | None = None, **overrides: Any) -> Config:
    """Merge ``run_config`` (and keyword overrides) over the defaults and validate.

    Unknown keys raise ``ConfigError`` naming them (a typo must not silently run the defaults).
    """
    merged = dict(DEFAULTS)
    given = dict(run_config or {})
    given.update({k.replace("_", "-"): v for k, v in overrides.items()})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0], given[unknown[0]], len(unknown)))
    for key, value in given.items():
        merged[key] = _coerce(key, value, DEFAULTS[key])
    from fedfr.workloads import workload_names  # import-light registry (no workload loaded)

    if merged["task"] not in workload_names():
        raise ConfigError(f"config 'task': expected one of {workload_names()}, got "
                          f"{merged['task']!r}")
    for key, options in CHOICES.items():
        if merged[key] not in options:
            raise ConfigError(f"config '{key}': expected one of {options}, got {merged[key]!r}")
    for key in POSITIVE:
        if not merged[key] > 0:
            raise ConfigError(f"config '{key}': must be > 0, got {merged[key]!r}")
    for key in NON_NEGATIVE:
        if merged[key] < 0:
            raise ConfigError(f"config '{key}': must be >= 0, got {merged[key]!r}")
    if not 0.0 < merged["fraction-train"] <= 1.0:
        raise ConfigError(f"config 'fraction-train': must be in (0, 1], got "
                          f"{merged['fraction-train']!r}")
    if not -1.0 <= merged["hn-threshold"] <= 1.0:
        raise ConfigError(f"config 'hn-threshold': cosine threshold must be in [-1, 1], got "
                          f"{merged['hn-threshold']!r}")
    if not 0.0 <= merged["bce-lambda"] <= 1.0:
        raise ConfigError(f"config 'bce-lambda': must be in [0, 1], got {merged['bce-lambda']!r}")
    if not merged["reid-label-smoothing"] < 1.0:
        raise ConfigError("config 'reid-label-smoothing': must be in [0, 1), got "
                          f"{merged['reid-label-smoothing']!r}")
    if not merged["reid-erasing"] <= 1.0:
        raise ConfigError(f"config 'reid-erasing': a probability in [0, 1], got "
                          f"{merged['reid-erasing']!r}")
    if not 0.0 < merged["unsup-rho"] < 1.0:
        raise ConfigError(f"config 'unsup-rho': a share of pairs in (0, 1), got "
                          f"{merged['unsup-rho']!r}")
    for key in DEFAULTS:  # the few-label tasks' keys apply to their task only
        owner = {"semi": "semi-reid", "unsup": "unsup-reid"}.get(key.split("-")[0])
        if owner and merged["task"] != owner and merged[key] != DEFAULTS[key]:
            raise ConfigError(f"config '{key}' = {merged[key]!r} applies to task '{owner}', "
                              f"not '{merged['task']}'")
    models = [m for m in merged["final-eval-models"].split(",") if m]
    bad = sorted(set(models) - set(EVAL_MODELS))
    if bad or not models:
        raise ConfigError(f"config 'final-eval-models': expected a comma-separated subset of "
                          f"{EVAL_MODELS}, got {merged['final-eval-models']!r}")
    if merged["dataset"] != "synthetic" and not merged["data-root"]:
        raise ConfigError(f"config 'data-root': required for dataset '{merged['dataset']}' "
                          "(absolute path of the data)")
    if 0 < merged["num-clients"] < merged["min-train-nodes"]:
        raise ConfigError("config 'min-train-nodes': cannot exceed 'num-clients' "
                          f"({merged['min-train-nodes']} > {merged['num-clients']})")
    kwargs = {snake(k): v for k, v in merged.items()}
    names = {f.name for f in fields(Config)}
    assert names == set(kwargs), names ^ set(kwargs)
    return Config(**kwargs)


def parse_run_config(text: str) -> dict[str, Any]:
    """Flower's ``--run-config`` text ('a=1 b="x" c=true', TOML values) -> dict;
    ConfigError naming the item that is not ``key=value`` or whose value is not TOML."""
    out: dict[str, Any] = {}
    for item in shlex.split(text, posix=False):
        if "=" not in item:
            raise ConfigError(f"--run-config: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--run-config {key}: {value!r} is not a TOML value "
                              f"(strings need quotes) ({exc})") from exc
    return out


def format_run_config(values: dict[str, Any]) -> str:
    """dict -> Flower's ``--run-config`` text; inverse of ``parse_run_config`` for values
    without spaces."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        return json.dumps(v) if isinstance(v, str) else str(v)
    return " ".join(f"{k}={fmt(v)}" for k, v in values.items())
