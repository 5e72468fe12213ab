"""A training loop that is a jittable function.

Steps run inside one jitted `lax.scan` per chunk; minibatches are drawn inside the jit from
the key; the host sees only the chunk's metrics, updates a progress bar, appends to
`metrics.jsonl`, checks for divergence and writes checkpoints.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree, Scalar
from tqdm import tqdm  # not tqdm.auto: it warns in notebooks without ipywidgets

from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import append_metrics, truncate_metrics

__all__ = ["FitResult", "TrainingDivergedError", "fit", "make_step", "sample_batch"]

LossFn = Callable[[eqx.Module, PyTree, PRNGKeyArray], Scalar | tuple[Scalar, dict]]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf."""


class FitResult(eqx.Module):
    """What `fit` returns: the trained model, the optimiser state, the step reached and the
    per-step losses of this call (`losses[i]` is the loss at step `first_step + i`)."""

    model: eqx.Module
    opt_state: optax.OptState
    step: int
    first_step: int
    losses: np.ndarray


def make_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation, *, has_aux: bool = False
) -> Callable:
    """One optimisation step, `step(model, opt_state, batch, key) -> (model, opt_state, loss,
    aux)`: value and gradient of `loss_fn(model, batch, key)` with respect to the model's
    floating-point arrays, then an optax update. Pure and jittable."""

    def loss_and_aux(model, batch, key):
        out = loss_fn(model, batch, key)
        return out if has_aux else (out, {})

    grad_fn = eqx.filter_value_and_grad(loss_and_aux, has_aux=True)

    def step(model, opt_state, batch, key):
        (loss, aux), grads = grad_fn(model, batch, key)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss, aux

    return step


def _num_samples(data: PyTree) -> int:
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(data)}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(
            "data must be a pytree of arrays sharing a leading sample axis; got shapes "
            f"{jax.tree.map(jnp.shape, data)}"
        )
    return sizes.pop()


def sample_batch(data: PyTree, batch_size: int | None, key: PRNGKeyArray) -> PyTree:
    """A minibatch of `batch_size` samples drawn without replacement (all data if `None`)."""
    if batch_size is None:
        return data
    n = _num_samples(data)
    index = jax.random.choice(key, n, (batch_size,), replace=False)
    return jax.tree.map(lambda x: x[index], data)


def _key_data(key: PRNGKeyArray) -> Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


@eqx.filter_jit
def _run_chunk(params, opt_state, data, key, first, last, *, static, loss_fn, optimizer,
               batch_size, has_aux, length):  # fmt: skip
    """Steps `first, …, first + length - 1` in one `lax.scan`; steps from `last` on are
    skipped (`lax.cond`), so a final partial chunk reuses the compiled chunk. Module-level,
    with the loss, optimiser and sizes as static arguments, so that repeated `fit` calls with
    the same loss function and optimiser object reuse the compilation too."""
    step_fn = make_step(loss_fn, optimizer, has_aux=has_aux)

    def step(carry, s):
        params, opt_state = carry
        batch_key, loss_key = jax.random.split(jax.random.fold_in(key, s))
        batch = sample_batch(data, batch_size, batch_key)
        model = eqx.combine(params, static)
        model, opt_state, loss, aux = step_fn(model, opt_state, batch, loss_key)
        return (eqx.filter(model, eqx.is_inexact_array), opt_state), (loss, aux)

    def body(carry, s):
        shapes = jax.eval_shape(step, carry, s)[1]
        skip = lambda carry, s: (carry, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))  # noqa: E731
        return jax.lax.cond(s < last, step, skip, carry, s)

    return jax.lax.scan(body, (params, opt_state), first + jnp.arange(length))


def fit(
    loss_fn: LossFn,
    model: eqx.Module,
    data: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    batch_size: int | None,
    key: PRNGKeyArray,
    chunk: int = 100,
    has_aux: bool = False,
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
    - `batch_size`: samples per step, drawn without replacement inside the jit; `None` uses
      all the data every step.
    - `key`: step `s` uses `fold_in(key, s)`, so results do not depend on the chunking.
    - `chunk`: steps per jitted `lax.scan`; the host sees metrics once per chunk.
    - `run_dir`: where `metrics.jsonl` and `checkpoint/` are written (nothing if `None`).
    - `checkpoint_every`: write a checkpoint every this many chunks, and at the end.
    - `resume`: continue from `run_dir/checkpoint` if there is one. The result is bitwise
      identical to an uninterrupted run with the same arguments.
    - `progress`: show a tqdm bar with the loss.
    - `opt_state`: an initial optimiser state (default `optimizer.init(params)`).

    **Raises:** `TrainingDivergedError` naming the step where the loss became NaN/Inf and
    the last good checkpoint.
    """
    for name, value, low in (
        ("steps", steps, 0),
        ("chunk", chunk, 1),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"fit: {name} must be an int >= {low}, got {value!r}")
    if data is None and batch_size is not None:
        raise ValueError("fit: data=None (the loss draws its own data) needs batch_size=None")
    n = None if data is None else _num_samples(data)
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise ValueError(
            f"fit: batch_size must be an int in [1, {n}] (the data size), got {batch_size!r}"
        )
    if resume and run_dir is None:
        raise ValueError("fit: resume=True needs a run_dir to resume from")

    params, static = eqx.partition(model, eqx.is_inexact_array)
    if opt_state is None:
        opt_state = optimizer.init(params)
    key_data = _key_data(key)
    start = 0
    ckpt_dir = metrics_path = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir, metrics_path = run_dir / "checkpoint", run_dir / "metrics.jsonl"
        like = (params, opt_state, key_data, jnp.asarray(0))
        saved = load_checkpoint(ckpt_dir, like) if resume else None
        if saved is not None:
            params, opt_state, saved_key, saved_step = saved
            if not np.array_equal(np.asarray(saved_key), np.asarray(key_data)):
                raise ValueError(
                    f"fit: the key differs from the one in {ckpt_dir}; resume "
                    "with the same seed as the interrupted run"
                )
            start = int(saved_step)
            truncate_metrics(metrics_path, start)
        else:
            metrics_path.write_text("")

    losses, chunks, last_ckpt = [], 0, (start if start > 0 else None)
    bar = tqdm(
        total=steps,
        initial=start,
        disable=not progress,
        file=sys.stderr,
        desc="fit",
        dynamic_ncols=True,
    )
    step = start
    try:
        while step < steps:
            length = min(chunk, steps - step)
            (new_params, new_opt_state), (chunk_losses, aux) = _run_chunk(
                params, opt_state, data, key, jnp.asarray(step), jnp.asarray(steps),
                static=static, loss_fn=loss_fn, optimizer=optimizer, batch_size=batch_size,
                has_aux=has_aux, length=chunk,
            )  # fmt: skip
            chunk_losses = np.asarray(chunk_losses)[:length]
            bad = ~np.isfinite(chunk_losses)
            if bad.any():
                where = (
                    f"{ckpt_dir} (step {last_ckpt})"
                    if last_ckpt is not None
                    else "none (no checkpoint was written before it)"
                )
                raise TrainingDivergedError(
                    f"fit: the loss became {chunk_losses[bad.argmax()]} at step "
                    f"{step + int(bad.argmax())}; last good checkpoint: {where}"
                )
            params, opt_state = new_params, new_opt_state
            if metrics_path is not None:
                aux = {name: np.asarray(value)[:length] for name, value in aux.items()}
                append_metrics(
                    metrics_path,
                    (
                        {
                            "step": step + i,
                            "loss": chunk_losses[i],
                            **{k: v[i] for k, v in aux.items()},
                        }
                        for i in range(length)
                    ),
                )
            losses.append(chunk_losses)
            step += length
            chunks += 1
            if ckpt_dir is not None and (chunks % checkpoint_every == 0 or step == steps):
                save_checkpoint(ckpt_dir, (params, opt_state, key_data, jnp.asarray(step)), step)
                last_ckpt = step
            bar.update(length)
            bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")
    finally:
        bar.close()
    return FitResult(
        model=eqx.combine(params, static),
        opt_state=opt_state,
        step=step,
        first_step=start,
        losses=np.concatenate(losses) if losses else np.zeros((0,)),
    )
