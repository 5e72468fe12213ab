"""Stable neural SDEs for irregular time series (Oh, Lim & Kim, ICLR 2024).

Oh, Lim & Kim (2024), "Stable Neural Stochastic Differential Equations in Analyzing Irregular
Time Series Data", propose three classes of neural SDE whose drift and diffusion are shaped so
that a unique strong solution exists and the model is robust to distribution shift (missing
data), and compare them with a naive neural SDE whose diffusion is an unconstrained network of
the state. All four read an irregular series through its continuous path `X` (the
backward-Hermite cubic of `jaxdyn.data.hermite_coefficients`, time as a channel):

    z(t_0) = ℓ_0(X(t_0)),                              ℓ_0 linear: the first observation
    z̃(t)   = ζ(t, z(t), X(t)),                         the control enters the drift
    Neural LSDE    dz = γ(z̃(t)) dt      + σ(t) dW(t)         (Langevin-type, additive noise)
    Neural LNSDE   dz = γ(t, z̃(t)) dt   + σ(t) ⊙ z(t) dW(t)  (linear multiplicative noise)
    Neural GSDE    dz = z ⊙ γ(t, z̃(t)) dt + σ(t) ⊙ z(t) dW(t), i.e. dz/z = γ dt + σ dW
    Neural SDE     dz = γ(t, z̃(t)) dt   + g(t, z(t), X(t)) dW(t)  (naive: g any network)
    output = ℓ(z(t_N))  (ℓ(log z(t_N)) for the GSDE),  ℓ linear

with diagonal noise (one Brownian motion per state coordinate), Itô calculus, solved by
`jaxdyn.solve.sdeint` (Euler–Maruyama on a fixed grid by default, as the paper's experiments).

The networks follow the authors' code (`Diffusion_model` in their repository): ζ is a linear map
of the concatenation `[φ(t), z, X(t)]` with `φ(t) = (sin t, cos t)` (no `φ` for the LSDE, whose
drift is autonomous apart from the control; the GSDE's reads `log z`); `γ = tanh ∘ MLP ∘ relu`
with ReLU hidden layers; `σ(t) = tanh(s · relu(MLP(φ(t))))` with a learnt scale
`s = sigmoid(θ)`. Each class's docstring states the paper's conditions for it and how they
hold by construction.
"""

import numbers
from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ..data import HermiteCoefficients
from ..solve import OnFailure, Solution, sdeint
from ._arguments import check_sizes
from ._paths import series_path
from ._solve import solve_options

__all__ = [
    "ControlledDrift",
    "ControlledNeuralSDE",
    "NeuralGSDE",
    "NeuralLNSDE",
    "NeuralLSDE",
    "SDE_CLASSIFIERS",
    "TimeDiffusion",
]


def _time_features(t: Scalar) -> Float[Array, "2"]:
    """`φ(t) = (sin t, cos t)`, the time embedding of the authors' code."""
    return jnp.stack([jnp.sin(t), jnp.cos(t)])


def _controlled_inputs(t: Scalar, z: Array, x: Array, time: bool = True) -> Array:
    """`[φ(t), z, x]` in the state's dtype (`[z, x]` when `time=False`): what `ζ` and the naive
    diffusion read."""
    parts = ([_time_features(t).astype(z.dtype)] if time else []) + [z, x.astype(z.dtype)]
    return jnp.concatenate(parts)


def _scaled_tanh(mlp: eqx.nn.MLP, theta: Array, inputs: Array) -> Array:
    """`tanh(s · relu(MLP(inputs)))` with `s = sigmoid(θ)`: the authors' bounded diffusion."""
    return jnp.tanh(jax.nn.sigmoid(theta) * jax.nn.relu(mlp(inputs)))


class ControlledDrift(eqx.Module):
    """The drift network `γ(t, z̃)` with the control embedding `z̃ = ζ(t, z, X(t))`.

        ζ(t, z, x) = A [φ(t), z, x] + a          (linear; `φ` omitted when `time=False`)
        γ          = tanh(MLP(relu(ζ)))          (ReLU hidden layers, `tanh` output)

    `γ` takes values in `(-1, 1)^hidden` for every parameter value (bounded), and is Lipschitz
    in `z` (a composition of affine maps and 1-Lipschitz activations).
    """

    embed: eqx.nn.Linear
    mlp: eqx.nn.MLP
    time: bool = eqx.field(static=True)

    def __init__(
        self,
        *,
        hidden: int,
        channels: int,
        width: int,
        depth: int,
        time: bool = True,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `hidden`, the state size; `channels`, the path's; `width`, the size
        of `ζ`'s output and of the MLP's hidden layers; `depth`, the MLP's hidden layers;
        `time`, whether `ζ` sees `φ(t)`; `key`."""
        check_sizes(hidden=hidden, channels=channels, width=width, depth=depth)
        k_embed, k_mlp = jax.random.split(key)
        self.time = time
        self.embed = eqx.nn.Linear(hidden + channels + (2 if time else 0), width, key=k_embed)
        self.mlp = eqx.nn.MLP(
            width, hidden, width, depth, activation=jax.nn.relu, final_activation=jnp.tanh,
            key=k_mlp,
        )  # fmt: skip

    def embedding(
        self, t: Scalar, z: Float[Array, " hidden"], x: Float[Array, " channels"]
    ) -> Float[Array, " width"]:
        """`z̃ = ζ(t, z, X(t))`."""
        return self.embed(_controlled_inputs(t, z, x, self.time))

    def __call__(
        self, t: Scalar, z: Float[Array, " hidden"], x: Float[Array, " channels"]
    ) -> Float[Array, " hidden"]:
        """`γ(t, ζ(t, z, x))`, each component in `(-1, 1)`."""
        return self.mlp(jax.nn.relu(self.embedding(t, z, x)))


class TimeDiffusion(eqx.Module):
    """A diffusion coefficient of time only, `σ(t) = tanh(s · relu(MLP(φ(t))))`, `s = sigmoid(θ)`.

    Its values lie in `[0, 1)^hidden` for every parameter value (bounded, non-negative), and it
    is continuous and Lipschitz in `t`: the conditions the paper puts on `σ`. It cannot depend
    on the state, by construction (it is never given it).
    """

    mlp: eqx.nn.MLP
    theta: Float[Array, ""]

    def __init__(
        self, *, hidden: int, width: int, depth: int, theta: float = 1.0, key: PRNGKeyArray
    ):
        """**Arguments:** `hidden`, the state size; `width`, `depth`, of the MLP on `φ(t)`;
        `theta`, the initial logit of the scale `s` (1.0, as the authors' code); `key`."""
        check_sizes(hidden=hidden, width=width, depth=depth)
        self.mlp = eqx.nn.MLP(2, hidden, width, depth, activation=jax.nn.relu, key=key)
        self.theta = jnp.asarray(theta, dtype=self.mlp.layers[0].weight.dtype)

    def __call__(self, t: Scalar) -> Float[Array, " hidden"]:
        return _scaled_tanh(self.mlp, self.theta, _time_features(t).astype(self.theta.dtype))


class _StateDiffusion(eqx.Module):
    """The naive neural SDE's diffusion `g(t, z, x) = tanh(s · relu(MLP([φ(t), z, x])))`:
    bounded, as in the authors' code, but a nonlinear function of the state."""

    mlp: eqx.nn.MLP
    theta: Float[Array, ""]

    def __init__(self, *, hidden: int, channels: int, width: int, depth: int, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(
            2 + hidden + channels, hidden, width, depth, activation=jax.nn.relu, key=key
        )
        self.theta = jnp.asarray(1.0, dtype=self.mlp.layers[0].weight.dtype)

    def __call__(self, t, z, x):
        return _scaled_tanh(self.mlp, self.theta, _controlled_inputs(t, z, x))


def _save_times(ts) -> Array:
    """`[ts[0], ts[-1]]` as a concrete array: `sdeint` builds its step grid at trace time."""
    if isinstance(ts, jax.core.Tracer):
        raise ValueError(
            "the grid ts must be known at trace time (sdeint builds its fixed-step grid from "
            "it): close over ts instead of passing it as an argument of a jitted function"
        )
    ts = np.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must have shape (time,) with time >= 2, got {ts.shape}")
    with jax.ensure_compile_time_eval():  # a constant, not a tracer, inside jit
        return jnp.asarray(ts[[0, -1]])


class _PathSDEClassifier(eqx.Module):
    """What the four classifiers share: `z(t_0) = ℓ_0(X(t_0))`, an SDE driven by the path
    `X` (given to the drift and diffusion as `args`), and `output = ℓ(z(t_N))`.

    **Arguments** (keywords): `channels`, of the path (time included); `hidden`, the state
    size; `out`, the readout size (`None`: return the final state); `width`, `depth`, of the
    drift and diffusion networks; `dt0`, the fixed step size (the Brownian path is drawn on
    that grid); `solver`, an `sdeint` solver name (`euler`, Euler–Maruyama, by default, as
    the paper) or a Diffrax solver; `adjoint`, `max_steps` (`None`: `sdeint`'s default),
    `on_failure`, as for `sdeint`; `key`.
    """

    initial: eqx.nn.Linear
    drift: ControlledDrift
    diffusion: eqx.Module
    readout: eqx.nn.Linear | None
    hidden: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    dt0: float = eqx.field(static=True)
    solver: str | dfx.AbstractSolver = eqx.field(static=True)
    adjoint: str | dfx.AbstractAdjoint = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    on_failure: OnFailure = eqx.field(static=True)

    # Subclasses: the noise type sdeint integrates, whether ζ sees φ(t), the diffusion
    # network, the SDE in solver coordinates, and the map from solver coordinates back to z
    # (the identity except for the GSDE, solved for log z).
    noise = "diagonal"
    drift_time: ClassVar[bool] = True

    def __init__(
        self,
        *,
        channels: int,
        hidden: int,
        out: int | None,
        width: int,
        depth: int,
        dt0: float,
        solver: str | dfx.AbstractSolver = "euler",
        adjoint: str | dfx.AbstractAdjoint = "checkpoint",
        max_steps: int | None = None,
        on_failure: OnFailure = "raise",
        key: PRNGKeyArray,
    ):
        check_sizes(channels=channels, hidden=hidden, width=width, depth=depth)
        if out is not None:
            check_sizes(out=out)
        if isinstance(dt0, bool) or not (isinstance(dt0, numbers.Real) and dt0 > 0):
            raise ValueError(f"{type(self).__name__} needs dt0 > 0 (the fixed step size), got "
                             f"{dt0!r}")  # fmt: skip
        k_common, k_diffusion = jax.random.split(key)
        k_initial, k_drift, k_readout = jax.random.split(k_common, 3)
        self.hidden, self.channels = hidden, channels
        self.initial = eqx.nn.Linear(channels, hidden, key=k_initial)
        self.drift = ControlledDrift(hidden=hidden, channels=channels, width=width, depth=depth,
                                     time=self.drift_time, key=k_drift)  # fmt: skip
        self.diffusion = self._diffusion_network(
            hidden=hidden, channels=channels, width=width, depth=depth, key=k_diffusion
        )
        self.readout = None if out is None else eqx.nn.Linear(hidden, out, key=k_readout)
        self.dt0, self.solver, self.adjoint = float(dt0), solver, adjoint
        self.max_steps, self.on_failure = max_steps, on_failure

    def _diffusion_network(self, *, hidden, channels, width, depth, key) -> eqx.Module:
        """`σ(t)` (`TimeDiffusion`) for the stable classes."""
        return TimeDiffusion(hidden=hidden, width=width, depth=depth, key=key)

    def _initial_state(self, x0: Array) -> Array:
        return self.initial(x0)

    def _sde_drift(self, t, y, path: dfx.AbstractPath) -> Array:
        return self.drift(t, y, path.evaluate(t))

    def _sde_diffusion(self, t, y, path: dfx.AbstractPath) -> Array:
        raise NotImplementedError

    def _to_z(self, y: Array) -> Array:
        return y

    def _features(self, y: Array) -> Array:
        """What the readout sees of the final state in solver coordinates."""
        return self._to_z(y)

    def _path(self, ts, coefficients: HermiteCoefficients) -> dfx.CubicInterpolation:
        return series_path(type(self).__name__, self.channels, ts, coefficients)

    def _solve(self, ts, coefficients, *, key, save_ts) -> Solution:
        """The solve in solver coordinates (`log z` for the GSDE)."""
        save = _save_times(ts) if save_ts is None else jnp.asarray(save_ts)
        path = self._path(jnp.asarray(ts), coefficients)
        y0 = self._initial_state(path.evaluate(path.t0))
        options = solve_options(
            self, "noise", "solver", "dt0", "adjoint", "max_steps", "on_failure"
        )
        return sdeint(self._sde_drift, self._sde_diffusion, y0, save, key=key, args=path, **options)

    def solve(
        self,
        ts: Float[Array, " time"],
        coefficients: HermiteCoefficients,
        *,
        key: PRNGKeyArray,
        save_ts: Float[Array, " save"] | None = None,
    ) -> Solution:
        """The hidden state `z` at `save_ts` (default `[ts[0], ts[-1]]`, which must then be
        known at trace time) as a `Solution` with `ys` of shape `(save, hidden)`, for one
        series: `ts` is its grid and `coefficients` its `hermite_coefficients`, each of shape
        `(time - 1, channels)`."""
        sol = self._solve(ts, coefficients, key=key, save_ts=save_ts)
        return eqx.tree_at(lambda s: s.ys, sol, self._to_z(sol.ys))

    def __call__(
        self, ts: Float[Array, " time"], coefficients: HermiteCoefficients, *, key: PRNGKeyArray
    ) -> Float[Array, " out"]:
        """The readout `ℓ(z(ts[-1]))` of one series (`ℓ(log z(ts[-1]))` for the GSDE; the
        state itself if `out=None`), for one Brownian path drawn from `key`. Batches:
        `jax.vmap` over the coefficients and keys, one key per series."""
        features = self._features(self._solve(ts, coefficients, key=key, save_ts=None).ys[-1])
        return features if self.readout is None else self.readout(features)


class NeuralLSDE(_PathSDEClassifier):
    """Neural Langevin-type SDE (Oh, Lim & Kim 2024, with the controlled path of their §3.4):

        dz(t) = γ(z̃(t)) dt + σ(t) dW(t),    z̃(t) = ζ(z(t), X(t)).

    **Stability conditions and how they hold by construction.** The paper's existence,
    uniqueness and robustness results for this class ask for (i) a drift that is Lipschitz
    and of linear growth in `z`, and (ii) a diffusion that does not depend on `z` and is
    bounded and continuous in `t`. (i): `γ = tanh ∘ MLP ∘ relu ∘ ζ` is bounded by 1 in every
    component and Lipschitz in `z` for every parameter value. (ii): `σ = TimeDiffusion` is
    only given `t`, and lies in `[0, 1)`. The noise is additive, so Itô and Stratonovich
    agree and Euler–Maruyama is also Milstein. `ζ` sees no time features (the drift is
    autonomous apart from the control, as the paper's `γ(z̃)`; time still reaches it as a
    channel of `X`).
    """

    diffusion: TimeDiffusion
    noise = "additive"
    drift_time = False

    def _sde_diffusion(self, t, z, path):
        return self.diffusion(t).astype(z.dtype)


class NeuralLNSDE(_PathSDEClassifier):
    """Neural linear-noise SDE (Oh, Lim & Kim 2024, with the controlled path of their §3.4):

        dz(t) = γ(t, z̃(t)) dt + σ(t) ⊙ z(t) dW(t),    z̃(t) = ζ(t, z(t), X(t)),

    one Brownian motion per coordinate (diagonal noise).

    **Stability conditions and how they hold by construction.** The paper asks for a drift
    Lipschitz and of linear growth in `z`, and a diffusion linear in `z` with a bounded,
    continuous coefficient of time only. The drift is `tanh`-terminated (bounded by 1,
    Lipschitz in `z`); the diffusion is exactly `σ(t) ⊙ z` with `σ = TimeDiffusion` in
    `[0, 1)`, never given the state. (The authors' code applies a further `tanh` to
    `σ(t) z`, which makes the noise bounded but no longer linear; we keep the paper's linear
    form.) Not enforced: the paper's condition for exponential stability of the zero
    solution (noise strong enough relative to the drift's Lipschitz constant).
    """

    diffusion: TimeDiffusion

    def _sde_diffusion(self, t, z, path):
        return self.diffusion(t).astype(z.dtype) * z


class NeuralGSDE(_PathSDEClassifier):
    """Neural geometric SDE (Oh, Lim & Kim 2024, with the controlled path of their §3.4):

        dz(t)/z(t) = γ(t, z̃(t)) dt + σ(t) dW(t),    z̃(t) = ζ(t, z(t), X(t)),

    componentwise, i.e. `dz = z ⊙ γ dt + z ⊙ σ(t) dW` (diagonal noise).

    **Stability conditions and how they hold by construction.** As for the LNSDE, the drift
    rate `γ` is `tanh`-terminated (bounded by 1) and `σ = TimeDiffusion` is a bounded
    function of time only. The class's defining property, that `z(t) > 0` for all `t` when
    `z(0) > 0` (the solution is `z(t) = z(0) exp(∫(γ - σ²/2) ds + ∫σ dW)`), is kept exactly,
    also by the discretisation: the SDE is solved for `y = log z`, which by Itô's formula
    satisfies `dy = (γ - σ(t)²/2) dt + σ(t) dW` (additive noise), and `z = exp(y)`. Euler–
    Maruyama in `z` itself can step below zero; Euler in `y` cannot. The initial state is
    positive by construction: `log z(t_0) = ℓ_0(X(t_0))`.

    **Coordinates.** `z` spans orders of magnitude (`e^{±T}` over a horizon `T`), so the
    networks read it in log scale: `z̃ = ζ(t, log z, X(t))` and the classifier is linear in
    `log z(t_N)`. This is still a drift rate of `(t, z, X)`, bounded, and Lipschitz in
    `log z`, which makes the drift of `y` bounded and Lipschitz in `y`: existence of a unique
    strong solution for `y`, hence for `z = exp(y) > 0`, follows directly. `solve` returns
    `z` itself.

    Deviations from the authors' code, which uses `tanh(MLP(z̃) · tanh(z))` as the drift in
    place of `z γ`, `tanh(σ(t) z)` as the diffusion, and a state of either sign: we implement
    the paper's equation.
    """

    diffusion: TimeDiffusion
    noise = "additive"  # in y = log z

    def _sde_drift(self, t, y, path):
        sigma = self.diffusion(t).astype(y.dtype)
        return self.drift(t, y, path.evaluate(t)) - 0.5 * sigma**2  # ζ reads log z = y

    def _sde_diffusion(self, t, y, path):
        return self.diffusion(t).astype(y.dtype)

    def _to_z(self, y):
        return jnp.exp(y)

    def _features(self, y):
        return y  # log z

    def geometric_drift(
        self, t: Scalar, z: Float[Array, " hidden"], x: Float[Array, " channels"]
    ) -> Float[Array, " hidden"]:
        """The drift `z ⊙ γ(t, ζ(t, log z, x))` of the SDE in `z` (for inspection and tests)."""
        return z * self.drift(t, jnp.log(z), x)

    def geometric_diffusion(self, t: Scalar, z: Float[Array, " hidden"]) -> Float[Array, " hidden"]:
        """The diffusion `z ⊙ σ(t)` of the SDE in `z`."""
        return z * self.diffusion(t).astype(z.dtype)


class ControlledNeuralSDE(_PathSDEClassifier):
    """The naive neural SDE classifier the paper compares against, with the control path:

        dz(t) = γ(t, z̃(t)) dt + g(t, z(t), X(t)) dW(t),    z̃(t) = ζ(t, z(t), X(t)),

    `γ` as for the LNSDE and `g = tanh(s · relu(MLP([φ(t), z, X(t)])))`, a network of the
    state (diagonal noise). Bounded like every network of the authors' code, but neither
    independent of `z` nor linear in it, so none of the paper's stability results applies: this
    is the unconstrained baseline (the authors' "Neural SDE", here also given `X` so that the
    comparison isolates the diffusion's structure).
    """

    diffusion: _StateDiffusion

    def _diffusion_network(self, *, hidden, channels, width, depth, key):
        return _StateDiffusion(hidden=hidden, channels=channels, width=width, depth=depth, key=key)

    def _sde_diffusion(self, t, z, path):
        return self.diffusion(t, z, path.evaluate(t))


#: The classifiers by name, for configs.
SDE_CLASSIFIERS: dict[str, Callable[..., _PathSDEClassifier]] = {
    "neural_sde": ControlledNeuralSDE,
    "lsde": NeuralLSDE,
    "lnsde": NeuralLNSDE,
    "gsde": NeuralGSDE,
}
