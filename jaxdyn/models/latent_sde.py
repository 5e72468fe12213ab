"""Latent SDEs: a variational posterior SDE against a prior SDE, with the KL divergence between
their path measures integrated alongside the latent state (Li, Wong, Chen & Duvenaud 2020,
"Scalable gradients for stochastic differential equations", §5 and §7.2).

The generative model is

    z(t0) ~ p(z0) = N(m, diag(s²)),    dz = h(t, z) dt + g(z) dW    (prior),
    x(t_k) ~ N(D z(t_k), obs_std² I)    at the observation times t_1 < … < t_N,

and the approximate posterior shares the diffusion,

    z(t0) ~ q(z0 | x),    dz = f(t, z, c(t)) dt + g(z) dW,

where `c(t)` is a context computed from the observations by an encoder (a GRU run backwards
in time). Because the diffusions agree, Girsanov's theorem gives the KL divergence between the
two path measures on `[t0, t_N]` (Itô):

    KL(Q ‖ P) = E_Q[ ∫ ½ ‖u(t, z)‖² dt ],    u = (f - h) / g    (componentwise),

which is integrated as one extra state component `dk = ½ ‖u‖² dt` of the same solve (the KL
path estimator of Li et al. 2020, eq. 10, without its zero-mean martingale term). The evidence
lower bound is

    ELBO = E_Q[ Σ_k log N(x(t_k); D z(t_k), obs_std²) ] - KL(q(z0) ‖ p(z0)) - KL(Q ‖ P).

The reference implementation followed is torchsde's `examples/latent_sde_lorenz.py`
(Li et al.), including its context interpolation: on `[t_k, t_{k+1})` the posterior drift sees
the encoder output at `t_{k+1}` (the first observation strictly after `t`, the last one at and
after `t_N`; before `t_1`, the output at `t_1`), which summarises the observations still to come.
The solve steps to every observation time, so the context is constant on every step.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from .._checks import check_choice, check_increasing, check_positive
from ..solve import OnFailure, sdeint
from ._arguments import check_sizes
from .fields import MLPField

__all__ = [
    "DECODERS",
    "DIFFUSIONS",
    "ELBO",
    "LIKELIHOODS",
    "PRIORS",
    "TIME_INPUTS",
    "ConstantDiffusion",
    "ContextDrift",
    "DiagonalDiffusion",
    "LatentSDE",
    "OUDrift",
    "sdeint_path_kl",
]

PRIORS = ("mlp", "ou", "ou_fixed")
DIFFUSIONS = ("learned", "constant")
TIME_INPUTS = ("none", "t", "sincos")
LIKELIHOODS = ("normal", "laplace")
DECODERS = ("linear", "identity")
ACTIVATIONS = {"softplus": jax.nn.softplus, "tanh": jnp.tanh}


# --- the path KL as an extra state ------------------------------------------------------------


class _KLDrift(eqx.Module):
    """`(f, ½‖(f - h)/g‖²)` on the state `(z, k)`: the posterior drift and the KL integrand."""

    posterior: Callable
    prior: Callable
    diffusion: Callable

    def __call__(self, t, y, args):
        z = y[:-1]
        f = self.posterior(t, z, args)
        u = (f - self.prior(t, z, args)) / self.diffusion(t, z, args)
        return jnp.concatenate([f, 0.5 * jnp.sum(u**2, keepdims=True)])


class _KLDiffusion(eqx.Module):
    """`(g, 0)` on the state `(z, k)`: the KL component carries no noise."""

    diffusion: Callable

    def __call__(self, t, y, args):
        g = self.diffusion(t, y[:-1], args)
        return jnp.concatenate([g, jnp.zeros((1,), g.dtype)])


def sdeint_path_kl(
    posterior_drift: Callable[[Any, Array, Any], Array],
    prior_drift: Callable[[Any, Array, Any], Array],
    diffusion: Callable[[Any, Array, Any], Array],
    z0: Float[ArrayLike, "*batch latent"],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    dt0: float,
    solver: str | dfx.AbstractSolver = "euler",
    on_failure: OnFailure = "raise",
    batch: str | None = None,
) -> tuple[Float[Array, "*batch time latent"], Float[Array, "*batch time"]]:
    """Paths of the posterior SDE `dz = f dt + g dW` (Itô, diagonal noise) and the KL
    divergence of its path measure from the prior `dz = h dt + g dW`, accumulated in time.

    The state handed to `sdeint` is `(z, k)` with `dk = ½ ‖(f - h)/g‖² dt` and no noise on `k`
    (Li et al. 2020); `k(t)` is a single-path estimate of `KL(Q ‖ P)` on `[ts[0], t]`, whose
    mean over paths converges to the KL (the exact expectation of the discretised sum).

    **Arguments:** `posterior_drift`, `prior_drift`, `diffusion`: callables `(t, z, args)`
    returning `(latent,)` (the diffusion positive, diagonal). `z0`: `(latent,)`, or `(batch,
    latent)` with `batch="vmap"|"joint"`. `ts`: save times (concrete: the fixed-step grid is
    built from them; every time is stepped to). `dt0`: the largest step. `key`, `args`,
    `solver`, `on_failure`: as in `jaxdyn.solve.sdeint`.

    **Returns:** `(zs, kl)` with shapes `(*batch, time, latent)` and `(*batch, time)`.
    """
    z0 = jnp.asarray(z0)
    if z0.ndim not in (1, 2):
        raise ValueError(f"sdeint_path_kl needs z0 of shape (latent,) or (batch, latent), got "
                         f"{z0.shape}")  # fmt: skip
    if (z0.ndim == 2) != (batch is not None):
        want = "'vmap' or 'joint'" if z0.ndim == 2 else "None"
        raise ValueError(f"sdeint_path_kl: z0 of shape {z0.shape} needs batch={want}, got "
                         f"batch={batch!r}")  # fmt: skip
    y0 = jnp.concatenate([z0, jnp.zeros(z0.shape[:-1] + (1,), z0.dtype)], axis=-1)
    sol = sdeint(
        _KLDrift(posterior_drift, prior_drift, diffusion),
        _KLDiffusion(diffusion),
        y0,
        ts,
        key=key,
        args=args,
        noise="diagonal",
        calculus="ito",
        solver=solver,
        dt0=dt0,
        on_failure=on_failure,
        batch=batch,
    )
    return sol.ys[..., :-1], sol.ys[..., -1]


# --- parts of the model -----------------------------------------------------------------------


def _time_input(time: bool | str) -> str:
    if isinstance(time, bool):
        return "t" if time else "none"
    if time not in TIME_INPUTS:
        raise ValueError(f"unknown time input {time!r}; expected a bool or one of {TIME_INPUTS}")
    return time


class ContextDrift(eqx.Module):
    """The posterior drift `f(t, z, c) = MLP([z, c, τ(t)])`.

    `latent`, `context`: the sizes of `z` and `c`; `width`, `depth`: the MLP's hidden layers.
    `time`: the time features `τ(t)`: none (`False`/`"none"`), `t` itself (`True`/`"t"`), or
    `(sin t, cos t)` (`"sincos"`, the "positional encoding" of torchsde's `latent_sde.py`).
    `use_context=False` drops `c` (the drift of torchsde's sine example sees `(sin t, cos t,
    z)` only). `activation`: `"softplus"` or `"tanh"`; `zero_init` zeroes the last layer, so that
    the posterior drift starts at zero (the "initialization trick from Glow" of that example).
    """

    mlp: eqx.nn.MLP
    time: str = eqx.field(static=True)
    use_context: bool = eqx.field(static=True)

    def __init__(self, *, latent: int, context: int, width: int, depth: int,
                 time: bool | str = False, use_context: bool = True,
                 activation: str = "softplus", zero_init: bool = False,
                 key: PRNGKeyArray):  # fmt: skip
        check_sizes(latent=latent, context=context, width=width, depth=depth)
        check_choice("activation", activation, ACTIVATIONS)
        self.time = _time_input(time)
        self.use_context = bool(use_context)
        n_time = {"none": 0, "t": 1, "sincos": 2}[self.time]
        size = latent + (context if self.use_context else 0) + n_time
        mlp = eqx.nn.MLP(size, latent, width, depth, activation=ACTIVATIONS[activation], key=key)
        if zero_init:
            last = mlp.layers[-1]
            mlp = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                              (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))  # fmt: skip
        self.mlp = mlp

    def __call__(self, t: Scalar, z: Float[Array, " latent"], context: Float[Array, " context"]):
        parts = [z]
        if self.use_context:
            parts.append(context.astype(z.dtype))
        t = jnp.reshape(jnp.asarray(t, z.dtype), (1,))
        if self.time == "t":
            parts.append(t)
        elif self.time == "sincos":
            parts += [jnp.sin(t), jnp.cos(t)]
        return self.mlp(jnp.concatenate(parts))


class OUDrift(eqx.Module):
    """An Ornstein–Uhlenbeck prior drift `h(z) = θ ⊙ (μ - z)`, `θ = exp(log_rate)`: learned,
    or held fixed when `fixed` (its parameters are then behind `jax.lax.stop_gradient`, so
    that they get zero gradients)."""

    mean: Float[Array, " latent"]
    log_rate: Float[Array, " latent"]
    fixed: bool = eqx.field(static=True, default=False)

    def __call__(self, t, z, args=None):
        mean, log_rate = self.mean, self.log_rate
        if self.fixed:
            mean, log_rate = jax.lax.stop_gradient((mean, log_rate))
        return jnp.exp(log_rate) * (mean - z)


class ConstantDiffusion(eqx.Module):
    """A fixed diagonal diffusion `g(z) = σ` in every dimension (not learned), as in torchsde's
    sine example (`σ = 0.5`)."""

    sigma: float = eqx.field(static=True)
    latent: int = eqx.field(static=True)

    def __init__(self, *, latent: int, sigma: float):
        check_sizes(latent=latent)
        check_positive("sigma", sigma)
        self.sigma, self.latent = float(sigma), int(latent)

    def __call__(self, t, z, args=None):
        return jnp.full(z.shape, self.sigma, z.dtype)


class DiagonalDiffusion(eqx.Module):
    """A diagonal diffusion with one small network per latent dimension, as in torchsde's
    latent-SDE example: `g_i(z) = floor + (scale - floor) · sigmoid(MLP_i(z_i))`. Each `g_i`
    depends on `z_i` only (commutative noise), and `g ≥ floor > 0` keeps the KL integrand
    `(f - h)/g` finite."""

    nets: eqx.nn.MLP  # stacked: one MLP per dimension (leading axis)
    scale: float = eqx.field(static=True)
    floor: float = eqx.field(static=True)

    def __init__(self, *, latent: int, width: int, scale: float = 1.0, floor: float = 1e-3,
                 key: PRNGKeyArray):  # fmt: skip
        check_sizes(latent=latent, width=width)
        if not 0 <= floor < scale:
            raise ValueError(f"DiagonalDiffusion needs 0 <= floor < scale, got {floor}, {scale}")
        make = lambda k: eqx.nn.MLP(1, 1, width, 1, activation=jax.nn.softplus, key=k)  # noqa: E731
        self.nets = eqx.filter_vmap(make)(jax.random.split(key, latent))
        self.scale, self.floor = scale, floor

    def __call__(self, t, z, args=None):
        raw = eqx.filter_vmap(lambda net, zi: net(zi[None])[0])(self.nets, z)
        return self.floor + (self.scale - self.floor) * jax.nn.sigmoid(raw)


class _Posterior(eqx.Module):
    """The posterior drift with its context looked up from `args = (obs_times, contexts)`."""

    drift: Callable

    def __call__(self, t, z, args):
        obs_times, contexts = args
        index = jnp.searchsorted(obs_times, t, side="right")
        index = jnp.minimum(index, obs_times.shape[0] - 1)
        return self.drift(t, z, contexts[index])


class _Prior(eqx.Module):
    drift: Callable

    def __call__(self, t, z, args):
        return self.drift(t, z, None)


class ELBO(NamedTuple):
    """The terms of a latent SDE's evidence lower bound, averaged over posterior samples.

    `value = log_likelihood - kl_weight · (kl_z0 + kl_path)`: the ELBO when `kl_weight` is 1.
    """

    value: Scalar
    log_likelihood: Scalar
    kl_z0: Scalar
    kl_path: Scalar


def _concrete_times(name: str, ts, dtype=None) -> np.ndarray:
    if isinstance(ts, jax.core.Tracer):
        raise ValueError(
            f"LatentSDE needs {name} known at trace time (the solve's step grid is built from "
            "them): close over a NumPy array instead of passing it as a traced argument"
        )
    times = np.asarray(ts)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D array of times, got shape {times.shape}")
    if not np.issubdtype(times.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got dtype {times.dtype}")
    check_increasing(name, times)
    return times if dtype is None else times.astype(np.dtype(dtype))


def _check_samples(n_samples) -> None:
    if not (isinstance(n_samples, int) and not isinstance(n_samples, bool) and n_samples > 0):
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")


# --- the model --------------------------------------------------------------------------------


class LatentSDE(eqx.Module):
    """A latent SDE (Li et al. 2020): prior and posterior SDEs sharing a diagonal diffusion, a
    backwards GRU encoder for the posterior's context and initial state, and a linear decoder.

    Parts (each replaceable, e.g. with `eqx.tree_at`):

    - `encoder` (`eqx.nn.GRUCell`) reads `[x(t_k), t_{k+1} - t_k]` from the last observation
      to the first; `to_context` (linear) maps its state after `x(t_k)` to the context `c_k`.
    - `to_initial` (linear) maps `c_1` to the mean and log standard deviation of `q(z0)`.
    - `posterior_drift(t, z, c)`, a `ContextDrift`; `prior_drift(t, z, args)`, an `MLPField`
      (`prior="mlp"`), a learned `OUDrift` (`prior="ou"`) or a fixed one (`prior="ou_fixed"`,
      `θ = ou_rate`, `μ = 0`); `diffusion(t, z, args)`, a learned `DiagonalDiffusion`
      (`diffusion="learned"`, at most `diffusion_scale`) or a `ConstantDiffusion`
      (`diffusion="constant"`, `σ = diffusion_scale`).
    - `decoder` (linear, latent → data; `None` for `decoder="identity"`, which needs
      `latent == channels`) gives the location of `x`; the likelihood is Gaussian
      (`likelihood="normal"`) with standard deviation `obs_std`, or Laplace with scale
      `obs_std` (`"laplace"`).
    - `prior_z0_mean`, `prior_z0_log_std`: `p(z0)`, learned (`N(0, I)` at first), except for
      `prior="ou_fixed"`, where it is the fixed OU's stationary law `N(0, σ²/(2θ))` with
      `σ = diffusion_scale` (torchsde's sine example), held fixed.

    torchsde's `examples/latent_sde.py` (irregular sine) is, in these terms, `latent=1`,
    `decoder="identity"`, `prior="ou_fixed"`, `diffusion="constant"`, `diffusion_scale=0.5`,
    `time_input="sincos"`, `posterior_context=False`, `activation="tanh"`, `zero_init=True`,
    `likelihood="laplace"`, `obs_std=0.05`, and `elbo(..., t1=2.0)` (the path KL beyond the
    last observation); its `q(z0)` is a free parameter where ours comes from the encoder.

    Solves: Itô, diagonal noise, fixed steps of at most `dt0` with `solver` (Euler–Maruyama by
    default) on `jaxdyn.solve.sdeint`'s grid Brownian path, posterior samples batched by
    `vmap`; every observation time is a step boundary. Observation times are NumPy arrays (or
    concrete JAX arrays): the step grid is built from them when tracing. A batch of series on
    shared times is `jax.vmap` over `xs` (and keys).
    """

    encoder: eqx.nn.GRUCell
    to_context: eqx.nn.Linear
    to_initial: eqx.nn.Linear
    posterior_drift: Callable
    prior_drift: Callable
    diffusion: Callable
    decoder: eqx.nn.Linear | None
    prior_z0_mean: Float[Array, " latent"]
    prior_z0_log_std: Float[Array, " latent"]
    channels: int = eqx.field(static=True)
    latent: int = eqx.field(static=True)
    context: int = eqx.field(static=True)
    obs_std: float = eqx.field(static=True)
    likelihood: str = eqx.field(static=True)
    learn_prior_z0: bool = eqx.field(static=True)
    dt0: float = eqx.field(static=True)
    solver: str = eqx.field(static=True)
    on_failure: OnFailure = eqx.field(static=True)

    def __init__(
        self,
        *,
        channels: int,
        latent: int,
        context: int = 16,
        hidden: int = 32,
        width: int = 64,
        depth: int = 2,
        prior: str = "mlp",
        time_input: bool | str = False,
        posterior_context: bool = True,
        activation: str = "softplus",
        zero_init: bool = False,
        diffusion: str = "learned",
        diffusion_scale: float = 1.0,
        ou_rate: float = 1.0,
        decoder: str = "linear",
        likelihood: str = "normal",
        obs_std: float = 0.01,
        dt0: float = 0.01,
        solver: str = "euler",
        on_failure: OnFailure = "raise",
        key: PRNGKeyArray,
    ):
        """**Arguments:** `channels` (of the data), `latent`, `context` (per time), `hidden`
        (the GRU's state); `width`, `depth`: the drift networks (the diffusion's
        per-dimension networks have `width` and one hidden layer); `prior`: `"mlp"`, `"ou"`
        or `"ou_fixed"`; `time_input`, `posterior_context`, `activation`, `zero_init`: the
        posterior drift's inputs and network (see `ContextDrift`; `activation` is also the
        MLP prior's);
        `diffusion`: `"learned"` or `"constant"`; `diffusion_scale`: the learned diffusion's
        largest value, or the constant `σ`; `ou_rate`: the OU prior's rate `θ` (its initial
        value when learned); `decoder`: `"linear"` or `"identity"`; `likelihood`: `"normal"`
        or `"laplace"`, with scale `obs_std`; `dt0`, `solver`, `on_failure`: the solves (see
        `jaxdyn.solve.sdeint`); `key`."""
        check_sizes(channels=channels, latent=latent, context=context, hidden=hidden, width=width,
                    depth=depth)  # fmt: skip
        for name, value, options in (("prior", prior, PRIORS),
                                     ("diffusion", diffusion, DIFFUSIONS),
                                     ("decoder", decoder, DECODERS),
                                     ("likelihood", likelihood, LIKELIHOODS)):  # fmt: skip
            check_choice(name, value, options)
        positives = {"obs_std": obs_std, "dt0": dt0, "diffusion_scale": diffusion_scale,
                     "ou_rate": ou_rate}  # fmt: skip
        for name, value in positives.items():
            check_positive(name, value)
        if decoder == "identity" and latent != channels:
            raise ValueError(f"decoder='identity' needs latent == channels, got latent={latent} "
                             f"and channels={channels}")  # fmt: skip
        keys = jax.random.split(key, 7)
        self.encoder = eqx.nn.GRUCell(channels + 1, hidden, key=keys[0])
        self.to_context = eqx.nn.Linear(hidden, context, key=keys[1])
        self.to_initial = eqx.nn.Linear(context, 2 * latent, key=keys[2])
        self.posterior_drift = ContextDrift(
            latent=latent, context=context, width=width, depth=depth, time=time_input,
            use_context=posterior_context, activation=activation, zero_init=zero_init,
            key=keys[3],
        )  # fmt: skip
        if prior == "mlp":
            self.prior_drift = MLPField(dim=latent, width=width, depth=depth,
                                        activation=activation, key=keys[4])  # fmt: skip
        else:
            log_rate = jnp.full(latent, math.log(ou_rate), dtype=float)  # not weakly typed
            self.prior_drift = OUDrift(jnp.zeros(latent), log_rate, fixed=prior == "ou_fixed")
        if diffusion == "learned":
            self.diffusion = DiagonalDiffusion(latent=latent, width=width, scale=diffusion_scale,
                                               key=keys[5])  # fmt: skip
        else:
            self.diffusion = ConstantDiffusion(latent=latent, sigma=diffusion_scale)
        self.decoder = (None if decoder == "identity"
                        else eqx.nn.Linear(latent, channels, key=keys[6]))  # fmt: skip
        self.prior_z0_mean = jnp.zeros(latent)
        self.learn_prior_z0 = prior != "ou_fixed"
        stationary_std = 1.0 if self.learn_prior_z0 else diffusion_scale / math.sqrt(2 * ou_rate)
        self.prior_z0_log_std = jnp.full(latent, math.log(stationary_std), dtype=float)
        self.channels, self.latent, self.context = channels, latent, context
        self.obs_std, self.dt0 = float(obs_std), float(dt0)
        self.likelihood = likelihood
        self.solver, self.on_failure = solver, on_failure

    @property
    def _dtype(self):
        return self.prior_z0_mean.dtype

    # -- pieces --------------------------------------------------------------------------------

    def _check_xs(self, times: np.ndarray, xs) -> Array:
        xs = jnp.asarray(xs)
        if xs.shape != (times.shape[0], self.channels):
            raise ValueError(
                f"LatentSDE needs xs of shape (time, channels) = ({times.shape[0]}, "
                f"{self.channels}) for one series observed at ts of shape {times.shape}, got "
                f"{xs.shape}; for a batch of series, jax.vmap over xs"
            )
        return xs

    def encode(
        self, ts: Float[ArrayLike, " time"], xs: Float[Array, "time data"]
    ) -> Float[Array, "time context"]:
        """The contexts `c_k`, from a GRU over `[x(t_k), t_{k+1} - t_k]` run from the last
        observation to the first (`c_k` summarises `x(t_k), …, x(t_N)`)."""
        times = _concrete_times("ts", ts)
        xs = self._check_xs(times, xs)
        dtype = self.encoder.weight_ih.dtype
        gaps = jnp.asarray(np.append(np.diff(times), 0.0), dtype)[:, None]

        def step(h, inputs):
            h = self.encoder(jnp.concatenate(inputs).astype(dtype), h)
            return h, self.to_context(h)

        h0 = jnp.zeros(self.encoder.hidden_size, dtype)
        return jax.lax.scan(step, h0, (xs.astype(dtype), gaps), reverse=True)[1]

    def initial_posterior(
        self, contexts: Float[Array, "time context"]
    ) -> tuple[Float[Array, " latent"], Float[Array, " latent"]]:
        """Mean and standard deviation of `q(z0)` from the first context."""
        mean, log_std = jnp.split(self.to_initial(contexts[0]), 2)
        return mean, jnp.exp(log_std)

    def decode(self, zs: Float[Array, "*shape latent"]) -> Float[Array, "*shape data"]:
        """The location (mean, median) of `x` given latent states (any leading axes)."""
        if self.decoder is None:
            return zs
        return zs @ self.decoder.weight.T + self.decoder.bias

    def prior_z0(self) -> tuple[Float[Array, " latent"], Float[Array, " latent"]]:
        """Mean and standard deviation of `p(z0)` (behind `stop_gradient` when fixed)."""
        mean, log_std = self.prior_z0_mean, self.prior_z0_log_std
        if not self.learn_prior_z0:
            mean, log_std = jax.lax.stop_gradient((mean, log_std))
        return mean, jnp.exp(log_std)

    def log_likelihood(
        self, xs: Float[Array, "*shape data"], zs: Float[Array, "*shape latent"]
    ) -> Float[Array, "*shape"]:
        """`log p(x | z)`, summed over the data channels: Gaussian or Laplace around
        `decode(z)` with scale `obs_std`."""
        residual = (xs - self.decode(zs)) / self.obs_std
        if self.likelihood == "laplace":
            return jnp.sum(-jnp.abs(residual) - math.log(2 * self.obs_std), axis=-1)
        log_norm = math.log(self.obs_std) + 0.5 * math.log(2 * math.pi)
        return jnp.sum(-0.5 * residual**2 - log_norm, axis=-1)

    def _solve_times(
        self, obs: np.ndarray, t0: float | None, t1: float | None, name: str
    ) -> tuple[np.ndarray, int]:
        if t0 is None:
            t0 = float(obs[0])
        if not t0 <= obs[0]:
            raise ValueError(f"t0={t0} must not be after the first observation time {name}[0]="
                             f"{obs[0]}")  # fmt: skip
        if t1 is not None and not t1 >= obs[-1]:
            raise ValueError(f"t1={t1} must not be before the last observation time {name}[-1]="
                             f"{obs[-1]}")  # fmt: skip
        start = 0 if t0 == obs[0] else 1  # the index of the first observation in times
        times = obs if start == 0 else np.concatenate([[t0], obs]).astype(obs.dtype)
        if t1 is not None and t1 > obs[-1]:
            times = np.append(times, t1).astype(obs.dtype)
        if times.shape[0] < 2:
            raise ValueError(
                f"LatentSDE needs a time span: give at least two observation times, or t0 "
                f"before {name}[0]={obs[0]}"
            )
        return times, start

    def _posterior_paths(self, obs, xs, times, *, key, n_samples):
        """Posterior paths at `times` and the accumulated path KL, with `q(z0)`'s moments."""
        contexts = self.encode(obs, xs)
        mean, std = self.initial_posterior(contexts)
        z_key, path_key = jax.random.split(key)
        z0 = mean + std * jax.random.normal(z_key, (n_samples, self.latent), mean.dtype)
        args = (jnp.asarray(obs, times.dtype), contexts)
        zs, kl = sdeint_path_kl(
            _Posterior(self.posterior_drift), _Prior(self.prior_drift), self.diffusion,
            z0, times, key=path_key, args=args, dt0=self.dt0, solver=self.solver,
            on_failure=self.on_failure, batch="vmap",
        )  # fmt: skip
        return zs, kl, mean, std

    # -- public --------------------------------------------------------------------------------

    def elbo(
        self,
        ts: Float[ArrayLike, " time"],
        xs: Float[Array, "time data"],
        *,
        key: PRNGKeyArray,
        n_samples: int = 1,
        kl_weight: float | Scalar = 1.0,
        t0: float | None = None,
        t1: float | None = None,
    ) -> ELBO:
        """Monte-Carlo estimate of the ELBO of one series `xs` observed at times `ts`.

        `log p(x | z)` (`log_likelihood`: Gaussian or Laplace around `decode(z(t_k))`) is
        summed over times and channels; `KL(q(z0) ‖ p(z0))` is closed-form; the path KL is the
        integrated extra state. All three are averaged over `n_samples` posterior paths (each
        its own Brownian path). `kl_weight` multiplies both KL terms in `value` (KL annealing;
        see `kl_warmup`). `t0` (default `ts[0]`) is where `z0` lives; `t1` (default `ts[-1]`)
        is where the path KL ends: beyond the last observation it pulls the posterior back to
        the prior there (torchsde's sine example integrates to 2.0, past its data).
        """
        _check_samples(n_samples)
        obs = _concrete_times("ts", ts, self._dtype)
        xs = self._check_xs(obs, xs)
        if jnp.ndim(kl_weight) != 0:
            raise ValueError(f"kl_weight must be a scalar, got shape {jnp.shape(kl_weight)}")
        times, start = self._solve_times(obs, t0, t1, "ts")
        zs, kl, mean, std = self._posterior_paths(obs, xs, times, key=key, n_samples=n_samples)
        at_obs = zs[:, start : start + obs.shape[0]]
        log_lik = jnp.mean(jnp.sum(self.log_likelihood(xs, at_obs), axis=1))
        p_mean, p_std = self.prior_z0()
        kl_z0 = jnp.sum(
            jnp.log(p_std / std) + (std**2 + (mean - p_mean) ** 2) / (2 * p_std**2) - 0.5
        )
        kl_path = jnp.mean(kl[:, -1])
        value = log_lik - kl_weight * (kl_z0 + kl_path)
        return ELBO(value, log_lik, kl_z0, kl_path)

    def sample_posterior(
        self,
        ts: Float[ArrayLike, " time"],
        xs: Float[Array, "obs data"],
        obs_ts: Float[ArrayLike, " obs"],
        *,
        key: PRNGKeyArray,
        n_samples: int = 1,
    ) -> Float[Array, "n_samples time latent"]:
        """Latent paths of the posterior given `xs` observed at `obs_ts`, saved at `ts`.

        The solve starts at `ts[0]` (where `z0 ~ q(z0)`; it must not be after `obs_ts[0]`,
        and should be the `t0` used in training) and steps to every time of `ts` and
        `obs_ts`. `decode` maps the result to the data space."""
        _check_samples(n_samples)
        save = _concrete_times("ts", ts, self._dtype)
        obs = _concrete_times("obs_ts", obs_ts, self._dtype)
        xs = self._check_xs(obs, xs)
        if save[0] > obs[0]:
            raise ValueError(f"ts[0]={save[0]} must not be after obs_ts[0]={obs[0]} (the "
                             "posterior starts at ts[0])")  # fmt: skip
        times = np.union1d(save, obs).astype(save.dtype)
        if times.shape[0] < 2:
            raise ValueError("sample_posterior needs at least two distinct times")
        zs, _, _, _ = self._posterior_paths(obs, xs, times, key=key, n_samples=n_samples)
        return zs[:, np.searchsorted(times, save)]

    def sample_prior(
        self, ts: Float[ArrayLike, " time"], *, key: PRNGKeyArray, n_samples: int = 1
    ) -> Float[Array, "n_samples time latent"]:
        """Latent paths of the prior: `z0 ~ p(z0)` at `ts[0]`, then `dz = h dt + g dW`."""
        _check_samples(n_samples)
        times = _concrete_times("ts", ts, self._dtype)
        if times.shape[0] < 2:
            raise ValueError(f"sample_prior needs at least two times, got ts of shape "
                             f"{times.shape}")  # fmt: skip
        z_key, path_key = jax.random.split(key)
        p_mean, p_std = self.prior_z0()
        z0 = p_mean + p_std * jax.random.normal(z_key, (n_samples, self.latent), p_mean.dtype)
        sol = sdeint(
            _Prior(self.prior_drift), self.diffusion, z0, times, key=path_key, noise="diagonal",
            solver=self.solver, dt0=self.dt0, on_failure=self.on_failure, batch="vmap",
        )  # fmt: skip
        return sol.ys


# --- KL annealing -----------------------------------------------------------------------------
