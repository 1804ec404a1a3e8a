"""Training: Ho et al. 2020 Algorithm 1 with early stopping, as an iterator.

    repeat
      x_0 ~ q(x_0); t ~ Uniform({1..T}); eps ~ N(0, I)
      gradient step on || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1-abar_t) eps, t) ||^2
    until converged

``Trainer.run()`` yields a ``StepRecord`` after every optimiser step, an
``EpochRecord`` after every epoch (with the validation loss) and one
``FinishedRecord`` at the end; a run that continues a checkpoint without best
weights first yields a ``BaselineRecord``, the validation of the weights it
brought; given ``early_validation_steps``, one ``EarlyValidationRecord`` after
that many steps of the first epoch, an estimate on a subset of the validation
split that nothing but the history keeps. The caller (CLI, GUI worker, tests)
decides what to print or draw; the trainer only trains and, when given a run
folder, keeps ``best.pt``, ``last.pt`` and ``history.json`` there.

Stopping: set ``stop_event`` (a ``threading.Event``); it is checked before every
step, so training stops within one batch. ``last.pt`` then holds the exact
position (epoch, step, generator states), and a Trainer built from
``plan_resume`` of its folder continues as if it had never stopped.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import DEFAULT_EARLY_VALIDATION_IMAGES
from ..device import autocast, choose_precision, resolve_device
from ..diffusion.schedule import NoiseSchedule
from ..diffusion.unet import build_model
from ..storage.data import MNISTSplits, to_model_range
from .algorithm import EMA, drop_labels, noised_batch, recalibrate_batchnorm
from .config import (
    BaselineRecord, EarlyValidationRecord, EpochRecord, FinishedRecord, Record, StartedRecord, StepRecord,
    _format_loss, loss_bins, lr_factor,
)
from .files import HISTORY, RunFiles, history_document
from .plan import TrainPlan
from .state import RunState


@dataclass
class _EpochProgress:
    """What ``Trainer._train_epoch`` hands to ``_end_epoch``: the epoch's running sums."""

    epoch_start: float
    n_local: int  # images this process trains on in a full epoch
    step_seconds: float  # running average of one optimiser step
    loss_sum: torch.Tensor  # sum of per-image losses so far (float64, on the device)
    images: int = 0  # images trained in this run() so far, all processes
    finished: bool = False  # the run ended inside the epoch

    def end(self) -> "_EpochProgress":
        self.finished = True
        return self


class Trainer:
    """Trains a U-Net on MNIST (see the module docstring).

    plan:     what to train (``plan.plan_new``, ``plan_resume`` or ``plan_continue``): the configs,
              the source checkpoint read once, the metadata to record. A resumed run continues
              from its last.pt's exact position; a continued one takes the file's weights (an
              export's EMA weights start both copies), epoch count, history and guide network,
              and starts afresh what the file lacks: the Adam state (the warm-up then runs again
              from this run's first step) and the random streams; without best weights, the
              file's own are validated first and are this run's best (best.pt) until an epoch
              beats them.
    data:     MNISTSplits (uses its train and val splits).
    run_dir:  where best.pt, last.pt and history.json go (None: keep nothing on disk).
    stop_event: set it from any thread to stop within one batch.
    max_seconds: a wall-clock budget for this run() (None: none). Checked before
              every step; when the time left would not cover the next step and a
              validation, training validates what it has (a partial epoch counts),
              keeps best.pt and last.pt, and finishes with reason "budget". A
              resumed run gets a new budget. Early stopping applies inside it.
    early_validation_steps: after this many optimiser steps of the first epoch (0: never), an
              EarlyValidationRecord: the loss on the first ``early_validation_images``
              validation digits (``early_validation``). Skipped where the epoch is no longer
              (the step count is past an epoch), the budget cannot afford it, or a
              distillation round trains (its validation runs the teacher: not a few seconds).
    """

    def __init__(
        self,
        plan: TrainPlan,
        data: MNISTSplits,
        *,
        device: str | torch.device = "auto",
        run_dir: str | os.PathLike | None = None,
        stop_event: threading.Event | None = None,
        max_seconds: float | None = None,
        early_validation_steps: int = 0,
        early_validation_images: int = DEFAULT_EARLY_VALIDATION_IMAGES,
    ) -> None:
        if max_seconds is not None and not (max_seconds > 0 and math.isfinite(max_seconds)):
            raise ValueError(f"the time budget must be a positive number of seconds, got {max_seconds}")
        if early_validation_steps < 0 or early_validation_images < 1:
            raise ValueError(f"the early validation needs steps >= 0 and images >= 1, got {early_validation_steps} "
                             f"steps and {early_validation_images} images")
        self.early_validation_steps, self.early_validation_images = early_validation_steps, early_validation_images
        self.plan = plan
        self.max_seconds = max_seconds
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model_config, self.schedule_config, self.config = plan.model, plan.schedule, plan.train
        self.extra_meta = dict(plan.meta)
        payload = plan.payload
        # an autoguidance guide network travels with the weights it guides (``attach_guide``)
        self.guide_entry = payload.get("guide") if payload is not None else None
        self.precision_choice = choose_precision(self.config.precision, self.device, mode="train",
                                                 model_config=self.model_config)
        self.precision = self.precision_choice.precision
        self.schedule = NoiseSchedule(self.schedule_config)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.stop_event = stop_event or threading.Event()

        self._join_processes()
        torch.manual_seed(self.config.seed)
        self._build_networks()
        self._place_data(data)
        self._seed_streams()
        self.files = RunFiles(self.run_dir, self.rank)
        self.state = RunState()
        self._run_start: float | None = None
        self.last_val_by_t: list | None = None  # validation loss per t bin (loss_bins), latest validation
        self._last_validation_seconds: float | None = None
        snr = self.schedule.snr.to(self.device)
        gamma = self.config.min_snr_gamma
        self._snr_weight = torch.clamp(snr, max=gamma) / snr if gamma > 0 else None
        self.distiller = self._distiller()
        if plan.init_weights is not None and payload is None:
            from .distill import load_initial_weights

            load_initial_weights(self.model, plan.init_weights)
            if self.ema is not None:
                self.ema.model.load_state_dict(self.model.state_dict())
        if payload is not None:
            # a continued checkpoint without best weights: its own are validated before training
            pending = plan.mode == "continue" and payload.get("best_weights") is None
            self.state = RunState.from_payload(payload, self.steps_per_epoch, baseline_pending=pending)
            self._restore(payload)

    def _distiller(self):
        """A distillation round's loss (``distill.Distiller``), or None for Algorithm 1."""
        if self.plan.distill is None:
            return None
        from .distill import Distiller

        return Distiller(self.plan.distill, self.plan.teacher, self.schedule, device=self.device,
                         precision=self.precision, memory_format=self.memory_format,
                         label_dropout=self.config.label_dropout)

    def _join_processes(self) -> None:
        """Distributed (torchrun + DDP): each process trains on its shard of every epoch with
        batch_size / world_size images per step, so the global batch and the step count equal a
        single-process run's; rank 0 writes files."""
        dist = torch.distributed
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if self.config.batch_size % self.world_size:
            raise ValueError(
                f"batch size {self.config.batch_size} must be divisible by the {self.world_size} processes"
            )

    def _build_networks(self) -> None:
        """The U-Net, its EMA copy, Adam, and DDP's wrapper when distributed."""
        self.memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        self.model = build_model(self.model_config).to(self.device, memory_format=self.memory_format)
        self.ema = (
            EMA(self.model, self.config.ema_decay, copy_buffers=self.config.bn_recalibration == 0)
            if self.config.ema_decay > 0 else None
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self._ddp = None
        if self.distributed:
            self._ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def _place_data(self, data: MNISTSplits) -> None:
        """The splits on the device once, in [-1, 1], and validation's fixed (t, eps)."""
        self.train_x = to_model_range(data.train_images).to(self.device)
        self.train_y = data.train_labels.to(self.device)
        self.val_x = to_model_range(data.val_images).to(self.device)
        self.val_y = data.val_labels.to(self.device)
        g = torch.Generator().manual_seed(self.config.val_seed)
        self.val_t = torch.randint(1, self.schedule.timesteps + 1, (len(self.val_x),), generator=g).to(self.device)
        self.val_noise = torch.randn(self.val_x.shape, generator=g).to(self.device)

    def _seed_streams(self) -> None:
        """The permutation's generator on the CPU (the same on every rank, each taking its own
        shard), (t, eps)'s on the device (one stream per rank)."""
        self.perm_gen = torch.Generator().manual_seed(self.config.seed * 1000)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(self.config.seed * 1000 + 7 + self.rank)
        self.epoch_start_perm_state = self.perm_gen.get_state()

    def started(self) -> StartedRecord:
        """What the run starts from, for a start line or a panel header (see ``StartedRecord``)."""
        from ..device import describe

        steps = self.state.history.get("steps") or {}
        return StartedRecord(
            mode=self.plan.mode, device=describe(self.device), precision=self.precision,
            precision_detail=self.precision_choice.describe(), train_images=len(self.train_x),
            val_images=len(self.val_x),
            validation_images=len(self.val_x) + self.config.bn_recalibration * self.config.batch_size,
            epochs=self.config.epochs, start_epoch=self.state.epoch, start_step=self.state.step_in_epoch,
            start_lr=self.next_lr(), steps_per_epoch=self.steps_per_epoch, timesteps=self.schedule.timesteps,
            train_config=self.config.to_dict(), model_config=self.model_config.to_dict(),
            schedule_config=self.schedule_config.to_dict(), preset=self.plan.preset,
            run_dir=str(self.run_dir) if self.run_dir is not None else "", max_seconds=self.max_seconds,
            history={"epochs": list(self.state.history.get("epochs", [])),
                     "global_step": [int(s) for s in steps.get("global_step", [])],
                     "loss": [float(v) for v in steps.get("loss", [])],
                     "early_validation": self.state.history.get("early_validation")},
            continued_from=self.extra_meta.get("continued_from") if self.plan.mode == "continue" else None,
            source_name=self.plan.source_name or "",
        )

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self.state.epoch

    @property
    def step_in_epoch(self) -> int:
        """Completed steps of the epoch under way."""
        return self.state.step_in_epoch

    @property
    def global_step(self) -> int:
        return self.state.global_step

    @property
    def history(self) -> dict:
        return self.state.history

    @property
    def _baseline_pending(self) -> bool:
        return self.state.baseline_pending

    # ----------------------------------------------------------- state I/O
    @property
    def rank_batch_size(self) -> int:
        """Images per step on this process: the global batch split across processes."""
        return max(1, self.config.batch_size // self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        per_rank = len(self.train_x) // self.world_size
        return max(1, math.ceil(per_rank / self.rank_batch_size))

    def sampling_model(self) -> nn.Module:
        """The weights to sample from: the EMA copy when EMA is on."""
        return self.ema.model if self.ema is not None else self.model

    def _weights(self, module: nn.Module) -> dict:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}

    def _snapshot(self) -> dict:
        return {
            "weights": self._weights(self.model),
            "ema_weights": self._weights(self.ema.model) if self.ema is not None else None,
        }

    def _payload(self, weights: dict, *, with_training_state: bool) -> dict:
        payload = {
            "model": self.model_config.to_dict(),
            "schedule": self.schedule_config.to_dict(),
            "train": self.config.to_dict(),
            "weights": weights["weights"],
            "ema_weights": weights["ema_weights"],
            **self.state.checkpoint_fields(),
            "seed": self.config.seed,
            "meta": {**self.extra_meta, "finished_reason": self.state.finished_reason,
                     "train_seconds": self.state.train_seconds},
        }
        if self.guide_entry is not None:
            payload["guide"] = self.guide_entry
        if self.plan.distill is not None:
            payload["distill"] = self.plan.distill.to_dict()
            if with_training_state:  # a resume needs nothing but last.pt
                payload["teacher"] = self.plan.teacher
        if with_training_state:
            payload.update(
                **self.state.resume_fields(),
                optimizer=self.optimizer.state_dict(),
                rng={
                    "perm_epoch_start": self.epoch_start_perm_state,
                    "perm": self.perm_gen.get_state(),
                    "noise": self.noise_gen.get_state().cpu(),
                    "torch": torch.get_rng_state(),
                },
            )
        return payload

    def _restore(self, p: dict) -> None:
        def load(module: nn.Module, state: dict) -> None:
            module.load_state_dict(state)
            module.to(memory_format=self.memory_format)

        load(self.model, p["weights"])
        if self.ema is not None:
            load(self.ema.model, p["ema_weights"] if p.get("ema_weights") is not None else p["weights"])
        if p.get("optimizer") is not None:
            self.optimizer.load_state_dict(p["optimizer"])
        rng = p.get("rng")
        if rng:
            self.epoch_start_perm_state = rng["perm_epoch_start"]
            self.perm_gen.set_state(rng["perm"])
            self.noise_gen.set_state(rng["noise"].to(self.noise_gen.get_state().device))
            torch.set_rng_state(rng["torch"])

    def _history(self) -> dict:
        return history_document(self.state, self.model_config.to_dict(), self.schedule_config.to_dict(),
                                self.config.to_dict(), self.schedule.timesteps, self.extra_meta)

    def _best_payload(self) -> dict | None:
        st = self.state.best_state
        return None if st is None else self._payload(st, with_training_state=False)

    # ---------------------------------------------------------- the loop
    def _labels_for(self, y: torch.Tensor) -> torch.Tensor | None:
        if not self.model_config.conditional:
            return None
        return drop_labels(y, self.config.label_dropout, self.model_config.num_classes, self.noise_gen)

    def train_step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimiser step of Algorithm 1 on the training digits at ``idx`` (t ~ U{1..T},
        eps ~ N(0, I), the eps-prediction MSE, optionally min-SNR weighted), or of a distillation
        round's loss (``distill.Distiller``); returns the loss."""
        if self.distiller is not None:
            y = self.train_y[idx] if self.model_config.conditional else None
            return self._optimise(self.distiller.loss(self._ddp or self.model, self.train_x[idx], y, self.noise_gen))
        x_t, t, eps = noised_batch(self.schedule, self.train_x[idx], self.noise_gen, self.memory_format)
        y = self._labels_for(self.train_y[idx])
        net = self._ddp or self.model
        with autocast(self.device, self.precision):
            pred = net(x_t, t, y) if y is not None else net(x_t, t)
        if self.config.min_snr_gamma > 0:
            # Min-SNR-gamma for eps-prediction: w_t = min(SNR_t, gamma) / SNR_t
            per_image = (pred.float() - eps).pow(2).mean(dim=(1, 2, 3))
            loss = (per_image * self._snr_weight[t]).mean()
        else:
            loss = F.mse_loss(pred.float(), eps)
        return self._optimise(loss)

    def _optimise(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``loss``: the rate's schedule, clipping, Adam, the EMA."""
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.state.global_step)
        return loss.detach()

    def _set_lr(self) -> None:
        """Warm-up and decay (TrainConfig.lr_schedule) for the step about to be taken."""
        cfg = self.config
        if cfg.lr_schedule == "constant" and cfg.warmup_steps == 0:
            return
        lr = self.next_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def next_lr(self) -> float:
        """The learning rate of the next optimiser step.

        The decay's progress is the larger of the epochs' (global step / all epochs' steps)
        and the time budget's share spent, so before a resumed run() has spent any of its
        new budget this is where its warm restart begins: peak x (1 + cos(pi x epoch /
        epochs)) / 2, e.g. half the peak at epoch 50 of 100, not the peak itself.
        """
        cfg = self.config
        progress = self.state.global_step / (cfg.epochs * self.steps_per_epoch)
        if self.max_seconds is not None:
            progress = max(progress, self._budget_used() / self.max_seconds)
        return cfg.lr * lr_factor(cfg.lr_schedule, self.state.global_step - self.state.warmup_origin, cfg.warmup_steps, progress)

    def _budget_used(self) -> float:
        """Seconds of this run()'s time budget spent so far."""
        return time.perf_counter() - self._run_start if self._run_start is not None else 0.0

    def _budget_exhausted(self, step_seconds: float, extra_seconds: float = 0.0) -> bool:
        """True when the time left would not cover one more step and a validation (and
        ``extra_seconds`` of other work before them)."""
        if self.max_seconds is None:
            return False
        if self.distributed:  # every rank must agree, or the collectives hang
            flag = torch.tensor([float(self._budget_used())], device=self.device, dtype=torch.float64)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            used = float(flag)
        else:
            used = self._budget_used()
        return used + extra_seconds + step_seconds + self._validation_seconds_estimate(step_seconds) >= self.max_seconds

    def _validation_seconds_estimate(self, step_seconds: float) -> float:
        """How long the next recalibration + validation will take: the last one's
        duration, or before any, from the step time (a forward is about a third
        of a training step, and validation runs 10,000 digits in batches of 1,000)."""
        if self._last_validation_seconds is not None:
            return self._last_validation_seconds
        per_image = step_seconds / max(self.rank_batch_size, 1) / 3.0
        images = len(self.val_x) / self.world_size + self.config.bn_recalibration * self.config.batch_size
        return per_image * images

    def recalibrate(self, epoch: int) -> bool:
        """Re-estimate the sampling model's BatchNorm statistics (see TrainConfig.bn_recalibration).

        Seeded by the run's seed and the epoch, so a resumed run gets the same
        statistics; every DDP rank computes the same ones. False when stopped.
        """
        if self.config.bn_recalibration == 0:
            return True
        return recalibrate_batchnorm(
            self.sampling_model(), self.schedule, self.train_x,
            labels=self.train_y if self.model_config.conditional else None,
            label_dropout=self.config.label_dropout,
            batches=self.config.bn_recalibration, batch_size=self.config.batch_size,
            seed=self.config.seed * 1000 + 31 + epoch, precision=self.precision,
            memory_format=self.memory_format,
            should_stop=None if self.distributed else self.stop_event.is_set,
        )

    @torch.no_grad()
    def validation_loss(self, batch_size: int = 1000) -> float | None:
        """Mean ||eps - eps_theta||^2 over the validation split with its fixed (t, eps).

        Returns None when the stop event was set during the pass (checked every
        batch, so a stop never waits for all 10,000 validation digits). A distillation
        round measures its own loss (``Distiller.validation``).
        """
        if self.distiller is not None:
            return self._distill_validation()
        result = self._validation_pass(len(self.val_x), batch_size)
        if result is None:
            return None
        loss, self.last_val_by_t = result
        return loss

    @torch.no_grad()
    def _validation_pass(self, n: int, batch_size: int = 1000) -> tuple[float, list] | None:
        """(mean ||eps - eps_theta||^2, its mean per t bin) of the sampling weights on the first
        ``n`` validation digits with their fixed (t, eps), shared among the processes; None when
        stopped."""
        model = self.sampling_model()
        was_training = model.training
        model.eval()
        total, count = torch.zeros((), device=self.device, dtype=torch.float64), 0
        bins = loss_bins(self.schedule.timesteps)
        bin_sum = torch.zeros(len(bins) - 1, device=self.device, dtype=torch.float64)
        bin_count = torch.zeros(len(bins) - 1, device=self.device, dtype=torch.float64)
        edges = torch.tensor(bins[1:-1], device=self.device)
        lo, hi = (n * self.rank) // self.world_size, (n * (self.rank + 1)) // self.world_size
        try:
            with torch.inference_mode():
                for s in range(lo, hi, batch_size):
                    if self.stop_event.is_set() and not self.distributed:
                        return None
                    e = min(s + batch_size, hi)
                    x_t = self.schedule.q_sample(self.val_x[s:e], self.val_t[s:e], self.val_noise[s:e])
                    x_t = x_t.contiguous(memory_format=self.memory_format)
                    y = self.val_y[s:e] if self.model_config.conditional else None
                    with autocast(self.device, self.precision):
                        pred = model(x_t, self.val_t[s:e], y) if y is not None else model(x_t, self.val_t[s:e])
                    per_image = (pred.float() - self.val_noise[s:e]).pow(2).mean(dim=(1, 2, 3)).double()
                    total += per_image.sum() * self.val_x[0].numel()
                    count += (e - s) * self.val_x[0].numel()
                    which = torch.bucketize(self.val_t[s:e], edges, right=True)
                    bin_sum.index_add_(0, which, per_image)
                    bin_count.index_add_(0, which, torch.ones_like(per_image))
        finally:
            model.train(was_training)
        if self.distributed:
            packed = torch.cat([total.view(1), torch.tensor([float(count)], device=self.device, dtype=torch.float64),
                                bin_sum, bin_count])
            torch.distributed.all_reduce(packed)
            total, count = packed[0], float(packed[1])
            nb = len(bin_sum)
            bin_sum, bin_count = packed[2 : 2 + nb], packed[2 + nb :]
        by_t = [float(sv / cv) if cv > 0 else None for sv, cv in zip(bin_sum.tolist(), bin_count.tolist())]
        return float(total) / max(count, 1), by_t

    def _distill_validation(self) -> float | None:
        result = self.distiller.validation(
            self.sampling_model(), self.val_x, self.val_y if self.model_config.conditional else None,
            seed=self.config.val_seed, bins=loss_bins(self.schedule.timesteps), should_stop=self.stop_event.is_set)
        if result is None:
            return None
        loss, self.last_val_by_t = result
        return loss

    def _epoch_permutation(self) -> torch.Tensor:
        """This rank's sample order for the current epoch (re-creatable from the saved state)."""
        self.perm_gen.set_state(self.epoch_start_perm_state)
        n = len(self.train_x)
        perm = torch.randperm(n, generator=self.perm_gen)
        if self.world_size > 1:
            per_rank = n // self.world_size
            perm = perm[self.rank * per_rank : (self.rank + 1) * per_rank]
        return perm.to(self.device)

    def _restore_best(self) -> None:
        if self.state.best_state is None:
            return
        self.model.load_state_dict(self.state.best_state["weights"])
        if self.ema is not None and self.state.best_state.get("ema_weights") is not None:
            self.ema.model.load_state_dict(self.state.best_state["ema_weights"])

    def _finish(self, reason: str, message: str) -> FinishedRecord:
        """End the run: best.pt, history.json, then last.pt (which marks it finished; a diverged
        run keeps the last.pt of its last good epoch), and the best weights restored."""
        st = self.state
        st.finished_reason = reason
        last = self._payload(self._snapshot(), with_training_state=True) if reason != "diverged" else None
        self._restore_best()
        self.files.write(best=self._best_payload(), history=self._history(), last=last)
        return FinishedRecord(reason, st.epoch, st.best_epoch, st.best_val_loss, message)

    def _validate(self, epoch: int) -> float | None:
        """Recalibrate (when set) and validate the sampling weights; None when stopped."""
        start = time.perf_counter()
        val_loss = self.validation_loss() if self.recalibrate(epoch) else None
        if val_loss is not None:
            self._last_validation_seconds = time.perf_counter() - start
        return val_loss

    def _budget_message(self, epoch_done: float, step: int, steps: int) -> str:
        minutes = self.max_seconds / 60.0
        where = f"epoch {epoch_done + 1}, step {step} of {steps}" if step < steps else f"the end of epoch {int(epoch_done)}"
        return (f"the time budget of {minutes:g} min ended training at {where}"
                + (f"; best epoch {self.state.best_epoch} restored (validation loss {_format_loss(self.state.best_val_loss)})"
                   if self.state.best_epoch else ""))

    def _finish_budget(self, epoch: int, step: int, steps: int, epoch_start: float,
                       loss_sum: torch.Tensor, images_this_run: int) -> Iterator[Record]:
        """The budget ran out at ``step`` of ``epoch``: validate what was trained since the
        last validation (a partial epoch), keep it if it is the best, and finish.

        The position stays mid-epoch, so ``--resume`` continues this epoch exactly;
        the early-stopping count is left alone (a partial epoch is not an epoch)."""
        seconds_before = time.perf_counter() - epoch_start
        self.state.partial_loss_sum = float(loss_sum)
        if step == self._budget_start_step(epoch):  # nothing trained since the last validation
            self.state.train_seconds += seconds_before
            yield self._finish("budget", self._budget_message(epoch - 1, step, steps))
            return
        val_loss = self._validate(epoch)
        seconds = time.perf_counter() - epoch_start
        self.state.train_seconds += seconds
        if val_loss is None:
            yield self._finish("stopped", "stopped during the validation at the end of the time budget" + self._kept())
            return
        st = self.state
        improved = st.improve(val_loss, epoch, self._snapshot)
        fraction = step / steps
        train_loss = float(loss_sum) / max(step * self.rank_batch_size, 1)
        st.history["epochs"].append({
            "epoch": epoch - 1 + fraction, "partial": True, "train_loss": train_loss, "val_loss": val_loss,
            "seconds": seconds, "images_per_s": images_this_run / max(seconds, 1e-9),
            "val_loss_by_t": self.last_val_by_t, "best_val_loss": st.best_val_loss, "improved": improved,
            "time": st.train_seconds,
        })
        yield EpochRecord(
            epoch, self.config.epochs, train_loss, val_loss, seconds, images_this_run / max(seconds, 1e-9),
            st.best_val_loss, st.best_epoch, st.epochs_without_improvement, self.config.patience, improved,
            validation_seconds=self._last_validation_seconds or 0.0, fraction=fraction,
            val_loss_by_t=self.last_val_by_t,
        )
        yield self._finish("budget", self._budget_message(epoch - 1, step, steps))

    def _budget_start_step(self, epoch: int) -> int:
        """The step of ``epoch`` at which the current run() began (0 unless it resumed mid-epoch)."""
        return self._resumed_step if epoch == self._resumed_epoch else 0

    def run(self) -> Iterator[Record]:
        """Train until the epoch budget, early stopping, a stop request or divergence.

        Each epoch has two phases: ``_train_epoch`` (Algorithm 1 over the epoch's
        permutation: one StepRecord per step) and ``_end_epoch`` (validation, the best
        weights, checkpoints and history, and whether to go on: one EpochRecord). Either
        phase may end the run with a FinishedRecord; ``run`` only sequences them.
        """
        already = self._already_finished()
        if already is not None:
            if self._rewrite_lagging_files():
                already = replace(already, message=already.message + "; its best.pt and history.json lagged "
                                  "behind last.pt (a save was interrupted) and are rewritten from it")
            yield already
            return
        self._run_start = time.perf_counter()
        self._resumed_epoch, self._resumed_step = self.state.epoch + 1, self.state.step_in_epoch
        if self.state.baseline_pending:
            baseline = self._validate_baseline()
            yield baseline
            if baseline.kind == "finished":
                return
        self.model.train()
        step_seconds = 0.0  # a running average of one optimiser step's duration
        while self.state.epoch < self.config.epochs:
            epoch = self.state.epoch + 1
            if self._budget_exhausted(step_seconds) and self.state.step_in_epoch == 0:
                yield self._finish("budget", self._budget_message(epoch - 1, self.steps_per_epoch, self.steps_per_epoch))
                return
            progress = yield from self._train_epoch(epoch, step_seconds)
            if progress.finished:
                return
            step_seconds = progress.step_seconds
            if (yield from self._end_epoch(epoch, progress)):
                return
        yield self._finish(
            "completed",
            f"finished {self.config.epochs} epochs, best epoch {self.state.best_epoch} restored "
            f"(validation loss {_format_loss(self.state.best_val_loss)})",
        )

    def _validate_baseline(self) -> BaselineRecord | FinishedRecord:
        """A continued checkpoint without best weights: validate the weights it brought and keep
        them as the best so far (best.pt), so an epoch must beat them to replace them and a run
        that never does still ends with best.pt. Their BaselineRecord, or the FinishedRecord of
        a stop."""
        val_loss = self._validate(self.state.epoch)
        if val_loss is None:
            return self._finish("stopped", f"stopped while validating the weights of epoch {self.state.epoch} "
                                "it continues from, before training")
        st = self.state
        st.baseline_pending = False
        st.best_val_loss, st.best_epoch, st.best_state = val_loss, st.epoch, self._snapshot()
        st.epochs_without_improvement = 0
        self.files.write(best=self._best_payload())
        return BaselineRecord(st.epoch, val_loss, self._last_validation_seconds)

    def _rewrite_lagging_files(self) -> bool:
        """A finished run whose history.json lags behind its last.pt (a kill during the final
        saves, in the order runs were saved before best.pt and history.json came first): rewrite
        best.pt (from last.pt's best weights) and history.json. True when they were rewritten."""
        if not self.files.active:
            return False
        try:
            history = json.loads((self.run_dir / HISTORY).read_text())
            behind = len(history.get("epochs") or []) != len(self.state.history.get("epochs") or []) \
                or history.get("best_epoch") != self.state.best_epoch
        except (OSError, ValueError, AttributeError):
            behind = True
        if behind:
            self.files.write(best=self._best_payload(), history=self._history())
        return behind

    def _already_finished(self) -> FinishedRecord | None:
        """A resumed run that has nothing left to do says so instead of training."""
        cfg = self.config
        if self.state.epochs_without_improvement >= cfg.patience and self.state.epoch > 0:
            return FinishedRecord(
                "early_stopped", self.state.epoch, self.state.best_epoch, self.state.best_val_loss,
                f"this run already stopped early at epoch {self.state.epoch} (best epoch {self.state.best_epoch}); "
                f"resume it with a patience above {self.state.epochs_without_improvement} to continue",
            )
        if self.state.epoch >= cfg.epochs:
            return FinishedRecord(
                "completed", self.state.epoch, self.state.best_epoch, self.state.best_val_loss,
                f"this run already finished its {cfg.epochs} epochs; ask for more epochs to continue",
            )
        return None

    def _train_epoch(self, epoch: int, step_seconds: float):
        """Phase 1: the optimiser steps of ``epoch`` (from ``step_in_epoch`` when resuming),
        one StepRecord each. Ends the run (a FinishedRecord, ``finished`` set) on the time
        budget, a stop request or a non-finite loss. Returns an ``_EpochProgress``."""
        st, B, steps = self.state, self.rank_batch_size, self.steps_per_epoch
        perm = self._epoch_permutation()
        # (when resuming mid-epoch, the permutation's generator is already past it)
        progress = _EpochProgress(
            epoch_start=time.perf_counter(), n_local=min(len(perm), steps * B), step_seconds=step_seconds,
            loss_sum=torch.tensor(st.partial_loss_sum, device=self.device, dtype=torch.float64),
        )
        for s in range(st.step_in_epoch, steps):
            if self._budget_exhausted(progress.step_seconds):
                yield from self._finish_budget(epoch, s, steps, progress.epoch_start, progress.loss_sum,
                                               progress.images)
                return progress.end()
            if self.stop_event.is_set():
                yield self._stop_in_epoch(progress, f"stopped at epoch {epoch}, step {s} of {steps}")
                return progress.end()
            idx = perm[s * B : (s + 1) * B]
            step_start = time.perf_counter()
            loss = self.train_step(idx)
            loss_value = float(loss)
            took = time.perf_counter() - step_start
            progress.step_seconds = took if progress.step_seconds == 0.0 else 0.9 * progress.step_seconds + 0.1 * took
            if not math.isfinite(loss_value):
                st.train_seconds += time.perf_counter() - progress.epoch_start
                yield self._finish(
                    "diverged",
                    f"the training loss became {loss_value} at epoch {epoch}, step {s + 1}: training stopped"
                    + (f"; the best checkpoint (epoch {st.best_epoch}) is kept" if st.best_epoch else "")
                    + ". Try a lower learning rate, gradient clipping or fp32 precision.",
                )
                return progress.end()
            progress.loss_sum += loss.double() * len(idx)
            st.step_in_epoch = s + 1
            st.global_step += 1
            progress.images += len(idx) * self.world_size
            now = time.perf_counter()
            st.log_step(epoch - 1 + (s + 1) / steps, loss_value, st.train_seconds + now - progress.epoch_start)
            yield StepRecord(
                epoch, s + 1, steps, st.global_step, loss_value,
                progress.images / max(now - progress.epoch_start, 1e-9), now - self._run_start,
                lr=float(self.optimizer.param_groups[0]["lr"]),
            )
            if self._early_validation_due(progress.step_seconds):
                early = self.early_validation(epoch)
                if early is not None:
                    yield early
        return progress

    def _early_validation_due(self, step_seconds: float) -> bool:
        """Whether the early estimate runs now: the first epoch has reached its step count (once per
        run: a resume past it, or a run that has one, does not redo it), the epoch's own validation
        is not next, and the budget still covers it, a step and that validation."""
        st, n = self.state, self.early_validation_steps
        return (n > 0 and self.distiller is None and st.epoch == 0 and n <= st.global_step
                and st.step_in_epoch < self.steps_per_epoch and "early_validation" not in st.history
                # (its cost bounded by a whole validation's)
                and not self._budget_exhausted(step_seconds, self._validation_seconds_estimate(step_seconds)))

    def early_validation(self, epoch: int) -> EarlyValidationRecord | None:
        """The early estimate: recalibrate the sampling weights' BatchNorm as an epoch's validation
        does (when set), then validate them on the first ``early_validation_images`` digits. Kept
        only in the history's "early_validation" (not its epochs), so best.pt, early stopping, the
        budget's validation estimate and a resume's position never see it. None when stopped."""
        st, images = self.state, min(self.early_validation_images, len(self.val_x))
        start = time.perf_counter()
        # (epoch -1: a recalibration seeded apart from the epochs', seed * 1000 + 31 + epoch)
        result = self._validation_pass(images) if self.recalibrate(-1) else None
        if result is None:
            return None
        record = EarlyValidationRecord(
            epoch, st.step_in_epoch, st.global_step, epoch - 1 + st.step_in_epoch / self.steps_per_epoch,
            result[0], images, len(self.val_x), time.perf_counter() - start)
        st.history["early_validation"] = {"epoch": record.position, "global_step": record.global_step,
                                          "val_loss": record.val_loss, "images": images, "seconds": record.seconds}
        return record

    def _kept(self) -> str:
        return f"; best epoch {self.state.best_epoch} kept" if self.state.best_epoch else ""

    def _stop_in_epoch(self, progress: "_EpochProgress", message: str) -> FinishedRecord:
        """A stop inside an epoch: last.pt keeps the position and the loss so far, for an exact resume."""
        self.state.train_seconds += time.perf_counter() - progress.epoch_start
        self.state.partial_loss_sum = float(progress.loss_sum)
        return self._finish("stopped", message + self._kept())

    def _end_epoch(self, epoch: int, progress: "_EpochProgress"):
        """Phase 2: validate ``epoch``, keep the best weights, write best.pt / history.json /
        last.pt, yield its EpochRecord. Returns True when the run ended here (a stop during
        validation, a non-finite validation loss, early stopping; the last epoch is left to
        ``run``'s completion)."""
        val_loss = self._validate(epoch)
        if val_loss is None:  # stopped during validation: resume re-runs it
            yield self._stop_in_epoch(progress, f"stopped at the end of epoch {epoch}, before its validation")
            return True
        record = self._close_epoch(epoch, progress, val_loss)
        early = record.epochs_without_improvement >= record.patience
        if not (early or record.epoch >= record.epochs):  # (the last epoch's files are _finish's)
            self.files.write(best=self._best_payload() if record.improved else None, history=self._history(),
                             last=self._payload(self._snapshot(), with_training_state=True))
        yield record
        if not math.isfinite(val_loss):
            yield self._finish("diverged", f"the validation loss became {val_loss} at epoch {epoch}; training stopped")
            return True
        if early:
            yield self._finish("early_stopped", f"stopped early at epoch {epoch}, best epoch {self.state.best_epoch} "
                               f"restored (validation loss {_format_loss(self.state.best_val_loss)})")
            return True
        return False

    def _close_epoch(self, epoch: int, progress: "_EpochProgress", val_loss: float) -> EpochRecord:
        """Book ``epoch`` as done: the position, the best weights, early stopping's count and the
        history; its EpochRecord."""
        st, cfg = self.state, self.config
        seconds = time.perf_counter() - progress.epoch_start
        st.train_seconds += seconds
        st.end_epoch(epoch)
        self.epoch_start_perm_state = self.perm_gen.get_state()
        improved = st.improve(val_loss, epoch, self._snapshot)
        st.epochs_without_improvement = 0 if improved else st.epochs_without_improvement + 1
        train_loss = self._mean_train_loss(progress)
        images_per_s = progress.images / max(seconds, 1e-9)
        st.history["epochs"].append({
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds,
            "images_per_s": images_per_s, "val_loss_by_t": self.last_val_by_t, "best_val_loss": st.best_val_loss,
            "improved": improved, "time": st.train_seconds,
        })
        return EpochRecord(
            epoch, cfg.epochs, train_loss, val_loss, seconds, images_per_s, st.best_val_loss, st.best_epoch,
            st.epochs_without_improvement, cfg.patience, improved,
            validation_seconds=self._last_validation_seconds or 0.0, val_loss_by_t=self.last_val_by_t,
        )

    def _mean_train_loss(self, progress: "_EpochProgress") -> float:
        """The epoch's mean training loss over every process's images."""
        train_loss = float(progress.loss_sum) / progress.n_local
        if self.distributed:
            t = torch.tensor([train_loss], device=self.device, dtype=torch.float64)
            torch.distributed.all_reduce(t)
            train_loss = float(t) / self.world_size
        return train_loss
