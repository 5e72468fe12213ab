"""What an adaptive Runge–Kutta solver already computes on every step, as differentiable
numbers: its scaled local error estimate and its stiffness (dominant eigenvalue) estimate, and
a solver wrapper that sums them over the accepted steps of a solve (Pal, Ma, Shah &
Rackauckas 2021)."""

from typing import Any, NamedTuple

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from .._solvers import DEFAULT_TOL, has_error_estimate

__all__ = [
    "STABILITY_SIZES",
    "Heuristics",
    "HeuristicsSolver",
    "heuristics_solver",
    "StepHeuristics",
    "scaled_error",
    "step_heuristics",
    "stiffness_estimate",
]

#: The extent of each solver's region of absolute stability along the negative real axis
#: (`|hλ|` at its boundary), as OrdinaryDiffEq's `alg_stability_size` gives it; a step is
#: limited by stability rather than accuracy when `|λ| dt` approaches it.
STABILITY_SIZES: dict[type[dfx.AbstractSolver], float] = {dfx.Tsit5: 3.5068, dfx.Dopri5: 3.3066}


class StepHeuristics(NamedTuple):
    """The heuristics of one step: `error`, the scaled error estimate `E` that the step-size
    controller compares with 1, and `eigenvalue`, the stiffness estimate `|λ̂|` (0 where not
    computed)."""

    error: Float[Array, ""]
    eigenvalue: Float[Array, ""]


class Heuristics(NamedTuple):
    """Sums over the accepted steps `n` of a solve (step sizes `dt_n`, stability size `S`):

    - `error`: `Σ_n dt_n E_n`, the error-estimate regulariser `R_E` of Pal et al. (2021);
    - `stiffness_sum`: `Σ_n dt_n |λ̂_n| / S`, a quadrature of `∫ |λ(t)| dt / S`, the number
      of steps that stability alone would force on the solver;
    - `stiffness_max`: `max_n |λ̂_n| / S`, the largest such rate (steps per unit time).
    """

    error: Float[Array, ""]
    stiffness_sum: Float[Array, ""]
    stiffness_max: Float[Array, ""]


def _where_finite(x: Array) -> Array:
    return jnp.where(jnp.isfinite(x), x, 0.0)


def _norm(tree: PyTree[Array]) -> Array:
    """Euclidean norm over all leaves, with a finite gradient at 0."""
    squares = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def scaled_error(
    y0: PyTree[Array],
    y1: PyTree[Array],
    y_error: PyTree[Array],
    rtol: float,
    atol: float,
    norm=optx.rms_norm,
) -> Float[Array, ""]:
    """The error estimate as Diffrax's `PIDController` scales it before comparing it with 1:

        E = norm(y_error / (atol + rtol · max(|y0|, |y1|)))

    with `norm` the root mean square over all entries (`optimistix.rms_norm`, the controller's
    default). Non-finite entries (a step into a region where the field is NaN, which the
    controller rejects, so the sums never see it) count as 0 here; `step_heuristics`, which
    has no controller, reports such a step as NaN instead.
    """

    def scale(a, b, e):
        b = jnp.where(jnp.isnan(b), a, b)
        return _where_finite(e) / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))

    return norm(jax.tree.map(scale, y0, y1, y_error))


def _check_stiffness_solver(solver: dfx.AbstractSolver) -> None:
    if type(solver) not in STABILITY_SIZES:
        names = sorted(cls.__name__ for cls in STABILITY_SIZES)
        raise ValueError(
            f"the stiffness estimate needs a solver whose last two stages both sit at the end "
            f"of the step ({names}), got {type(solver).__name__}"
        )


def stiffness_estimate(
    solver: dfx.AbstractSolver, y0: PyTree[Array], dt: Array, ks: PyTree[Array]
) -> Float[Array, ""]:
    """The dominant-eigenvalue estimate of one step of Tsit5 or Dopri5 (Shampine 1977; Hairer
    & Wanner, "Solving ODEs II", IV.2; OrdinaryDiffEq's stiffness detection):

        |λ̂| = ‖f(y₁) − f(g_{s−1})‖ / ‖y₁ − g_{s−1}‖,

    where `y₁ = g_s` and `g_{s−1}` are the last two stages, both at the end of the step (so the
    quotient is a difference quotient of `f` in `y` alone). `ks` are the stages in Diffrax's
    "k-space" (`k_i = dt f(g_i)`, leading axis the stage), as a step returns them in
    `dense_info["k"]`. On `y' = A y` the quotient is a Rayleigh-like ratio `‖A v‖/‖v‖ ≤ ρ(A)`,
    close to the spectral radius when the fastest mode dominates `v`. 0 when `y₁ = g_{s−1}`.
    """
    _check_stiffness_solver(solver)
    tableau = solver.tableau
    last, before = tableau.a_lower[-1], tableau.a_lower[-2]
    weights = np.asarray(last) - np.pad(np.asarray(before), (0, 1))  # y₁ − g_{s−1} in k-space
    stages = len(weights)

    def combine(k):
        w = jnp.asarray(weights, k.dtype).reshape((stages,) + (1,) * (k.ndim - 1))
        return jnp.sum(w * k[:stages], axis=0)

    dy = jax.tree.map(combine, ks)
    dk = jax.tree.map(lambda k: k[stages] - k[stages - 1], ks)
    numerator, denominator = _norm(dk), jnp.abs(dt) * _norm(dy)
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def _heuristics(solver, step, t0, t1, y0, rtol, atol, stiffness) -> StepHeuristics:
    y1, y_error, dense_info = step[:3]
    if y_error is None:
        raise ValueError(f"solver {type(solver).__name__} returns no error estimate")
    error = scaled_error(y0, y1, y_error, rtol, atol)
    eigenvalue = stiffness_estimate(solver, y0, t1 - t0, dense_info["k"]) if stiffness else 0.0
    return StepHeuristics(error=error, eigenvalue=jnp.asarray(eigenvalue, error.dtype))


class HeuristicsSolver(dfx.AbstractAdaptiveSolver):
    """A Diffrax adaptive solver that also sums its own heuristics over the accepted steps.

    Each `step` takes the wrapped solver's step and returns its outputs unchanged (so the
    step-size controller, and the solution, are exactly those of the wrapped solver); its
    state is `(wrapped solver's state, Heuristics)`, with the step's `dt·E`, `dt·|λ̂|/S` and
    `|λ̂|/S` added in. Diffrax's loop keeps the previous solver state when the controller
    rejects a step, so the sums advance on accepted steps only (as in the diffrax issue #196
    recipe). Use it through `jaxdyn.regularize.solve_with_heuristics`, which gives the wrapper
    the controller's own tolerances (built by hand, its `rtol`/`atol` must equal those given
    to `odeint`, or `E` is scaled differently from the controller's). The sums are
    differentiable through `adjoint="checkpoint"` (discretise-then-optimise), not through
    `backsolve`, with the step sizes held fixed (Diffrax stops the controller's gradient).

    - `solver`: the wrapped adaptive Diffrax solver (an explicit Runge–Kutta method).
    - `rtol`, `atol`: the step-size controller's tolerances (`E` is scaled by them exactly as
      the controller scales it); `None` means jaxdyn's default, `1e-6`.
    - `stiffness`: also estimate the stiffness (Tsit5 and Dopri5 only; else
      `stiffness_sum` and `stiffness_max` stay 0).
    """

    solver: dfx.AbstractSolver
    rtol: float | None = None
    atol: float | None = None
    stiffness: bool = False

    def __check_init__(self):
        name = type(self.solver).__name__
        if not has_error_estimate(self.solver) or isinstance(self.solver, HeuristicsSolver):
            raise ValueError(
                f"HeuristicsSolver needs an adaptive solver with an error estimate, got {name}"
            )
        if isinstance(self.solver, dfx.AbstractImplicitSolver):
            # Diffrax fills in an implicit solver's root-finder tolerances only when it sees
            # the implicit solver itself; behind a wrapper they stay unset.
            raise ValueError(f"HeuristicsSolver wraps explicit Runge–Kutta solvers, got {name}")
        if self.stiffness:
            _check_stiffness_solver(self.solver)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def minimal_levy_area(self):
        """The Lévy area the wrapped (stochastic) solver needs of the Brownian path."""
        return getattr(self.solver, "minimal_levy_area", dfx.BrownianIncrement)

    @property
    def tolerances(self) -> tuple[float, float]:
        """`(rtol, atol)` with jaxdyn's defaults filled in."""
        rtol = DEFAULT_TOL if self.rtol is None else self.rtol
        atol = DEFAULT_TOL if self.atol is None else self.atol
        return rtol, atol

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args) -> tuple[Any, Heuristics]:
        dtype = jnp.result_type(*jax.tree.leaves(y0))
        zero = jnp.zeros((), dtype)
        return self.solver.init(terms, t0, t1, y0, args), Heuristics(zero, zero, zero)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        state, total = solver_state
        out = self.solver.step(terms, t0, t1, y0, args, state, made_jump)
        y1, y_error, dense_info, state, result = out
        rtol, atol = self.tolerances
        step = _heuristics(self.solver, out, t0, t1, y0, rtol, atol, self.stiffness)
        dt = jnp.abs(t1 - t0).astype(step.error.dtype)
        rate = step.eigenvalue / STABILITY_SIZES.get(type(self.solver), 1.0)
        total = Heuristics(
            error=total.error + dt * step.error,
            stiffness_sum=total.stiffness_sum + dt * rate,
            stiffness_max=jnp.maximum(total.stiffness_max, rate),
        )
        return y1, y_error, dense_info, (state, total), result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def step_heuristics(
    field,
    t0: Float[Array, ""] | float,
    y0: PyTree[Array],
    dt: Float[Array, ""] | float,
    *,
    args: Any = None,
    solver: dfx.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    stiffness: bool = True,
) -> StepHeuristics:
    """One differentiable step of `solver` (default Tsit5) from `(t0, y0)` with step size `dt`
    on `dy/dt = field(t, y, args)`, and its heuristics: the scaled error estimate `E`
    (`scaled_error`, tolerances defaulting to `1e-6`) and, with `stiffness`, the eigenvalue
    estimate `|λ̂|` (`stiffness_estimate`); NaN when the step's state or error estimate is not
    finite. The local regularisers take one such step."""
    solver = dfx.Tsit5() if solver is None else solver
    wrapper = HeuristicsSolver(solver, rtol, atol, stiffness)
    term = dfx.ODETerm(field)
    t1 = t0 + dt
    state = solver.init(term, t0, t1, y0, args)
    out = solver.step(term, t0, t1, y0, args, state, False)
    heuristics = _heuristics(solver, out, t0, t1, y0, *wrapper.tolerances, stiffness)
    # No controller rejects a step that overflows here: report it as NaN, not as error 0.
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(out[:2])]))
    return jax.tree.map(lambda x: jnp.where(finite, x, jnp.nan), heuristics)


class _ItoHeuristicsSolver(HeuristicsSolver, dfx.AbstractItoSolver):
    """`HeuristicsSolver` around an Itô SDE solver (Diffrax reads the calculus off the class)."""


class _StratonovichHeuristicsSolver(HeuristicsSolver, dfx.AbstractStratonovichSolver):
    """`HeuristicsSolver` around a Stratonovich SDE solver."""


def heuristics_solver(
    solver: dfx.AbstractSolver,
    rtol: float | None = None,
    atol: float | None = None,
    stiffness: bool = False,
) -> HeuristicsSolver:
    """`HeuristicsSolver(solver, rtol, atol, stiffness)`, marked, for an SDE solver, as
    converging to the same calculus (Itô or Stratonovich) as `solver`, as Diffrax expects."""
    if isinstance(solver, dfx.AbstractItoSolver):
        return _ItoHeuristicsSolver(solver, rtol, atol, stiffness)
    if isinstance(solver, dfx.AbstractStratonovichSolver):
        return _StratonovichHeuristicsSolver(solver, rtol, atol, stiffness)
    return HeuristicsSolver(solver, rtol, atol, stiffness)
