"""A training loop that is a jittable function.

Steps run inside one jitted `lax.scan` per chunk; minibatches are drawn inside the jit from
the step number (`batches.py`: epoch-wise shuffling or draws with replacement, O(batch) a
step); the host sees only the chunk's metrics, updates a progress bar, appends to
`metrics.jsonl`, evaluates on validation data, keeps the best model, checks for divergence and
writes checkpoints. When several processes train together (`initialize_distributed`), all
of them compute and only process 0 reads and writes files; a resumed state reaches the others
by broadcast, so they need no shared file system.
"""

import functools
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray, PyTree, Scalar
from tqdm import tqdm  # not tqdm.auto: it warns in notebooks without ipywidgets

from .batches import Batches, Sampling, num_samples
from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import append_metrics, truncate_metrics
from .parallel import auto_axes, axis_of, check_mesh, is_primary, local_copy, replicate, shard_batch

__all__ = ["FitResult", "TrainingDivergedError", "fit", "make_step"]

LossFn = Callable[[eqx.Module, PyTree, PRNGKeyArray], Scalar | tuple[Scalar, dict]]
EvalFn = Callable[[eqx.Module, PRNGKeyArray], dict[str, Scalar]]
_EVALUATE = 2**31 + 1  # fold_in tag of the evaluation keys (steps stay below 2**31)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf."""


class FitResult(eqx.Module):
    """What `fit` returns.

    - `model`, `opt_state`: the trained model and optimiser state at `step`;
    - `step`: the step reached (`steps`, or fewer after early stopping); `first_step`: where
      this call started (after a resume); `losses[i]`: the loss at step `first_step + i`;
    - `ema_model`: the exponential moving average of the parameters (`ema_decay`), or `None`;
    - `best_model`, `best_step`, `best_value`: the evaluated model (the EMA when there is one)
      with the best `best_metric` so far, its step and value (`None` without `best_metric`);
    - `stopped_early`: whether `patience` ran out;
    - `evaluations`: one dict per evaluation of this call, `{"step": s, "validation.<name>": v}`.
    """

    model: eqx.Module
    opt_state: optax.OptState
    step: int
    first_step: int
    losses: np.ndarray
    ema_model: eqx.Module | None = None
    best_model: eqx.Module | None = None
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    evaluations: tuple[dict, ...] = ()


def make_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
    axis_name: str | None = None,
) -> Callable:
    """One optimisation step, `step(model, opt_state, batch, key) -> (model, opt_state, loss,
    aux)`: value and gradient of `loss_fn(model, batch, key)` with respect to the model's
    floating-point arrays, then an optax update. Pure and jittable. With `axis_name` (inside
    `jax.shard_map` or `vmap` over that axis) the loss, metrics and gradients are averaged over
    it before the update, as data parallelism needs."""

    def loss_and_aux(model, batch, key):
        out = loss_fn(model, batch, key)
        return out if has_aux else (out, {})

    grad_fn = eqx.filter_value_and_grad(loss_and_aux, has_aux=True)

    def step(model, opt_state, batch, key):
        (loss, aux), grads = grad_fn(model, batch, key)
        if axis_name is not None:
            loss, aux, grads = jax.lax.pmean((loss, aux, grads), axis_name)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss, aux

    return step


class _Carry(NamedTuple):
    """What the scan carries from step to step."""

    params: PyTree
    opt_state: optax.OptState
    ema: PyTree | None  # the parameters' moving average, or None


def _parameter_step(loss_fn, optimizer, static, has_aux: bool, mesh, parallel: str):
    """`(params, opt_state, batch, key) -> (params, opt_state, loss, aux)`: `make_step` on
    the parameters, on one device or data-parallel over `mesh` (see `parallel.py`)."""
    axis = None if mesh is None or parallel == "compiler" else axis_of(mesh)
    step_fn = make_step(loss_fn, optimizer, has_aux=has_aux, axis_name=axis)

    def step(params, opt_state, batch, key):
        if axis is not None:  # shard i draws its randomness from fold_in(key, i)
            key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        elif mesh is not None and batch is not None:
            batch = shard_batch(batch, mesh)
        model, opt_state, loss, aux = step_fn(eqx.combine(params, static), opt_state, batch, key)
        return eqx.filter(model, eqx.is_inexact_array), opt_state, loss, aux

    if axis is None:
        return step
    replicated, split = PartitionSpec(), PartitionSpec(axis)
    return jax.shard_map(step, mesh=mesh, in_specs=(replicated, replicated, split, replicated),
                         out_specs=replicated, check_vma=False)  # fmt: skip


@eqx.filter_jit
def _run_chunk(carry, data, key, first, last, *, static, loss_fn, optimizer, batches,
               has_aux, ema_decay, length, mesh, parallel):  # fmt: skip
    """Steps `first, …, first + length - 1` in one `lax.scan`; steps from `last` on are
    skipped (`lax.cond`), so a final partial chunk reuses the compiled chunk. Module-level,
    with the loss, optimiser and sizes as static arguments, so that repeated `fit` calls with
    the same loss function and optimiser object reuse the compilation too."""
    step_fn = _parameter_step(loss_fn, optimizer, static, has_aux, mesh, parallel)

    def step(carry: _Carry, batch, loss_key):
        params, opt_state, loss, aux = step_fn(carry.params, carry.opt_state, batch, loss_key)
        ema = carry.ema
        if ema is not None:
            ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params)
        return _Carry(params, opt_state, ema), (loss, aux)

    traced_step = jax.jit(step)  # traced once for both eval_shape and the cond

    def body(carry, s):
        # The batch is drawn (and placed on the mesh) outside the `cond`: GSPMD gives a
        # conditional's outputs one device, and would gather a batch drawn inside it.
        batch_key, loss_key = jax.random.split(jax.random.fold_in(key, s))
        batch = batches.draw(data, s, key, batch_key)
        if mesh is not None and parallel == "compiler" and batch is not None:
            batch = shard_batch(batch, mesh)
        shapes = jax.eval_shape(traced_step, carry, batch, loss_key)[1]
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        return jax.lax.cond(s < last, traced_step, lambda carry, *_: (carry, zeros), carry, batch,
                            loss_key)  # fmt: skip

    carry, out = jax.lax.scan(body, carry, first + jnp.arange(length))
    if mesh is not None:  # the state stays replicated: every process holds all of it
        carry = jax.lax.with_sharding_constraint(carry, NamedSharding(mesh, PartitionSpec()))
    return carry, out


class _Progress(NamedTuple):
    """What the checkpoint holds beside the carry: the step and the early-stopping record."""

    key_data: Array
    step: Array
    best_value: Array  # ±inf before the first evaluation
    best_step: Array  # -1 before the first evaluation
    bad_evaluations: Array  # evaluations since the last improvement


class _Options(NamedTuple):
    """`fit`'s evaluation and early-stopping options, checked."""

    eval_fn: EvalFn | None
    eval_every: int
    best_metric: str | None
    mode: str
    patience: int | None
    on_evaluation: Callable[[int, dict], None] | None


def _key_data(key: PRNGKeyArray) -> Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _check_arguments(data, batch_size, steps, chunk, checkpoint_every, resume, run_dir,
                     options: _Options, ema_decay) -> int | None:  # fmt: skip
    """`ValueError`s naming the bad argument; returns the number of samples."""
    counts = [("steps", steps, 0), ("chunk", chunk, 1), ("checkpoint_every", checkpoint_every, 1),
              ("eval_every", options.eval_every, 1)]  # fmt: skip
    if options.patience is not None:
        counts.append(("patience", options.patience, 1))
    for name, value, low in counts:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"fit: {name} must be an int >= {low}, got {value!r}")
    if data is None and batch_size is not None:
        raise ValueError("fit: data=None (the loss draws its own data) needs batch_size=None")
    n = None if data is None else num_samples(data)
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise ValueError(
            f"fit: batch_size must be an int in [1, {n}] (the data size), got {batch_size!r}"
        )
    if resume and run_dir is None:
        raise ValueError("fit: resume=True needs a run_dir to resume from")
    if options.mode not in ("min", "max"):
        raise ValueError(f"fit: mode must be 'min' or 'max', got {options.mode!r}")
    if options.eval_fn is None and (options.best_metric or options.patience):
        raise ValueError("fit: best_metric and patience need eval_fn (they read its metrics)")
    if options.patience is not None and options.best_metric is None:
        raise ValueError("fit: patience needs best_metric (the metric that must improve)")
    if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
        raise ValueError(f"fit: ema_decay must be in [0, 1), got {ema_decay!r}")
    return n


def _restore(ckpt_dir, metrics_path, carry: _Carry, progress: _Progress, resume: bool):
    """The saved carry and progress when resuming from `ckpt_dir` (the metrics log truncated to
    the checkpoint's step); otherwise the fresh ones, with an empty log."""
    if ckpt_dir is None:
        return carry, progress
    like = (carry.params, carry.opt_state, carry.ema, progress)
    saved = load_checkpoint(ckpt_dir, like) if resume else None
    if saved is None:
        metrics_path.write_text("")
        return carry, progress
    params, opt_state, ema, saved_progress = saved
    if not np.array_equal(np.asarray(saved_progress.key_data), np.asarray(progress.key_data)):
        raise ValueError(
            f"fit: the key differs from the one in {ckpt_dir}; resume with the same seed as "
            "the interrupted run"
        )
    truncate_metrics(metrics_path, int(saved_progress.step))
    return carry._replace(params=params, opt_state=opt_state, ema=ema), saved_progress


def _from_process_zero(carry: _Carry, progress: _Progress, best, model):
    """Several processes, resuming: process 0's restored state (only it reads the run
    directory) on every process, so that all continue from the same step."""
    from jax.experimental import multihost_utils

    carry, progress = jax.tree.map(
        jnp.asarray, multihost_utils.broadcast_one_to_all((carry, progress))
    )
    if int(progress.best_step) >= 0:
        params, rest = eqx.partition(best if best is not None else model, eqx.is_array)
        best = eqx.combine(jax.tree.map(jnp.asarray, multihost_utils.broadcast_one_to_all(params)),
                           rest)  # fmt: skip
    return carry, progress, best


def _check_losses(losses: np.ndarray, step: int, ckpt_dir, last_ckpt) -> None:
    bad = ~np.isfinite(losses)
    if bad.any():
        where = (
            f"{ckpt_dir} (step {last_ckpt})"
            if last_ckpt is not None
            else "none (no checkpoint was written before it)"
        )
        raise TrainingDivergedError(
            f"fit: the loss became {losses[bad.argmax()]} at step {step + int(bad.argmax())}; "
            f"last good checkpoint: {where}"
        )


def _rows(step: int, losses: np.ndarray, aux: dict, evaluation: dict | None):
    """One metrics row per step of a chunk; an evaluation joins the row of its last step."""
    for i, loss in enumerate(losses):
        row = {"step": step + i, "loss": loss, **{k: v[i] for k, v in aux.items()}}
        if evaluation is not None and i == len(losses) - 1:
            row.update(evaluation)
        yield row


def _evaluate(options: _Options, model, key: PRNGKeyArray, step: int) -> dict:
    """`{"validation.<name>": value}` of `eval_fn` at `step` (its key from the step, so a
    resumed run evaluates alike)."""
    key = jax.random.fold_in(jax.random.fold_in(key, _EVALUATE), step)
    values = eqx.filter_jit(options.eval_fn)(model, key)
    if not isinstance(values, dict) or not values:
        raise TypeError(f"fit: eval_fn must return a non-empty dict of scalars, got {values!r}")
    evaluation = {f"validation.{name}": float(value) for name, value in values.items()}
    if options.best_metric is not None and options.best_metric not in evaluation:
        raise ValueError(
            f"fit: best_metric={options.best_metric!r} is not among eval_fn's metrics "
            f"{sorted(evaluation)}"
        )
    return evaluation


def _improves(options: _Options, value: float, progress: _Progress) -> bool:
    best = float(progress.best_value)
    return value < best if options.mode == "min" else value > best


def fit(
    loss_fn: LossFn,
    model: eqx.Module,
    data: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    batch_size: int | None,
    key: PRNGKeyArray,
    sampling: Sampling = "epoch",
    chunk: int = 100,
    has_aux: bool = False,
    eval_fn: EvalFn | None = None,
    eval_every: int = 1,
    best_metric: str | None = None,
    mode: Literal["min", "max"] = "min",
    patience: int | None = None,
    on_evaluation: Callable[[int, dict], None] | None = None,
    ema_decay: float | None = None,
    mesh: Mesh | None = None,
    parallel: Literal["compiler", "shard_map"] = "compiler",
    run_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = True,
    opt_state: Any = None,
) -> FitResult:
    """Minimise `loss_fn(model, batch, key)` over minibatches of `data`.

    **Arguments:**

    - `loss_fn`: `(model, batch, key) -> loss`, or `(loss, metrics)` with `has_aux=True`
      where `metrics` is a dict of scalars logged with the loss.
    - `model`: an Equinox module; its floating-point arrays are trained.
    - `data`: a pytree of arrays with a common leading sample axis; or `None` (with
      `batch_size=None`) when the loss draws fresh data from its key every step, as
      generative models on a sampler do (the loss then gets `batch=None`).
    - `optimizer`: an optax `GradientTransformation`.
    - `steps`: total number of steps (a resumed run continues up to it).
    - `batch_size`: samples per step, drawn inside the jit; `None` uses all the data every
      step. `sampling`: `"epoch"` (a fresh permutation per epoch, cut into consecutive
      batches: every sample once per epoch) or `"with_replacement"`; both O(batch) per step
      (`jaxdyn.train.fit_batch` reproduces a step's batch).
    - `key`: step `s` uses `fold_in(key, s)` (split into the batch's and the loss's keys) and
      epoch `e` its permutation from `key` and `e`, so results do not depend on the chunking.
    - `chunk`: steps per jitted `lax.scan`; the host sees metrics once per chunk.
    - `eval_fn`: `(model, key) -> {name: scalar}`, jitted, on validation data; run every
      `eval_every` chunks and after the last step, on the EMA model when `ema_decay` is set.
      Its metrics are logged as `validation.<name>` (in `metrics.jsonl`, on the row of the
      step they follow, and on the progress bar).
    - `best_metric` (e.g. `"validation.loss"`), `mode` (`"min"` or `"max"`): keep the
      evaluated model with the best value (`FitResult.best_model`, and `run_dir/best/`, which
      `load_checkpoint(run_dir / "best", model)` reads back). `patience`: stop after that many
      evaluations without improvement. `on_evaluation(step, metrics)`: called on the host
      after each evaluation (and that chunk's checkpoint); it may raise to stop the run
      (a sweep's pruning), which keeps the checkpoint for a resume.
    - `ema_decay`: keep `ema ← d ema + (1 − d) params` after every step, in the scan carry
      and the checkpoint (`FitResult.ema_model`).
    - `mesh`: data parallelism over a one-dimensional `jax.sharding.Mesh` (e.g.
      `jax.make_mesh((n,), ("data",))`): the batch is split over its devices, parameters and
      optimiser state replicated. `parallel="compiler"` (one program, partitioned by XLA; the
      numbers of one device) or `"shard_map"` (a program per device, gradients averaged; a
      differentiated Diffrax solve does not trace under it with JAX 0.10, diffrax #735).
      `data_mesh(devices)` builds one. Several processes (`initialize_distributed`) call
      `fit` alike, with the same data, on a mesh over all their devices; each gets the trained
      state as local arrays. See `jaxdyn/train/parallel.py`.
    - `run_dir`: where `metrics.jsonl`, `checkpoint/` and `best/` are written (nothing if
      `None`; by process 0 only when several processes train); `checkpoint_every`: a
      checkpoint every this many chunks, and at the end.
    - `resume`: continue from `run_dir/checkpoint` if there is one. The result is bitwise
      identical to an uninterrupted run with the same arguments (early stopping included).
    - `progress`: show a tqdm bar with the loss. `opt_state`: an initial optimiser state
      (default `optimizer.init(params)`).

    **Raises:** `TrainingDivergedError` naming the step where the loss became NaN/Inf and
    the last good checkpoint.
    """
    options = _Options(eval_fn, eval_every, best_metric, mode, patience, on_evaluation)
    n = _check_arguments(data, batch_size, steps, chunk, checkpoint_every, resume, run_dir,
                         options, ema_decay)  # fmt: skip
    if mesh is not None:
        check_mesh(mesh, parallel, batch_size, n)
        mesh = auto_axes(mesh)
    batches = Batches(n or 0, batch_size, sampling)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    ema = params if ema_decay is not None else None
    worst = math.inf if mode == "min" else -math.inf
    progress_ = _Progress(_key_data(key), jnp.asarray(0), jnp.asarray(worst), jnp.asarray(-1),
                          jnp.asarray(0))  # fmt: skip
    paths = _RunPaths.of(run_dir if is_primary() else None)  # one process writes files
    fresh = _Carry(params, opt_state, ema)
    carry, progress_ = _restore(paths.checkpoint, paths.metrics, fresh, progress_, resume)
    best = _load_best(paths, model, progress_)
    if resume and jax.process_count() > 1:
        carry, progress_, best = _from_process_zero(carry, progress_, best, model)
    start = int(progress_.step)
    if mesh is not None:
        carry, data = replicate((carry, data), mesh)
    run = _Run(loss_fn, data, key, steps, chunk, has_aux, ema_decay, checkpoint_every, static,
               optimizer, batches, options, paths, mesh, parallel)  # fmt: skip
    return run.train(carry, progress_, best, start, progress and is_primary())


class _RunPaths(NamedTuple):
    checkpoint: Path | None
    metrics: Path | None
    best: Path | None

    @classmethod
    def of(cls, run_dir) -> "_RunPaths":
        if run_dir is None:
            return cls(None, None, None)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir / "checkpoint", run_dir / "metrics.jsonl", run_dir / "best")


def _load_best(paths: _RunPaths, model, progress: _Progress):
    """The best model saved by the run being resumed, if it has one."""
    if paths.best is None or int(progress.best_step) < 0:
        return None
    return load_checkpoint(paths.best, model)


_SHARD_MAP_SOLVE = (
    "fit(parallel='shard_map') could not trace the training step: a Diffrax solve "
    "differentiated inside jax.shard_map does not trace with JAX {} (adjoint='checkpoint' "
    "fails on any number of devices, every adjoint on two or more; diffrax issue #735). "
    "Use parallel='compiler' (config: train.parallel=compiler); the error above is JAX's."
)
# What equinox raises in the checkpoint adjoint's backward pass (`fit` runs with check_vma=False).
_CLOSURE_MISMATCH = "Closure-converted function called with different dynamic arguments"


def _is_shard_map_solve_error(error: Exception) -> bool:
    """The tracing failures of a Diffrax solve under `shard_map` on JAX 0.10 (measured): an
    equinox closure-conversion mismatch in the checkpointed loop's backward pass on one
    device, an assertion inside JAX's sharding propagation on two or more."""
    if isinstance(error, AssertionError):
        frames = traceback.extract_tb(error.__traceback__)
        return bool(frames) and f"{os.sep}jax{os.sep}" in frames[-1].filename
    return isinstance(error, ValueError) and _CLOSURE_MISMATCH in str(error)


class _Run(NamedTuple):
    """One call of `fit`: its fixed inputs, and the host loop over chunks (`train`)."""

    loss_fn: LossFn
    data: PyTree
    key: PRNGKeyArray
    steps: int
    chunk: int
    has_aux: bool
    ema_decay: float | None
    checkpoint_every: int
    static: PyTree
    optimizer: optax.GradientTransformation
    batches: Batches
    options: _Options
    paths: _RunPaths
    mesh: Mesh | None
    parallel: str

    def train(self, carry: _Carry, progress: _Progress, best, start: int, show: bool):
        losses, evaluations = [], []
        step, last_ckpt = start, (start if start > 0 else None)
        stopped = self._patience_spent(progress)
        bar = tqdm(total=self.steps, initial=start, disable=not show, file=sys.stderr,
                   desc="fit", dynamic_ncols=True)  # fmt: skip
        try:
            while step < self.steps and not stopped:
                length = min(self.chunk, self.steps - step)
                new_carry, (chunk_losses, aux) = self._chunk(carry, step)
                chunk_losses = np.asarray(chunk_losses)[:length]
                _check_losses(chunk_losses, step, self.paths.checkpoint, last_ckpt)
                carry, step = new_carry, step + length
                # Chunks counted from step 0, not from this call's first: a resumed run
                # evaluates and checkpoints at the steps an uninterrupted one does.
                chunks = -(-step // self.chunk)
                evaluation = None
                if self.options.eval_fn is not None and (
                    chunks % self.options.eval_every == 0 or step == self.steps
                ):
                    evaluation, progress, best = self._evaluate(carry, progress, best, step)
                    evaluations.append({"step": step, **evaluation})
                    stopped = self._patience_spent(progress)
                progress = progress._replace(step=jnp.asarray(step))
                self._log(step - length, chunk_losses, aux, evaluation, length)
                losses.append(chunk_losses)
                if self.paths.checkpoint is not None and (
                    chunks % self.checkpoint_every == 0 or step == self.steps or stopped
                ):
                    state = (carry.params, carry.opt_state, carry.ema, progress)
                    save_checkpoint(self.paths.checkpoint, state, step)
                    last_ckpt = step
                bar.update(length)
                bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}", **_short(evaluation))
                if evaluation is not None and self.options.on_evaluation is not None:
                    self.options.on_evaluation(step, evaluation)
        finally:
            bar.close()
        return self._result(carry, progress, best, start, step, losses, evaluations, stopped)

    def _chunk(self, carry: _Carry, step: int):
        call = functools.partial(
            _run_chunk, carry, self.data, self.key, jnp.asarray(step), jnp.asarray(self.steps),
            static=self.static, loss_fn=self.loss_fn, optimizer=self.optimizer,
            batches=self.batches, has_aux=self.has_aux, ema_decay=self.ema_decay,
            length=self.chunk, mesh=self.mesh, parallel=self.parallel,
        )  # fmt: skip
        if self.mesh is None:
            return call()
        with jax.set_mesh(self.mesh):  # a loss may shard its own draws with P("data")
            try:
                return call()
            except (AssertionError, ValueError) as error:
                if self.parallel == "shard_map" and _is_shard_map_solve_error(error):
                    raise RuntimeError(_SHARD_MAP_SOLVE.format(jax.__version__)) from error
                raise

    def _evaluated_model(self, carry: _Carry):
        params = carry.params if carry.ema is None else carry.ema
        return eqx.combine(local_copy(params), self.static)

    def _evaluate(self, carry: _Carry, progress: _Progress, best, step: int):
        model = self._evaluated_model(carry)
        evaluation = _evaluate(self.options, model, self.key, step)
        if self.options.best_metric is None:
            return evaluation, progress, best
        value = evaluation[self.options.best_metric]
        if _improves(self.options, value, progress):
            progress = progress._replace(best_value=jnp.asarray(value), best_step=jnp.asarray(step),
                                         bad_evaluations=jnp.asarray(0))  # fmt: skip
            if self.paths.best is not None:
                save_checkpoint(self.paths.best, model, step)
            return evaluation, progress, model
        return evaluation, progress._replace(bad_evaluations=progress.bad_evaluations + 1), best

    def _patience_spent(self, progress: _Progress) -> bool:
        patience = self.options.patience
        return patience is not None and int(progress.bad_evaluations) >= patience

    def _log(self, first: int, losses, aux, evaluation, length: int) -> None:
        if self.paths.metrics is not None:
            aux = {name: np.asarray(value)[:length] for name, value in aux.items()}
            append_metrics(self.paths.metrics, _rows(first, losses, aux, evaluation))

    def _result(self, carry, progress, best, start, step, losses, evaluations, stopped):
        tracked = self.options.best_metric is not None and int(progress.best_step) >= 0
        carry = local_copy(carry)  # several processes: this process's copy of the state
        return FitResult(
            model=eqx.combine(carry.params, self.static),
            opt_state=carry.opt_state,
            step=step,
            first_step=start,
            losses=np.concatenate(losses) if losses else np.zeros((0,)),
            ema_model=None if carry.ema is None else eqx.combine(carry.ema, self.static),
            best_model=best if tracked else None,
            best_step=int(progress.best_step) if tracked else None,
            best_value=float(progress.best_value) if tracked else None,
            stopped_early=stopped,
            evaluations=tuple(evaluations),
        )


def _short(evaluation: dict | None) -> dict:
    """The validation metrics for the progress bar (`val_loss=…`)."""
    if not evaluation:
        return {}
    return {f"val_{k.removeprefix('validation.')}": f"{v:.4g}" for k, v in evaluation.items()}
