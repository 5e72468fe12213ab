"""Score-based diffusion (Song et al. 2021): denoising score matching, and samplers for the
reverse process (probability-flow ODE, reverse-time SDE, predictor–corrector) of a forward SDE
`dx = f(t, x) dt + g(t) dW` (`VPSDE`, `VESDE`: `jaxdyn.generative.diffusion_sde`).

If `x_0 ~ p_0` the marginals `p_t` are reversed by (Anderson 1982; Song et al. 2021)

    reverse SDE:           dx = [f − g² ∇log p_t] dt + g dW̄       (t from 1 down to t_min),
    probability-flow ODE:  dx/dt = f − ½ g² ∇log p_t,

both with the same marginals `p_t`. The score `s(t, x) ≈ ∇log p_t(x)` is learned by denoising
score matching (Vincent 2011) with the weighting `λ(t) = σ(t)²`:

    E_{t ~ U[t_min, 1], x_0, z ~ N(0, I)} λ(t) |s(t, a x_0 + σ z) + z/σ|² = E |σ s + z|²,

minimised by `s = ∇log p_t` (`dsm_loss`, per sample like `losses`).

Scores are fields `(t, x, args) -> (dim,)` for one sample `x` of shape `(dim,)`; the samplers
take `args=None` and pass it on, and return an `Endpoint` under `on_failure`.
"""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import OnFailure, check_count, check_on_failure, check_positive
from ..solve import RESULTS, Endpoint, Stats
from ._checks import check_diffusion_batch, check_sde, check_t_min
from ._endpoint import endpoint
from ._fields import Field, Reparametrised
from .diffusion_sde import DiffusionSDE
from .sampling import sample_ode, sample_sde

__all__ = [
    "dsm_loss",
    "probability_flow",
    "sample_predictor_corrector",
    "sample_probability_flow",
    "sample_reverse_sde",
]


def dsm_loss(
    score: Field,
    sde: DiffusionSDE,
    x0: Float[Array, "batch dim"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 1e-3,
) -> Float[Array, " batch"]:
    """Per-sample denoising score matching loss with the weighting `λ(t) = σ(t)²` (Vincent 2011;
    Song et al. 2021, eq. 7): `|σ(t) s(t, x_t) + z|²`, `x_t = a(t) x_0 + σ(t) z`, with
    `t ~ U[t_min, 1]` and `z ~ N(0, I)` drawn here, one per sample (`sde.perturb`). Minimised (in
    expectation) by the exact score `s = ∇log p_t`; its minimum is not zero.

    **Arguments:** `score`, the field `s(t, x, args)`; `sde`; `x0`, data `(batch, dim)`; `key`;
    `args`, passed to the score; `t_min`, the smallest time (the score is singular at `t = 0`).
    """
    x0 = check_diffusion_batch("dsm_loss", sde, "x0", x0, key, t_min)
    t, xt, z = sde.perturb(x0, key=key, t_min=t_min)
    residual = jax.vmap(lambda t, x, z: sde.std(t) * score(t, x, args) + z)(t, xt, z)
    return jnp.sum(residual**2, axis=1)


class _ProbabilityFlow(eqx.Module):
    sde: DiffusionSDE
    score: Callable

    def __call__(self, t, x, args):
        return self.sde.drift(t, x) - 0.5 * self.sde.diffusion(t) ** 2 * self.score(t, x, args)


def probability_flow(sde: DiffusionSDE, score: Field) -> Field:
    """The probability-flow velocity `v(t, x, args) = f(t, x) − ½ g(t)² s(t, x, args)` (Song et
    al. 2021, eq. 13): `dx/dt = v` has the marginals `p_t` of the forward SDE when
    `s = ∇log p_t`."""
    check_sde(sde)
    return _ProbabilityFlow(sde, score)


def sample_probability_flow(
    score: Field,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "*batch dim"],
    *,
    args: Any = None,
    t_min: float = 1e-3,
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: str = "joint",
) -> Endpoint:
    """Sample by the probability-flow ODE `dx/dt = f − ½ g² s` from `t = 1` down to `t_min`
    (Song et al. 2021, §4.3), by `sample_ode` (adaptive steps at `1e-6` by default;
    `stats.num_fevals` is the number of score evaluations).

    **Arguments:** `score`; `sde`; `x1`, draws of the prior (`sde.prior_sample`), `(dim,)` or
    `(batch, dim)`; `args`, passed to the score; `t_min`; `solver`, `rtol`, `atol`, `dt0`,
    `max_steps`, `on_failure`, `batch` as in `sample_ode`.

    **Returns:** an `Endpoint` with the samples at `t_min`.
    """
    check_t_min(t_min)
    return sample_ode(
        probability_flow(sde, score), x1, args=args, t0=1.0, t1=float(t_min), solver=solver,
        rtol=rtol, atol=atol, dt0=dt0, max_steps=max_steps, on_failure=on_failure, batch=batch,
    )  # fmt: skip


class _ReverseEpsilon(eqx.Module):
    """`ε(r) = ½ g(1 − r)²`: the diffusion of `sample_sde` that reverses the forward SDE."""

    sde: DiffusionSDE

    def __call__(self, r):
        return 0.5 * self.sde.diffusion(1.0 - r) ** 2


def sample_reverse_sde(
    score: Field,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 1e-3,
    dt0: float = 1e-3,
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: str = "joint",
) -> Endpoint:
    """Sample by the reverse-time SDE `dx = [f − g² s] dt + g dW̄` from `t = 1` down to `t_min`
    (Anderson 1982; Song et al. 2021, eq. 6), Euler–Maruyama with fixed steps of at most `dt0`.

    In the reversed time `r = 1 − t` it is the forward SDE of `sample_sde`,
    `dX = [b + ε s̃] dr + √(2ε) dW`, with the reversed probability-flow velocity
    `b(r, x) = −(f − ½ g² s)(1 − r, x)`, `s̃(r, x) = s(1 − r, x)` and `ε(r) = ½ g(1 − r)²`: the
    same family of SDEs sharing the marginals of the ODE, at the diffusion that reverses the
    forward SDE; it runs through `sample_sde` (grid Brownian path; its failures name it).

    **Arguments:** `score`; `sde`; `x1`, prior draws `(dim,)` or `(batch, dim)`; `key`; `args`,
    passed to the score; `t_min`; `dt0`, the step; `max_steps`, `on_failure`, `batch` as in
    `sample_sde`.

    **Returns:** an `Endpoint` with the samples at `t_min`.
    """
    check_t_min(t_min)
    velocity = probability_flow(sde, score)
    return sample_sde(
        Reparametrised(velocity, 1.0, -1.0, -1.0), Reparametrised(score, 1.0, -1.0, 1.0), x1,
        key=key, args=args, epsilon=_ReverseEpsilon(sde), t0=0.0, t1=1.0 - float(t_min),
        dt0=dt0, max_steps=max_steps, on_failure=on_failure, batch=batch,
    )  # fmt: skip


def _step_count(dt0: float, t_min: float) -> int:
    """Steps of at most `dt0` over `[t_min, 1]` (concrete: it is the length of the scan)."""
    if isinstance(dt0, jax.core.Tracer):
        raise TypeError("dt0 must be a concrete number (it sets the number of steps), not traced")
    check_positive("dt0", dt0)
    return max(math.ceil((1.0 - float(t_min)) / float(dt0) - 1e-9), 1)


def sample_predictor_corrector(
    score: Field,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "batch dim"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 1e-3,
    dt0: float = 1e-3,
    corrector_steps: int = 1,
    snr: float = 0.16,
    denoise: bool = True,
    on_failure: OnFailure = "raise",
) -> Endpoint:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1, with the Langevin corrector of
    Alg. 4 / 5) as one jittable `lax.scan` over `N = ⌈(1 − t_min)/dt0⌉` steps of
    `h = (1 − t_min)/N` on the grid `t_i = 1 − i h`. At each `t_i`, as in the authors' code:
    `corrector_steps` Langevin steps at `p_{t_i}`,

        x ← x + ε s(t_i, x) + √(2ε) z,    ε = 2 α_i (snr ‖z‖ / ‖s(t_i, x)‖)²,

    (norms averaged over the batch; `α_i = exp(−β(t_i) h) ≈ 1 − β(t_i) h` for `VPSDE`, `1` for
    `VESDE`), then one Euler–Maruyama step of the reverse SDE to `t_{i+1}` (the predictor),
    `x ← x − [f − g² s] (−h) + g √h z`. With `denoise` the last predictor step omits its noise
    (returns its mean, as the authors do). `corrector_steps=0` is plain Euler–Maruyama.

    **Arguments:** `score`; `sde`; `x1`, prior draws `(batch, dim)`; `key`; `args`, passed to
    the score; `t_min`; `dt0`, the largest step (concrete); `corrector_steps`; `snr`, the
    corrector's signal-to-noise ratio (> 0); `denoise`; `on_failure`: a non-finite sample is a
    failure (the batch is one state: the corrector's step averages over it).

    **Returns:** an `Endpoint` with the samples at `t_min` and `Stats` with
    `num_fevals = N (1 + corrector_steps)` score evaluations per sample.
    """
    x1 = check_diffusion_batch("sample_predictor_corrector", sde, "x1", x1, key, t_min)
    check_count("corrector_steps", corrector_steps, 0)
    check_positive("snr", snr)
    check_on_failure(on_failure)
    num_steps = _step_count(dt0, t_min)
    dtype = x1.dtype
    h = (1.0 - float(t_min)) / num_steps
    batch_score = jax.vmap(score, in_axes=(None, 0, None))

    def corrector(x, t, key):
        def step(x, key):
            grad = batch_score(t, x, args)
            z = jax.random.normal(key, x.shape, dtype=dtype)
            grad_norm = jnp.mean(jnp.linalg.norm(grad, axis=1))
            noise_norm = jnp.mean(jnp.linalg.norm(z, axis=1))
            eps = 2 * sde.langevin_alpha(t, h) * (snr * noise_norm / grad_norm) ** 2
            return x + eps * grad + jnp.sqrt(2 * eps) * z, None

        return jax.lax.scan(step, x, jax.random.split(key, corrector_steps))[0]

    def step(x, inputs):
        i, key = inputs
        k_corrector, k_predictor = jax.random.split(key)
        t = jnp.asarray(1.0, dtype) - i.astype(dtype) * h
        if corrector_steps:
            x = corrector(x, t, k_corrector)
        g = sde.diffusion(t)
        drift = jax.vmap(sde.drift, in_axes=(None, 0))(t, x) - g**2 * batch_score(t, x, args)
        mean = x - drift * h
        z = jax.random.normal(k_predictor, x.shape, dtype=dtype)
        last = i == num_steps - 1
        noise = jnp.where(last & denoise, 0.0, g * jnp.sqrt(h)) * z
        return mean + noise, None

    x, _ = jax.lax.scan(step, x1, (jnp.arange(num_steps), jax.random.split(key, num_steps)))
    n = jnp.asarray(num_steps)
    stats = Stats(
        num_steps=n, num_accepted_steps=n, num_rejected_steps=jnp.asarray(0),
        num_fevals=jnp.asarray(num_steps * (1 + corrector_steps)),
    )  # fmt: skip
    return endpoint(x, stats, RESULTS.successful, on_failure=on_failure,
                    caller="sample_predictor_corrector", max_steps=num_steps)  # fmt: skip
