"""Scores of generated time series against real ones: TimeGAN's discriminative and predictive
scores (Yoon, Jarrett & van der Schaar 2019, "Time-series Generative Adversarial Networks",
NeurIPS), the protocol KoVAE and most time-series generation papers report.

Both train a small post-hoc GRU (`hidden = channels // 2`, at least 1) with Adam at rate
1e-3 on batches of 128, inside one jitted `lax.scan`:

- discriminative: a classifier real-vs-synthetic, trained on 80% of each set (balanced
  batches) and scored on the other 20%: `|accuracy − 0.5|` (0: indistinguishable);
- predictive ("train on synthetic, test on real"): a GRU reads the first `channels − 1`
  channels up to `t` and predicts the last channel at `t + 1` (through a sigmoid: data in
  `[0, 1]`), trained by the L1 loss on the synthetic series, scored by the mean absolute error
  on the real ones.

The GRU is built from Equinox here (metrics sit below the model layer).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_count

__all__ = ["discriminative_score", "predictive_score"]


class _GRUHead(eqx.Module):
    cell: eqx.nn.GRUCell
    head: eqx.nn.Linear

    def __init__(self, inputs: int, hidden: int, *, key: PRNGKeyArray):
        kc, kh = jax.random.split(key)
        self.cell = eqx.nn.GRUCell(inputs, hidden, key=kc)
        self.head = eqx.nn.Linear(hidden, 1, key=kh)

    def states(self, xs: Array) -> Array:
        def step(h, x):
            h = self.cell(x, h)
            return h, h

        xs = xs.astype(self.cell.weight_hh.dtype)
        return jax.lax.scan(step, jnp.zeros(self.cell.hidden_size, xs.dtype), xs)[1]


def _check_pair(real: ArrayLike, synthetic: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    for name, x in (("real", real), ("synthetic", synthetic)):
        if x.ndim != 3 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
            raise ValueError(
                f"{name} must be finite series of shape (samples, time >= 2, channels), got "
                f"shape {x.shape}" + ("" if np.all(np.isfinite(x)) else " with non-finite values")
            )
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(
            f"real and synthetic must have the same (time, channels), got {real.shape[1:]} and "
            f"{synthetic.shape[1:]}"
        )
    return real, synthetic


def _train(loss, model, data, steps: int, key: PRNGKeyArray):
    """Adam (rate 1e-3) on `loss(model, data, key)` for `steps` steps, in one scan."""
    optimizer = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = optimizer.init(params)

    def step(carry, k):
        params, state = carry
        grads = jax.grad(lambda p: loss(eqx.combine(p, static), data, k))(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, state), jax.random.split(key, steps))
    return eqx.combine(params, static)


def _batch(x: Array, size: int, key: PRNGKeyArray) -> Array:
    return x[jax.random.choice(key, x.shape[0], (min(size, x.shape[0]),), replace=False)]


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "hidden"))
def _discriminate(real_train, fake_train, real_test, fake_test, key, steps, batch_size, hidden):
    init_key, train_key = jax.random.split(key)
    model = _GRUHead(real_train.shape[-1], hidden, key=init_key)

    def logit(m, x):
        return m.head(m.states(x)[-1])[0]

    def loss(m, data, k):
        real, fake = data
        kr, kf = jax.random.split(k)
        lr = jax.vmap(lambda x: logit(m, x))(_batch(real, batch_size, kr))
        lf = jax.vmap(lambda x: logit(m, x))(_batch(fake, batch_size, kf))
        return jnp.mean(jax.nn.softplus(-lr)) + jnp.mean(jax.nn.softplus(lf))

    model = _train(loss, model, (real_train, fake_train), steps, train_key)
    correct_real = jax.vmap(lambda x: logit(model, x) > 0)(real_test)
    correct_fake = jax.vmap(lambda x: logit(model, x) <= 0)(fake_test)
    accuracy = (jnp.sum(correct_real) + jnp.sum(correct_fake)) / (
        real_test.shape[0] + fake_test.shape[0]
    )
    return jnp.abs(accuracy - 0.5)


def discriminative_score(
    real: Float[ArrayLike, "samples time channels"],
    synthetic: Float[ArrayLike, "samples time channels"],
    *,
    key: PRNGKeyArray,
    steps: int = 2000,
    batch_size: int = 128,
    train_fraction: float = 0.8,
) -> float:
    """TimeGAN's discriminative score `|accuracy − 0.5|` of a post-hoc GRU classifier of real
    vs synthetic series (Yoon et al. 2019): each set is split at random (from `key`) into
    `train_fraction` for training (`steps` Adam steps on balanced batches of `batch_size` of
    each, binary cross-entropy on the last GRU state) and the rest for the test accuracy.
    0 means the classifier cannot tell them apart; 0.5 that it always can."""
    real, synthetic = _check_pair(real, synthetic)
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    split_key, key = jax.random.split(key)
    parts = []
    for x, k in zip((real, synthetic), jax.random.split(split_key), strict=True):
        order = np.asarray(jax.random.permutation(k, x.shape[0]))
        cut = int(x.shape[0] * train_fraction)
        if cut < 1 or cut == x.shape[0]:
            raise ValueError(
                f"train_fraction={train_fraction} of {x.shape[0]} samples leaves no train or no "
                "test sample"
            )
        parts.append((x[order[:cut]], x[order[cut:]]))
    (real_train, real_test), (fake_train, fake_test) = parts
    hidden = max(1, real.shape[-1] // 2)
    score = _discriminate(real_train, fake_train, real_test, fake_test, key, steps, batch_size,
                          hidden)  # fmt: skip
    return float(score)


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "hidden"))
def _predict(real, synthetic, key, steps, batch_size, hidden):
    model = _GRUHead(real.shape[-1] - 1, hidden, key=key)

    def predict(m, x):  # x[t, :-1] for t < T − 1 → x[t + 1, −1]
        hs = m.states(x[:-1, :-1])
        return jax.nn.sigmoid(jax.vmap(m.head)(hs)[:, 0])

    def loss(m, data, k):
        batch = _batch(data, batch_size, k)
        return jnp.mean(jnp.abs(jax.vmap(lambda x: predict(m, x))(batch) - batch[:, 1:, -1]))

    model = _train(loss, model, synthetic, steps, jax.random.fold_in(key, 1))
    return jnp.mean(jnp.abs(jax.vmap(lambda x: predict(model, x))(real) - real[:, 1:, -1]))


def predictive_score(
    real: Float[ArrayLike, "samples time channels"],
    synthetic: Float[ArrayLike, "samples time channels"],
    *,
    key: PRNGKeyArray,
    steps: int = 5000,
    batch_size: int = 128,
) -> float:
    """TimeGAN's predictive score ("train on synthetic, test on real"; Yoon et al. 2019): a
    post-hoc GRU reads channels `0 … C−2` up to step `t` and predicts channel `C−1` at
    `t + 1`; trained for `steps` Adam steps (L1 loss, batches of `batch_size`) on `synthetic`,
    scored by the mean absolute error of its predictions on all of `real` (lower is better;
    compare with the same score trained on real data). Needs `C ≥ 2` channels in `[0, 1]`."""
    real, synthetic = _check_pair(real, synthetic)
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    if real.shape[-1] < 2:
        raise ValueError(
            f"real has {real.shape[-1]} channel; the predictive score predicts the last channel "
            "from the others and needs at least 2"
        )
    hidden = max(1, real.shape[-1] // 2)
    return float(_predict(real, synthetic, key, steps, batch_size, hidden))
