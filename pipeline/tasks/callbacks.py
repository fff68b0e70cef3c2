"""The train stage's Lightning callbacks: real-token throughput, progress lines for log files, best.ckpt as
weights only, the atomic last.ckpt with the RNG state, and stopping cleanly (checkpoint saved) on SIGTERM,
Ctrl-C or a dead parent.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pipeline import paths
from pipeline.artifacts import replace_durably, temp_path

EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells and schedulers expect of a terminated process
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
PARENT_PID = os.getppid()  # what started this process (dvc, a shell): training stops when it dies


class TokenThroughput(Callback):
    """Counts real (unpadded) training tokens and the wall time spent in training batches, and logs
    `train/tokens_per_s` over the batches since the last log (every trainer.log_every_n_steps, like
    the loss). Only the token count is checkpointed (a time would make last.ckpt differ on every run):
    a resumed run's tokens/s covers this process."""

    METRIC = "train/tokens_per_s"

    def __init__(self):
        self.tokens, self.seconds, self._t0 = 0, 0.0, 0.0
        self._window = [0, 0.0]  # tokens, seconds since the last log

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        seconds = time.perf_counter() - self._t0
        tokens = int(batch["mask"].sum()) + int(batch["tgt_mask"].sum() if "tgt_mask" in batch else 0)
        self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds
        self._window = [self._window[0] + tokens, self._window[1] + seconds]
        # Lightning's own cadence (what LearningRateMonitor checks), so the series shares the loss's steps
        if trainer._logger_connector.should_update_logs and self._window[1] > 0:
            trainer._logger_connector.log_metrics({self.METRIC: self._window[0] / self._window[1]})
            self._window = [0, 0.0]

    def state_dict(self) -> dict:
        return {"tokens": self.tokens}

    def load_state_dict(self, state: dict) -> None:
        self.tokens = state["tokens"]


class ProgressLines(Callback):
    """One line every `every_s` seconds of training (step, epoch, loss, tokens/s), so a log file shows a long
    stage moving: under DVC stdout is a pipe and Lightning's progress bar shows nothing there."""

    def __init__(self, name: str, throughput: TokenThroughput, every_s: float = 30.0):
        self.name, self.throughput, self.every_s = name, throughput, every_s
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now - self._last < self.every_s or not trainer.is_global_zero:
            return
        self._last = now
        total = trainer.estimated_stepping_batches
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        rate = self.throughput.tokens / max(self.throughput.seconds, 1e-9)
        print(f"[train] {self.name}: step {trainer.global_step}/{total if total != float('inf') else '?'}"
              + (f", loss {float(loss):.3f}" if loss is not None else "") + f", {rate:,.0f} tok/s", flush=True)


class LastCheckpoint(Callback):
    """Writes last.ckpt (atomically: temp file + rename) at the start of every n-th step, when the
    previous step and any validation after it are complete, so the loop counters, the sampler
    position and the RNG state agree. It is the resumable state only (logs/, not a DVC output): a
    resumed run's loop counters differ from an uninterrupted run's, so nothing DVC hashes holds them.

    It carries the RNG state (dropout masks) and puts it back at the first step of a resumed run,
    not when the checkpoint is loaded: creating the epoch's DataLoader iterator draws from the
    global generator, which a run that never stopped did before the checkpoint was taken."""

    def __init__(self, path: Path, every_n_steps: int, fingerprint: dict):
        self.path, self.every, self.fingerprint = path, every_n_steps, fingerprint
        self.pending_rng = None

    def save(self, trainer: L.Trainer) -> None:
        save_checkpoint(trainer, self.path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.pending_rng is not None:
            set_rng_state(self.pending_rng)
            self.pending_rng = None
        if trainer.global_step and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception):
        # SIGTERM, or Ctrl-C / a dead parent (GracefulStop): before teardown, the state is still whole
        if isinstance(exception, SIGTERMException):
            self.save(trainer)

    def state_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.pending_rng = state.get("rng")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        # ModelCheckpoint keeps absolute paths: stored relative to the project, a moved or copied
        # project resumes too; made absolute again before it is restored
        _map_checkpoint_paths(checkpoint, paths.relative)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        _map_checkpoint_paths(checkpoint, lambda p: str(paths.ROOT / p))


def save_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """trainer.save_checkpoint (the whole training state) into a temp file of this process, renamed onto
    path once on disk: a killed or concurrent writer never leaves half a checkpoint. Every rank takes
    part; rank 0 writes."""
    tmp = temp_path(path)
    try:
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# What evaluate and measure load from best.ckpt (LightningModule.load_from_checkpoint): the weights,
# the hyperparameters that rebuild the module, Lightning's version (its checkpoint migration) and the
# epoch and step of the weights. Not the loop counters or the data module's position, which differ
# between a resumed run and one that never stopped.
WEIGHTS_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name",
                "hyper_parameters", "hparams_type")


def save_weights(trainer: L.Trainer, path: Path) -> None:
    """best.ckpt: WEIGHTS_KEYS of a weights-only checkpoint, atomically. The same weights and config give
    the same bytes, whether or not the run was interrupted (its hash is in dvc.lock)."""
    checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=True)
    checkpoint = {k: checkpoint[k] for k in WEIGHTS_KEYS if k in checkpoint}
    tmp = temp_path(path)
    try:
        trainer.strategy.save_checkpoint(checkpoint, tmp)  # rank 0 writes
        trainer.strategy.barrier("save_weights")
        if trainer.is_global_zero:
            replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class BestWeights(ModelCheckpoint):
    """ModelCheckpoint (the best validation step's file, tracked through a resume) writing with
    save_weights: weights and plain metadata only."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        save_weights(trainer, Path(filepath))
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath


class GracefulStop(Callback):
    """Stops training as SIGTERM does (Lightning ends the current step, LastCheckpoint saves last.ckpt,
    the command exits non-zero and continues when run again) on Ctrl-C, and when the process that
    started this one dies: `dvc repro` killed would otherwise leave its trainer running, orphaned. The
    kernel signals a parent's death (Linux: PR_SET_PDEATHSIG); a changed parent pid catches the death
    the signal cannot, one before training began. A second Ctrl-C stops at once, without saving."""

    def __init__(self):
        self.cause: str | None = None
        self._sigint = None

    def on_train_start(self, trainer, pl_module):  # Lightning's SIGTERM handler is in place until fit ends
        set_parent_death_signal(signal.SIGTERM)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored: a background job; it stays so
            self._sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if os.getppid() != PARENT_PID and not trainer.received_sigterm:
            self._stop("its parent process ended")

    def _on_sigint(self, signum, frame):
        if self.cause == "Ctrl-C":
            signal.default_int_handler(signum, frame)
        self._stop("Ctrl-C")

    def _stop(self, cause: str) -> None:
        self.cause = self.cause or cause
        sigterm = signal.getsignal(signal.SIGTERM)  # Lightning's: stop at the end of the current step
        if not callable(sigterm):
            raise KeyboardInterrupt
        sigterm(signal.SIGTERM, None)

    def restore(self) -> None:
        """After fit: Ctrl-C and a parent's death act as they did before."""
        set_parent_death_signal(0)
        if self._sigint is not None:
            signal.signal(signal.SIGINT, self._sigint)
            self._sigint = None

    def stopped(self) -> tuple[str, int]:
        """What stopped training, as the message says it, and the exit status."""
        if self.cause is None and os.getppid() != PARENT_PID:
            self.cause = "its parent process ended"  # the kernel's SIGTERM
        if self.cause == "Ctrl-C":
            return "interrupted (Ctrl-C)", EXIT_INTERRUPTED
        return f"terminated ({self.cause or 'SIGTERM'})", EXIT_TERMINATED


def set_parent_death_signal(signum: int) -> None:
    """Linux: the kernel sends `signum` to this process when the thread that started it ends (0: none).
    dvc starts stage commands from its main thread, so that is when dvc ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)


CHECKPOINT_PATH_KEYS = ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path")


def _map_checkpoint_paths(checkpoint: dict, fn) -> None:
    """fn over the paths in every ModelCheckpoint state of a Lightning checkpoint (empty ones stay)."""
    for key, state in checkpoint.get("callbacks", {}).items():
        if not key.startswith(("ModelCheckpoint", "BestWeights")):
            continue
        for field in CHECKPOINT_PATH_KEYS:
            if state.get(field):
                state[field] = fn(state[field])
        if state.get("best_k_models"):
            state["best_k_models"] = {fn(p): score for p, score in state["best_k_models"].items()}


def rng_state() -> dict:
    """The global generators, as plain types (a checkpoint loads with torch.load(weights_only=True))."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [name, keys.tolist(), pos, has_gauss, gauss]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
