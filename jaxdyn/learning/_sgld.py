"""Stochastic gradient Langevin dynamics (Welling & Teh 2011) and its RMSprop-preconditioned
variant (Li, Chen, Carlson & Carin 2016) as optax gradient transformations."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from .._checks import check_key, check_non_negative, check_positive

__all__ = ["PSGLDState", "SGLDState", "psgld", "sgld"]


class SGLDState(NamedTuple):
    """`count`: steps taken (the schedule's argument); `key`: the PRNG key of the next noise."""

    count: Array
    key: PRNGKeyArray


class PSGLDState(NamedTuple):
    """`count`, `key` as in `SGLDState`; `nu`: the moving average `V` of squared gradients."""

    count: Array
    key: PRNGKeyArray
    nu: optax.Params


def _key(key: PRNGKeyArray | int, caller: str) -> PRNGKeyArray:
    if isinstance(key, int) and not isinstance(key, bool):
        return jax.random.key(key)
    check_key(key, caller)
    return key


def check_rate(learning_rate: optax.ScalarOrSchedule) -> None:
    """A positive number, or a schedule (a callable of the step count: not checked)."""
    if not callable(learning_rate):
        check_positive("learning_rate", learning_rate)


def _rate(learning_rate: optax.ScalarOrSchedule, count: Array) -> Array:
    return learning_rate(count) if callable(learning_rate) else jnp.asarray(learning_rate)


def sgld(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: PRNGKeyArray | int,
    temperature: float = 1.0,
) -> optax.GradientTransformation:
    r"""Stochastic gradient Langevin dynamics (Welling & Teh 2011, eq. 4):

        Δθ = −(ε_t/2) ∇Û(θ) + N(0, ε_t T),

    where the gradient passed to `update` is the (minibatch estimate of the) gradient of the
    potential `U(θ) = −log p(θ) − Σᵢ log p(xᵢ|θ)`, i.e. `∇Û = −∇log p(θ) − (n/B) Σ_{i∈batch}
    ∇log p(xᵢ|θ)`: the sum over the data, not the mean (a mean loss must be multiplied by `n`).
    `ε_t = learning_rate` (a number or an optax schedule of the step count) is the step of the
    discretised Langevin SDE `dθ = −½∇U dt + dW`, whose stationary law is `exp(−U/T)`: the
    posterior at temperature `T = 1`; `T = 0` is gradient descent with step `ε/2`. The updates
    are to be added to the parameters (`optax.apply_updates`); noise is drawn for every leaf,
    with the dtype of the gradient, from the key in the state (split every step).

    Minibatch noise, on a Gaussian posterior (the closed form the tests check). With `U(θ) =
    θ²/(2s²)` the chain is AR(1), `θ_{k+1} = aθ_k − (ε/2)ξ_k + √ε z_k`, `a = 1 − ε/(2s²)`, where
    `ξ_k` is the minibatch error of the gradient, independent across steps with variance `σ_ξ²`.
    Its stationary variance solves `V = a²V + ε + (ε²/4)σ_ξ²`:

        V = [ε + (ε²/4) σ_ξ²] / (1 − a²),   1 − a² = (ε/s²)(1 − ε/(4s²)),

    so without minibatch noise `V/s² = 1/(1 − ε/(4s²))` (1.0526 at `ε = 0.2s²`): the
    discretisation bias. For the Gaussian mean model (`p(x|θ) = N(θ, σ²)`, flat prior, `n`
    data of mean 0 and variance `ρσ²`; the posterior is `N(0, s²)`, `s² = σ²/n`) and batches of
    `B` drawn without replacement, `σ_ξ² = (n²/σ⁴)(ρσ²/B)(n − B)/(n − 1)`, i.e.
    `s²σ_ξ² = ρ n (n − B)/(B(n − 1))`. At `n = 1000`, `ε = 0.2s²`: `V/s² = 1.053, 1.527, 6.27`
    for `B = 1000, 100, 10` when `ρ = 1`; issue 16's `1.053, 1.505, 6.03` are `ρ = 0.954`
    (the data's spread 0.954 of the likelihood's variance, as a finite draw from `N(0, σ²)`).

    Args:
        learning_rate: the step `ε` (> 0), or an optax schedule of the step count.
        key: a PRNG key (`jax.random.key`) or an int seed for the noise.
        temperature: `T >= 0`; the noise variance is `εT`.
    """
    check_rate(learning_rate)
    check_non_negative("temperature", temperature)
    key = _key(key, "sgld")

    def init_fn(params):
        del params
        return SGLDState(count=jnp.zeros([], jnp.int32), key=key)

    def update_fn(updates, state, params=None):
        del params
        step = _rate(learning_rate, state.count)
        next_key, sample_key = jax.random.split(state.key)
        noise = optax.tree.random_like(sample_key, updates, jax.random.normal)
        scale = jnp.sqrt(step * temperature)
        updates = jax.tree.map(lambda g, z: (-0.5 * step * g + scale * z).astype(g.dtype),
                               updates, noise)  # fmt: skip
        return updates, SGLDState(count=optax.safe_increment(state.count), key=next_key)

    return optax.GradientTransformation(init_fn, update_fn)


def psgld(
    learning_rate: optax.ScalarOrSchedule,
    *,
    key: PRNGKeyArray | int,
    decay: float = 0.99,
    eps: float = 1e-5,
    temperature: float = 1.0,
) -> optax.GradientTransformation:
    r"""Preconditioned SGLD with an RMSprop preconditioner (Li, Chen, Carlson & Carin 2016,
    Algorithm 1):

        V ← αV + (1 − α) ∇Û ⊙ ∇Û,   G = 1 / (λ + √V),
        Δθ = −(ε_t/2) G ⊙ ∇Û + N(0, ε_t T G),

    elementwise, `V` starting at 0, with `∇Û` the potential's gradient as in `sgld` (the sum
    over the data). Li et al.'s `V` averages the squared *mean* per-datum gradient `∇Û/n`, so
    their `G` is `n/(nλ + √V)`: their `(ε, λ)` are this transform's `(nε, nλ)`. The correction
    term `Γᵢ = Σⱼ ∂G_ij/∂θⱼ` is omitted, as in the paper's practical algorithm (small when `G`
    changes slowly, `α` near 1), so the chain samples
    `exp(−U/T)` only up to that term and the step's discretisation bias. As `V` starts at 0,
    the first steps have `G ≈ 1/√((1 − α)g²)`: large for `α` near 1 (on a Gaussian started at
    θ = 0, α = 0.99, they threw the chain thousands of s out, from where it crept back); warm `V` up
    (e.g. set `state.nu` to a gradient's square) or start from a burned-in state.

    Args:
        learning_rate: the step `ε` (> 0), or an optax schedule of the step count.
        key: a PRNG key (`jax.random.key`) or an int seed for the noise.
        decay: `α ∈ [0, 1)`, the moving average's decay (the paper's 0.99).
        eps: `λ > 0`, the preconditioner's floor in this transform's convention (the paper's
            `λ = 1e-5` on mean gradients is `eps = n · 1e-5` here; the default 1e-5 is not).
        temperature: `T >= 0`; the noise covariance is `εTG`.
    """
    check_rate(learning_rate)
    check_non_negative("decay", decay)
    if not isinstance(decay, jax.core.Tracer) and not decay < 1:
        raise ValueError(f"decay must be < 1, got {decay!r}")
    check_positive("eps", eps)
    check_non_negative("temperature", temperature)
    key = _key(key, "psgld")

    def init_fn(params):
        nu = jax.tree.map(jnp.zeros_like, params)
        return PSGLDState(count=jnp.zeros([], jnp.int32), key=key, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        step = _rate(learning_rate, state.count)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, decay, 2)
        next_key, sample_key = jax.random.split(state.key)
        noise = optax.tree.random_like(sample_key, updates, jax.random.normal)

        def move(g, v, z):
            precondition = 1.0 / (eps + jnp.sqrt(v))
            drift = -0.5 * step * precondition * g
            return (drift + jnp.sqrt(step * temperature * precondition) * z).astype(g.dtype)

        updates = jax.tree.map(move, updates, nu, noise)
        new_state = PSGLDState(count=optax.safe_increment(state.count), key=next_key, nu=nu)
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)
