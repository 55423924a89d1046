"""What the pruner knows of a task: a loss on a batch, an evaluation, training batches.

The same pruners serve classification, face recognition (CosFace + verification metrics) and
re-ID through ``PruningTask``; fine-tuning schedules (Ch. 6 §6.4.1) are ``FineTuneSchedule``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.face.training.batches import batch_indices, seeded_generator

log = logging.getLogger(__name__)


class PruningTask(Protocol):
    """Task interface. ``metric``: name of the headline metric (higher is better)."""

    metric: str
    example_input: torch.Tensor  # (1, ...) input used for tracing and counting

    def train_batches(self, epoch: int) -> Iterable[Any]:
        """One epoch of training batches (shuffled with ``epoch`` as seed)."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss of ``model`` on ``batch`` (model in train mode)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics; must contain ``metric``."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Task parameters trained alongside the model (e.g. a CosFace class matrix)."""


def batch_stream(task: PruningTask, start_epoch: int = 0) -> Iterator[Any]:
    """Endless training batches, epoch after epoch."""
    epoch = start_epoch
    while True:
        empty = True
        for b in task.train_batches(epoch):
            empty = False
            yield b
        if empty:
            raise ConfigError("the training set gives no batch (task.train_batches yielded none); "
                              "expected at least --batch-size training images")
        epoch += 1


class ClassificationTask:
    """Cross-entropy classification on in-memory tensors.

    x_*: float (N, C, H, W); y_*: long (N,). ``augment``: optional fn(x, generator) -> x for
    training batches. Metric: ``accuracy`` (%) on the validation tensors. ``device``: where
    batches (and ``example_input``) go; the data stay on the CPU until then.
    """

    metric = "accuracy"

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                 y_val: torch.Tensor, batch_size: int = 64, seed: int = 0,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 eval_batch_size: int = 512, device: str | torch.device = "cpu") -> None:
        if len(x_train) != len(y_train) or len(x_val) != len(y_val):
            raise ValueError("ClassificationTask: images and labels differ in length")
        self.x_train, self.y_train = x_train, y_train.long()
        self.x_val, self.y_val = x_val, y_val.long()
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.eval_batch_size = eval_batch_size
        self.device = torch.device(device)
        self.example_input = x_train[:1].clone().to(self.device)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = seeded_generator(self.seed, epoch, 11)
        for idx in batch_indices(len(self.x_train), self.batch_size, gen, drop_last=True):
            x = self.x_train[idx]
            x = self.augment(x, gen) if self.augment else x
            yield x.to(self.device), self.y_train[idx].to(self.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        was = model.training
        model.eval()
        correct, total = 0, 0
        for s in range(0, len(self.x_val), self.eval_batch_size):
            pred = model(self.x_val[s:s + self.eval_batch_size].to(self.device)).argmax(1).cpu()
            correct += int((pred == self.y_val[s:s + self.eval_batch_size]).sum())
            total += len(pred)
        model.train(was)
        return {"accuracy": 100.0 * correct / max(total, 1)}

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return []


@dataclass
class FineTuneSchedule:
    """SGD fine-tuning: ``epochs`` at ``lr``, multiplied by ``gamma`` at each of ``milestones``.

    Presets (Ch. 6 §6.4.1): ``cifar`` 240 epochs, lr 1e-3, /5 at 80 and 160; ``imagenet`` 30
    epochs, /5 at 10 and 20. momentum 0.9 and weight decay 1e-4 follow the authors' code.
    """

    epochs: int = 240
    lr: float = 1e-3
    milestones: tuple[int, ...] = (80, 160)
    gamma: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    keep_best: bool = False
    max_steps_per_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def preset(cls, name: str, epochs: int | None = None, lr: float | None = None
               ) -> FineTuneSchedule:
        """``cifar`` | ``imagenet`` | ``none``; ``epochs`` rescales the milestones."""
        base = {"cifar": cls(240, 1e-3, (80, 160)), "imagenet": cls(30, 1e-3, (10, 20)),
                "none": cls(0, 1e-3, ())}
        if name not in base:
            raise ConfigError(f"fine-tune schedule must be one of {sorted(base)}, got {name!r}")
        s = base[name]
        if epochs is not None and s.epochs:
            s.milestones = tuple(max(1, round(m * epochs / s.epochs)) for m in s.milestones)
            s.epochs = epochs
        elif epochs is not None:
            s.epochs = epochs
        if lr is not None:
            s.lr = lr
        return s


def make_sgd(model: nn.Module, task: PruningTask, lr: float, momentum: float = 0.9,
             weight_decay: float = 1e-4) -> torch.optim.SGD:
    params = list(model.parameters()) + list(task.extra_parameters())
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_steps(model: nn.Module, task: PruningTask, batches: Iterator[Any], steps: int,
                opt: torch.optim.Optimizer) -> float:
    """``steps`` SGD steps on the stream; returns the mean loss."""
    model.train()
    total = 0.0
    for _ in range(steps):
        loss = task.loss(model, next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
    return total / max(steps, 1)


def finetune(model: nn.Module, task: PruningTask, schedule: FineTuneSchedule,
             progress: bool = True) -> list[dict[str, float]]:
    """Fine-tune in place with ``schedule``; returns per-epoch {epoch, loss, lr, metric}.

    With ``keep_best`` the weights of the epoch with the best validation metric are restored.
    """
    history: list[dict[str, float]] = []
    if schedule.epochs <= 0:
        return history
    opt = make_sgd(model, task, schedule.lr, schedule.momentum, schedule.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(schedule.milestones), schedule.gamma)
    best, best_state = -float("inf"), None
    for epoch in range(schedule.epochs):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for i, batch in enumerate(task.train_batches(1000 + epoch)):
            if schedule.max_steps_per_epoch is not None and i >= schedule.max_steps_per_epoch:
                break
            loss = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item(), count + 1
        lr = opt.param_groups[0]["lr"]
        sched.step()
        row = {"epoch": epoch + 1, "loss": total / max(count, 1), "lr": lr}
        if schedule.keep_best or epoch == schedule.epochs - 1:
            metric = task.evaluate(model)[task.metric]
            row[task.metric] = metric
            if schedule.keep_best and metric > best:
                best = metric
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(row)
        if progress:
            log.info("fine-tune epoch %d/%d: loss %.4f lr %.2g%s (%.1f s)", epoch + 1,
                     schedule.epochs, row["loss"], lr,
                     f" {task.metric} {row[task.metric]:.3f}" if task.metric in row else "",
                     time.perf_counter() - t0)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
