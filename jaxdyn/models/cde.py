"""Neural controlled differential equations (Kidger, Morrill, Foster & Lyons 2020)."""

from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._checks import lookup
from ..data import HermiteCoefficients
from ..solve import OnFailure, Solution, cdeint
from ._arguments import check_sizes
from ._paths import series_path
from ._solve import ODE_OPTIONS, solve_options
from .fields import ACTIVATIONS

__all__ = ["CDEField", "NeuralCDE"]


class CDEField(eqx.Module):
    """The matrix-valued field `f_θ(h) ∈ R^{hidden × channels}` of a neural CDE.

    An MLP from `R^hidden` to `R^{hidden·channels}`, reshaped, with a final `tanh` that keeps
    the field bounded (Kidger et al. 2020, §4: ReLU hidden layers, tanh output). It is
    autonomous: time reaches the CDE as a channel of the path.
    """

    mlp: eqx.nn.MLP
    hidden: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        hidden: int,
        channels: int,
        width: int,
        depth: int,
        activation: str | Callable = "relu",
        key: PRNGKeyArray,
    ):
        """**Arguments:** `hidden`, the state size; `channels`, the path's; `width` and
        `depth`, the MLP's hidden layers; `activation` by name (`ACTIVATIONS`) or callable."""
        check_sizes(hidden=hidden, channels=channels, width=width, depth=depth)
        self.hidden = hidden
        self.channels = channels
        activation = lookup("activation", activation, ACTIVATIONS)
        self.mlp = eqx.nn.MLP(hidden, hidden * channels, width, depth, activation=activation,
                              final_activation=jnp.tanh, key=key)  # fmt: skip

    def __call__(
        self, t: Scalar, h: Float[Array, " hidden"], args=None
    ) -> Float[Array, "hidden channels"]:
        return self.mlp(h).reshape(self.hidden, self.channels)


class NeuralCDE(eqx.Module):
    """A neural CDE classifier/regressor for one (irregularly sampled) time series.

        h(t_0) = ζ_θ(X(t_0)),    dh(t) = f_θ(h(t)) dX(t),    output = ℓ_θ(h(t_N)),

    with `X` the cubic path through the observations (time is one of its channels, so
    `ζ_θ(X(t_0))` is the paper's `ζ_θ(t_0, x_0)`), `ζ_θ` and `ℓ_θ` linear and `f_θ` a
    `CDEField`. Kidger, Morrill, Foster & Lyons (2020), "Neural Controlled Differential
    Equations for Irregular Time Series".

    Calling it with the grid `ts` and the `hermite_coefficients` of one series returns the
    readout, shape `(out,)` (the final hidden state when `out=None`). Batches: `jax.vmap`
    over the coefficients (`in_axes=(None, 0)`).
    """

    initial: eqx.nn.Linear
    field: CDEField
    readout: eqx.nn.Linear | None
    solver: str | dfx.AbstractSolver = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    adjoint: str | dfx.AbstractAdjoint = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    on_failure: OnFailure = eqx.field(static=True)

    def __init__(
        self,
        *,
        channels: int,
        hidden: int,
        out: int | None,
        width: int,
        depth: int,
        activation: str | Callable = "relu",
        solver: str | dfx.AbstractSolver = "tsit5",
        rtol: float | None = None,
        atol: float | None = None,
        dt0: float | None = None,
        adjoint: str | dfx.AbstractAdjoint = "checkpoint",
        max_steps: int | None = None,
        on_failure: OnFailure = "raise",
        key: PRNGKeyArray,
    ):
        """**Arguments:** `channels`, of the path (time and counts included); `hidden`, the
        CDE state size; `out`, the readout size (`None` for no readout); `width`, `depth`,
        `activation`, of the field's MLP; the solve options, as for `cdeint` (`max_steps=None`:
        `cdeint`'s default); `key`."""
        if out is not None:
            check_sizes(out=out)
        k_initial, k_field, k_readout = jax.random.split(key, 3)
        self.field = CDEField(hidden=hidden, channels=channels, width=width, depth=depth,
                              activation=activation, key=k_field)  # fmt: skip
        self.initial = eqx.nn.Linear(channels, hidden, key=k_initial)
        self.readout = None if out is None else eqx.nn.Linear(hidden, out, key=k_readout)
        self.solver = solver
        self.rtol = rtol
        self.atol = atol
        self.dt0 = dt0
        self.adjoint = adjoint
        self.max_steps = max_steps
        self.on_failure = on_failure

    def solve(
        self,
        ts: Float[Array, " time"],
        coefficients: HermiteCoefficients,
        save_ts: Float[Array, " save"] | None = None,
    ) -> Solution:
        """The hidden path `h` at `save_ts` (default: every time of `ts`) as a `Solution`
        with `ys` of shape `(save, hidden)`, plus solver statistics."""
        path = series_path("NeuralCDE", self.field.channels, ts, coefficients)
        h0 = self.initial(path.evaluate(path.t0))
        save_ts = ts if save_ts is None else save_ts
        return cdeint(self.field, path, h0, save_ts, **solve_options(self, *ODE_OPTIONS))

    def hidden_path(
        self, ts: Float[Array, " time"], coefficients: HermiteCoefficients
    ) -> Float[Array, "time hidden"]:
        """The hidden state at every time of `ts`."""
        return self.solve(ts, coefficients).ys

    def __call__(
        self, ts: Float[Array, " time"], coefficients: HermiteCoefficients
    ) -> Float[Array, " out"]:
        """The readout of the final hidden state `h(ts[-1])` (the state itself if
        `out=None`). Only the endpoints are saved, the cheapest `SaveAt`."""
        h_final = self.solve(ts, coefficients, jnp.stack([ts[0], ts[-1]])).ys[-1]
        return h_final if self.readout is None else self.readout(h_final)
