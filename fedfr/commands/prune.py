"""``fedfr prune``: prune a model to FLOPs / parameter / latency targets, fine-tune, report.

Models: the federated face model (``--checkpoint`` = a federation's final_model.pt or a
pre-trained checkpoint, ``--run-config`` = the run's config: model, image size, data), a
torchvision classifier (``--torchvision resnet18``, optional ``--checkpoint`` state dict,
``--data-root`` = an image folder with one sub-folder per class for the task), or a video re-ID
net (``--video model.pt``, a ``fedfr.reid.video.training.save_video_model`` file; task: its
training recipe on ``--video-data`` tracklets; only the residual blocks' inner channels are
pruned, see fedfr.pruning.video; ``--export`` writes TorchScript / ONNX with a sidecar).
With ``task='reid'`` in ``--run-config`` the checkpoint is a re-ID federation's final_model.pt:
identity classification on the run's public re-ID set is the task (fedfr.pruning.reid), and
pruned_model.pt is written in the tracker's format (``fedfr track --embedder``).
Writes <out>/pruned_model.pt (load with fedfr.pruning.io.load_pruned; re-ID:
fedfr.tracking.embedders.load_reid_model), report.json, report.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from fedfr.errors import ConfigError, first_detail
from fedfr.runtime import configure_threads

log = logging.getLogger("fedfr.prune")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("model")
    src.add_argument("--checkpoint", type=Path, help="face: final_model.pt / pre-trained "
                     "checkpoint; torchvision: a state_dict (default: random init)")
    src.add_argument("--run-config", default="", help="face model: the run config "
                     "(\"model='small_cnn' image-size=32 dataset='folder' data-root='...'\")")
    src.add_argument("--torchvision", metavar="NAME", help="prune torchvision.models.NAME "
                     "(weights=None) instead of the face model")
    src.add_argument("--num-classes", type=int, default=0,
                     help="torchvision: classes (default: from --data-root, else 1000)")
    src.add_argument("--input-size", type=int, default=224, help="torchvision: input side")
    src.add_argument("--data-root", type=Path, help="torchvision: image folder for "
                     "importance estimation, fine-tuning and evaluation")
    src.add_argument("--train-per-class", type=int, default=6)
    vid = p.add_argument_group("video re-ID model")
    vid.add_argument("--video", type=Path, metavar="MODEL", help="prune this video re-ID model "
                     "(save_video_model file) instead of the face model")
    vid.add_argument("--video-data", default="synth-mars", help="video data set for the task: "
                     "a registered name (synth-mars, synth-dukev, mars, dukemtmcvidreid, ...)")
    vid.add_argument("--video-root", type=Path, default=Path("cache"), help="the data set's "
                     "folder (its parent, torchreid's convention); the cache for synthetic sets")
    vid.add_argument("--num-ids", type=int, default=None, help="synthetic sets: identities")
    vid.add_argument("--protocol", default=None, help="evaluation protocol (default: the "
                     "model's training config's, mars-official)")
    vid.add_argument("--export", default="", help="after pruning, export to these formats "
                     "(comma-separated: torchscript,onnx) with a JSON sidecar")
    rid = p.add_argument_group("image re-ID model (--run-config \"task='reid' ...\")")
    rid.add_argument("--val-every", type=int, default=5,
                     help="every N-th public image of an identity is held out for the accuracy")
    rid.add_argument("--scale", type=float, default=16.0,
                     help="row norm of the classifier imprinted from the class means")
    pr = p.add_argument_group("pruning")
    pr.add_argument("--method", choices=("caie", "cpo", "taylor", "l1", "uniform"),
                    default="caie")
    pr.add_argument("--flops", type=float, help="max remaining FLOPs fraction, e.g. 0.5")
    pr.add_argument("--params", type=float, help="max remaining parameter fraction")
    pr.add_argument("--latency", type=float, help="max remaining measured CPU latency fraction")
    pr.add_argument("--convention", choices=("full", "eq5.7"), default="full",
                    help="FLOPs/params counting (eq5.7: conv+linear weights only)")
    pr.add_argument("--per-step", type=int, default=25, help="CAIE/Taylor: channels per step")
    pr.add_argument("--batches", type=int, default=30, help="CAIE/Taylor: mini-batches per step")
    pr.add_argument("--min-ratio", type=float, default=0.1, help="channels kept per group")
    pr.add_argument("--prune-lr", type=float, default=1e-3)
    pr.add_argument("--d-exp", type=float, default=1.0, help="CPO: acceptable metric drop")
    pr.add_argument("--retrain-steps", type=int, default=100, help="CPO: steps per trial")
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument("--keep", nargs="*", default=[], metavar="LAYER",
                    help="layers whose output channels stay (besides the output layer), e.g. "
                         "the last conv of a VGG (A.8)")
    ft = p.add_argument_group("fine-tuning")
    ft.add_argument("--schedule", choices=("cifar", "imagenet", "none"), default="imagenet",
                    help="fine-tuning preset (milestones rescaled to --epochs)")
    ft.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    ft.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _run_config(args) -> dict:
    from fedfr.config import parse_run_config

    return parse_run_config(args.run_config) if args.run_config else {}


def _reid(args):
    from fedfr.config import resolve
    from fedfr.pruning.reid import reid_route

    cfg = resolve(_run_config(args))
    model, task, spec = reid_route(args, cfg)
    return model, task, spec, None, cfg


def _face(args):
    from fedfr.config import resolve
    from fedfr.face.models import model_from_config
    from fedfr.face.workspace import open_workspace
    from fedfr.pruning.face import FaceTask, load_face_checkpoint

    run_config = _run_config(args)
    if run_config.get("task", "face") != "face":
        raise ConfigError(f"--run-config: task {run_config['task']!r} has no pruning route "
                          "here (face, reid; video nets: --video MODEL)")
    if int(run_config.get("num-clients", 0) or 0) == 0:
        # 0 means "one client per SuperNode" in a federation; the split needs the number
        run_config["num-clients"] = 4
        log.info("num-clients not given: using 4 (make demo's federation); pass the run's "
                 "value so that the public / generic split matches")
    cfg = resolve(run_config)
    model = model_from_config(cfg)
    phi = None
    if args.checkpoint is None:
        raise ConfigError("--checkpoint is required for the face model (final_model.pt of a "
                          "federation, or a pre-trained checkpoint)")
    backbone, phi = load_face_checkpoint(args.checkpoint)
    try:
        model.load_state_dict(backbone)
    except RuntimeError as e:
        raise ConfigError(f"{args.checkpoint}: does not fit model '{cfg.model}' of the run "
                          f"config: {first_detail(e)}") from e
    ws = open_workspace(cfg)
    task = FaceTask(ws.public(), ws.generic(), model, phi, batch_size=args.batch_size,
                    s=cfg.cosface_s, m=cfg.cosface_m, seed=args.seed)
    spec = {"kind": "fedfr", "config": cfg.to_dict()}
    return model, task, spec, None


def _torchvision(args):
    import torchvision

    from fedfr.pruning.face import folder_classification_task

    task = None
    num_classes = args.num_classes
    if args.data_root is not None:
        task = folder_classification_task(args.data_root, args.input_size, args.train_per_class,
                                          batch_size=args.batch_size, seed=args.seed)
        num_classes = num_classes or int(task.y_train.max()) + 1
    num_classes = num_classes or 1000
    if not hasattr(torchvision.models, args.torchvision):
        raise ConfigError(f"--torchvision: no model named {args.torchvision!r} in "
                          f"torchvision.models")
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.torchvision)(weights=None, num_classes=num_classes)
    if args.checkpoint is not None:
        from fedfr.checkpoint import safe_load
        sd = safe_load(args.checkpoint)
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise ConfigError(f"{args.checkpoint}: does not fit {args.torchvision}: "
                              f"{first_detail(e)}") from e
    spec = {"kind": "torchvision", "name": args.torchvision,
            "kwargs": {"num_classes": num_classes}}
    x = torch.zeros(1, 3, args.input_size, args.input_size)
    return model, task, spec, x


def _video(args):
    from fedfr.pruning.video import VideoReidTask, block_local_ignored, pruned_video_spec
    from fedfr.reid.data.video import get_video_dataset
    from fedfr.reid.video.training import VideoTrainConfig, load_video_model

    model, rec = load_video_model(args.video)
    mapping = dict(rec.get("train_config") or rec.get("meta", {}).get("train_config") or {})
    if not mapping:  # no recipe stored: the thesis's defaults at the model's build settings
        conf = model.config
        mapping = {"model": conf["name"], "backbone": conf["backbone"],
                   "clip_len": conf["clip_len"], "height": conf["input_size"][0],
                   "width": conf["input_size"][1]}
    if args.protocol:
        mapping["protocol"] = args.protocol
    cfg = VideoTrainConfig.from_mapping(mapping)
    opts = {"num_ids": args.num_ids} if args.num_ids else {}
    split = get_video_dataset(args.video_data, args.video_root, **opts)
    task = VideoReidTask(model, split, cfg, seed=args.seed)
    ignored = block_local_ignored(model, task.prune_scope) + list(args.keep)
    spec = pruned_video_spec(model)
    return model, task, spec, None, ignored, cfg


def _export_video(args, model, cfg, report) -> None:
    from fedfr.reid.models.video.export import export_video_model

    formats = tuple(f.strip() for f in args.export.split(",") if f.strip())
    meta = {"pruned": {"method": args.method, "source": str(args.video),
                       "flops": report.get("flops"), "params": report.get("params"),
                       "channels": report.get("channels_after")}}
    paths = export_video_model(model, args.out / "export", formats, feature=cfg.test_feature,
                               normalize=cfg.test_normalize, meta=meta)
    log.info("exported %s", ", ".join(str(p) for p in paths.values()))


def main(args: argparse.Namespace) -> int:
    configure_threads()
    from fedfr.pruning.cpo import CPOConfig
    from fedfr.pruning.global_pruning import GlobalConfig
    from fedfr.pruning.io import save_pruned
    from fedfr.pruning.pipeline import markdown, run, write_report
    from fedfr.pruning.task import FineTuneSchedule

    constraints = {k: v for k, v in (("flops", args.flops), ("params", args.params),
                                     ("latency", args.latency)) if v is not None}
    if args.method != "cpo" and not constraints:
        raise ConfigError("give at least one of --flops, --params, --latency")
    torch.manual_seed(args.seed)
    video_cfg = reid_cfg = None
    if args.video is not None:
        if args.torchvision:
            raise ConfigError("give one of --video and --torchvision")
        if args.method not in ("caie", "taylor"):
            raise ConfigError(f"--video: method {args.method!r} is not supported for video nets "
                              f"(caie or taylor: they trace the trunk only)")
        model, task, spec, x, video_ignored, video_cfg = _video(args)
    elif args.export:
        raise ConfigError("--export is for --video models (use `fedfr export` for the others)")
    elif args.torchvision:
        model, task, spec, x = _torchvision(args)
    elif _run_config(args).get("task") == "reid":
        model, task, spec, x, reid_cfg = _reid(args)
    else:
        model, task, spec, x = _face(args)
    if task is None and args.method in ("caie", "taylor", "cpo"):
        raise ConfigError(f"--method {args.method} needs data: pass --data-root")
    schedule = FineTuneSchedule.preset(args.schedule, args.epochs, args.lr)
    if task is None:
        schedule.epochs = 0
    gcfg = GlobalConfig(per_step=args.per_step, n_batches=args.batches, lr=args.prune_lr,
                        min_ratio=args.min_ratio, convention=args.convention)
    ccfg = CPOConfig(d_exp=args.d_exp, retrain_steps=args.retrain_steps, lr=args.prune_lr,
                     convention=args.convention)
    ignored = None
    if video_cfg is not None:
        ignored = video_ignored
    elif args.keep:
        from fedfr.pruning.groups import output_layers
        example = x if x is not None else task.example_input
        ignored = output_layers(model, example) + list(args.keep)
    model, report = run(model, task, args.method, constraints, schedule, gcfg, ccfg,
                        ignored=ignored, example_input=x)
    report["source"] = {"checkpoint": str(args.checkpoint) if args.checkpoint else None,
                        "spec": spec}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"method": args.method, "constraints": constraints}
    if video_cfg is not None:
        from fedfr.reid.video.training import config_mapping
        meta.update(train_config=config_mapping(video_cfg), scheme="block-local inner "
                    "channels of the trunk (fedfr.pruning.video)")
    if reid_cfg is not None:  # the tracker's format: fedfr track --embedder pruned_model.pt
        from fedfr.pruning.reid import save_pruned_reid

        save_pruned_reid(args.out / "pruned_model.pt", model, reid_cfg,
                         {"pruned": meta, "source": str(args.checkpoint)})
    else:
        save_pruned(args.out / "pruned_model.pt", model, spec, meta)
    write_report(report, args.out)
    if video_cfg is not None and args.export:
        _export_video(args, model, video_cfg, report)
    print(markdown(report))
    log.info("pruned model, report.json and report.md written to %s", args.out)
    return 0
