"""SINDy: sparse identification of nonlinear dynamics (Brunton, Proctor & Kutz 2016).

The model is `dx/dt = Ξ Θ(x)`: a feature library `Θ` and a sparse coefficient matrix `Ξ`
`(dim, features)` found by sparse regression of estimated derivatives on the features. Bagging
(Fasel et al. 2022, "Ensemble-SINDy") refits on bootstrap resamples of the rows for the
coefficients' uncertainty and each feature's inclusion probability.
"""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_count, check_key, check_positive
from ..solve import odeint
from .derivatives import finite_difference
from .libraries import Library, PolynomialLibrary
from .libraries import input_names as default_names
from .sparse import STLSQ, SparseFit

__all__ = [
    "SINDy",
    "SINDyEnsemble",
    "ensemble_sindy",
    "fit_sindy",
    "format_equations",
    "regression_data",
]

Optimizer = Callable[[Array, Array], SparseFit]
Derivative = Callable[[Array, float], Array]
POLYNOMIAL_2 = PolynomialLibrary(2)  # the defaults (pysindy's): immutable modules
STLSQ_DEFAULT = STLSQ()


def format_equations(
    coefficients: Float[ArrayLike, "targets features"],
    features: Sequence[str],
    lhs: Sequence[str],
    *,
    precision: int = 3,
) -> tuple[str, ...]:
    """`"lhs = c₁ f₁ + c₂ f₂ …"` for each row of `coefficients` (zero terms left out; `0` for an
    empty row)."""
    lines = []
    for name, row in zip(lhs, jnp.asarray(coefficients).tolist(), strict=True):
        terms = [f"{c:+.{precision}f}" + ("" if f == "1" else f" {f}")
                 for c, f in zip(row, features, strict=True) if c != 0]  # fmt: skip
        rhs = " ".join(terms).lstrip("+") if terms else "0"
        lines.append(f"{name} = {rhs.replace(' +', ' + ').replace(' -', ' - ')}")
    return tuple(lines)


class SINDy(eqx.Module):
    """A fitted sparse model `dx/dt = Ξ Θ(x)`: a vector field `model(t, x, args)` for one
    state `(dim,)` (or any `(..., dim)`), usable directly with `jaxdyn.odeint`.

    **Fields:** `library` (Θ), `coefficients` Ξ `(dim, features)`, `input_names`.
    """

    library: Library
    coefficients: Float[Array, "dim features"]
    input_names: tuple[str, ...] = eqx.field(static=True)

    def __call__(self, t: Any, x: Float[Array, "*batch dim"], args: Any = None) -> Array:
        return self.library(x) @ self.coefficients.T

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The library's feature names for this model's inputs."""
        return self.library.names(self.input_names)

    @property
    def support(self) -> Array:
        """Which coefficients are non-zero, `(dim, features)`."""
        return self.coefficients != 0

    def equations(self, precision: int = 3) -> tuple[str, ...]:
        """The model as text, one line per coordinate: `"(x)' = -10.000 x + 10.000 y"`."""
        lhs = [f"({n})'" for n in self.input_names]
        return format_equations(self.coefficients, self.feature_names, lhs, precision=precision)

    def simulate(
        self, x0: Float[ArrayLike, " dim"], ts: Float[ArrayLike, " time"], **odeint_kwargs: Any
    ) -> Float[Array, "time dim"]:
        """The model's trajectory from `x0` at `ts` (`jaxdyn.odeint`; Tsit5 with rtol = atol =
        1e-6 unless `odeint_kwargs` say otherwise)."""
        ts = jnp.asarray(ts)
        kwargs = {"solver": "tsit5", "rtol": 1e-6, "atol": 1e-6} | odeint_kwargs
        return odeint(self, jnp.asarray(x0, ts.dtype), ts, **kwargs).ys


def _trajectories(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if x.ndim == 2:
        return x[None]
    if x.ndim != 3:
        raise ValueError(
            f"x must be one trajectory (time, dim) or several (trajectories, time, dim), got "
            f"shape {x.shape}"
        )
    return x


def regression_data(
    x: ArrayLike,
    dt: float,
    library: Library,
    *,
    derivative: Derivative | ArrayLike | None = None,
) -> tuple[Float[Array, "samples features"], Float[Array, "samples dim"]]:
    """`(Θ(x), dx/dt)` stacked over time (and trajectories): the regression SINDy solves.
    `derivative` is a function `(x (time, dim), dt) → dx/dt` (default second-order
    `finite_difference`) or the derivatives themselves, shaped as `x`."""
    check_positive("dt", dt)
    xs = _trajectories(x)
    if derivative is None or callable(derivative):
        differentiate = finite_difference if derivative is None else derivative
        x_dot = jnp.stack([differentiate(xi, dt) for xi in xs])
    else:
        x_dot = _trajectories(derivative)
        if x_dot.shape != xs.shape:
            raise ValueError(f"derivative has shape {x_dot.shape}, x has {xs.shape}; give one "
                             "derivative per sample")  # fmt: skip
    dim = xs.shape[-1]
    return library(xs.reshape(-1, dim)), x_dot.reshape(-1, dim)


def fit_sindy(
    x: Float[ArrayLike, "*trajectories time dim"],
    dt: float,
    *,
    library: Library = POLYNOMIAL_2,
    optimizer: Optimizer = STLSQ_DEFAULT,
    derivative: Derivative | ArrayLike | None = None,
    input_names: Sequence[str] | None = None,
) -> SINDy:
    """Fit `dx/dt = Ξ Θ(x)` to samples `x` every `dt` (one trajectory `(time, dim)` or several
    `(trajectories, time, dim)`): `optimizer(Θ(x), dx/dt)` with the derivatives from
    `derivative` (see `regression_data`). Defaults: degree-2 polynomials, STLSQ (threshold 0.1,
    α = 0.05), second-order finite differences — pysindy's defaults, with the same result on
    the same data. Jittable (`eqx.filter_jit`, with `dt` a Python number) and vmappable over
    data or optimizer fields."""
    theta, x_dot = regression_data(x, dt, library, derivative=derivative)
    names = default_names(x_dot.shape[-1], input_names)
    fit = optimizer(theta, x_dot)
    return SINDy(library, fit.coefficients, names)


class SINDyEnsemble(eqx.Module):
    """Bagged SINDy fits: `coefficients` `(models, dim, features)`, one fit per bootstrap
    resample. `inclusion` is each term's frequency of being selected; `median()` the model of
    the median coefficients (Fasel et al. 2022's "bragging")."""

    library: Library
    coefficients: Float[Array, "models dim features"]
    input_names: tuple[str, ...] = eqx.field(static=True)

    @property
    def inclusion(self) -> Float[Array, "dim features"]:
        return jnp.mean(self.coefficients != 0, axis=0)

    @property
    def std(self) -> Float[Array, "dim features"]:
        return jnp.std(self.coefficients, axis=0)

    def median(self) -> SINDy:
        return SINDy(self.library, jnp.median(self.coefficients, axis=0), self.input_names)


def ensemble_sindy(
    x: Float[ArrayLike, "*trajectories time dim"],
    dt: float,
    *,
    key: PRNGKeyArray,
    num_models: int = 20,
    library: Library = POLYNOMIAL_2,
    optimizer: Optimizer = STLSQ_DEFAULT,
    derivative: Derivative | ArrayLike | None = None,
    input_names: Sequence[str] | None = None,
) -> SINDyEnsemble:
    """`num_models` SINDy fits, each on a bootstrap resample (with replacement) of the rows of
    the regression `(Θ(x), dx/dt)`, in one vmapped program (Fasel et al. 2022)."""
    check_key(key, "ensemble_sindy")
    check_count("num_models", num_models)
    theta, x_dot = regression_data(x, dt, library, derivative=derivative)
    names = default_names(x_dot.shape[-1], input_names)
    n = theta.shape[0]

    def one(k):
        rows = jax.random.randint(k, (n,), 0, n)
        return optimizer(theta[rows], x_dot[rows]).coefficients

    coefficients = jax.vmap(one)(jax.random.split(key, num_models))
    return SINDyEnsemble(library, coefficients, names)
