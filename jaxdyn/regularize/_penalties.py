"""Penalties on the adaptive solver's own heuristics: summed over the accepted steps of the
solve (Pal, Ma, Shah & Rackauckas 2021) or from one extra step at a sampled time (Pal et al.
2023)."""

import inspect
from collections.abc import Callable
from typing import Any, Literal, TypedDict, Unpack

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._checks import OnFailure, check_choice, check_key
from .._solvers import resolve_solver, uses_fixed_steps
from ..solve import Batch, Solution, odeint
from ._heuristics import STABILITY_SIZES, Heuristics, HeuristicsSolver, step_heuristics

__all__ = [
    "Reduction",
    "SolveOptions",
    "error_penalty",
    "local_error_penalty",
    "local_stiffness_penalty",
    "solve_options",
    "solve_with_heuristics",
    "stiffness_penalty",
]

Reduction = Literal["max", "sum"]
Field = Callable[[Any, PyTree, Any], PyTree]


class SolveOptions(TypedDict, total=False):
    """`odeint`'s keyword options, which every penalty takes and passes on (`jaxdyn.odeint`
    documents them; the defaults are its own)."""

    args: Any
    solver: str | dfx.AbstractSolver
    rtol: float | None
    atol: float | None
    dt0: float | None
    adjoint: str | dfx.AbstractAdjoint
    max_steps: int | None
    on_failure: OnFailure
    batch: Batch


# odeint's own defaults, read from its signature (so the two cannot drift apart)
_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(odeint).parameters.items()
    if name in SolveOptions.__annotations__
}


def solve_options(caller: str, options: dict) -> dict:
    """`options` over `odeint`'s defaults; `TypeError` naming an option `odeint` lacks."""
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"{caller} got unknown options {unknown}; it takes odeint's: "
                        f"{sorted(_DEFAULTS)}")  # fmt: skip
    return {**_DEFAULTS, **options}


def _check_adaptive(caller: str, dt0, rtol, atol) -> None:
    if uses_fixed_steps(dt0, rtol, atol):
        raise ValueError(
            f"{caller} penalises the heuristics of an adaptive solve, but dt0 without "
            "rtol/atol means fixed steps: give rtol and atol"
        )


def solve_with_heuristics(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    stiffness: bool = False,
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Heuristics]:
    """`odeint` with the solver wrapped in a `HeuristicsSolver`: the solution (the same steps
    and values as `odeint` with `solver`) and the `Heuristics` summed over its accepted steps.

    The arguments are `odeint`'s (the solve must be adaptive: tolerances, not `dt0` alone;
    `adjoint` `checkpoint` or `direct`); `stiffness=True` also estimates the stiffness (Tsit5
    and Dopri5). With `batch="vmap"` each sample has its own steps and the sums are averaged
    over the batch; with `batch="joint"` they are those of the one joint solve (the steps the
    batch shares). With `on_failure="nan"` a failed solve's sums are NaN.
    """
    o = solve_options("solve_with_heuristics", options)
    rtol, atol = o["rtol"], o["atol"]
    _check_adaptive("solve_with_heuristics", o["dt0"], rtol, atol)
    inner = resolve_solver(o["solver"])
    wrapper = HeuristicsSolver(inner, rtol, atol, stiffness)
    sol = odeint(field, y0, ts, **{**o, "solver": wrapper}, save_solver_state=True)
    # A failed solve's state is already NaN under on_failure="nan" (`odeint`); its stats count
    # the wrapped solver's evaluations (`fevals` looks through the wrapper).
    totals = Heuristics(*(jnp.mean(x) for x in sol.solver_state[1]))  # per sample under vmap
    return Solution(ts=sol.ts, ys=sol.ys, stats=sol.stats, result=sol.result), totals


def error_penalty(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Float[Array, ""]]:
    """The error-estimate regulariser (ERNODE; Pal, Ma, Shah & Rackauckas 2021):

        R_E = Σ_n dt_n · E_n,    E_n = rms(err_n / (atol + rtol · max(|y_n|, |y_{n+1}|))),

    over the accepted steps `n` of the adaptive solve of `dy/dt = field(t, y, args)`, where
    `err_n` is the solver's local error estimate and `E_n` is what the step-size controller
    compares with 1. Returns `(solution, R_E)`; the arguments are `odeint`'s (see
    `solve_with_heuristics`). Differentiable through `adjoint="checkpoint"`; the step sizes
    themselves are not differentiated (Diffrax stops the controller's gradient).
    """
    sol, totals = solve_with_heuristics(
        field,
        y0,
        ts,
        stiffness=False,
        **options,
    )
    return sol, totals.error


def stiffness_penalty(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    reduction: Reduction = "max",
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Float[Array, ""]]:
    """The stiffness regulariser (SRNODE; Pal, Ma, Shah & Rackauckas 2021): the solver's
    eigenvalue estimate `|λ̂_n|` (`stiffness_estimate`) on each accepted step `n`, divided by
    the size `S` of its stability region (`STABILITY_SIZES`: 3.5068 for Tsit5), reduced by
    `reduction`:

    - `max`: `max_n |λ̂_n| / S`;
    - `sum`: `Σ_n dt_n |λ̂_n| / S`, a quadrature of `∫ |λ(t)| dt / S`.

    Returns `(solution, penalty)`; the other arguments are `odeint`'s (`solver` Tsit5 or
    Dopri5; see `solve_with_heuristics`).
    """
    check_choice("reduction", reduction, ("max", "sum"))
    sol, totals = solve_with_heuristics(
        field,
        y0,
        ts,
        stiffness=True,
        **options,
    )
    return sol, totals.stiffness_max if reduction == "max" else totals.stiffness_sum


class _JointField(eqx.Module):
    """A one-sample field applied to a batch state (the one step of `batch="joint"`)."""

    fn: Callable

    def __call__(self, t, y, args):
        return jax.vmap(self.fn, in_axes=(None, 0, None))(t, y, args)


def _local(
    caller: str,
    stiffness: bool,
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Array, Array, Array]:
    """`(solution, heuristics of one step at a sampled time τ, t1 − t0, S)`."""
    check_key(key, caller)
    o = solve_options(caller, options)
    args, solver, rtol, atol, dt0 = (o[k] for k in ("args", "solver", "rtol", "atol", "dt0"))
    on_failure, batch = o["on_failure"], o["batch"]
    _check_adaptive(caller, dt0, rtol, atol)
    inner = resolve_solver(solver)
    HeuristicsSolver(inner, rtol, atol, stiffness)  # checks the solver
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times, got shape {ts.shape}")
    tau = jax.random.uniform(key, (), ts.dtype, ts[0], ts[-1])
    # Save at τ too (an interpolation, no extra solve), then drop it from the solution.
    where = jnp.searchsorted(ts, tau)
    sol = odeint(field, y0, jnp.sort(jnp.append(ts, tau)), **{**o, "solver": inner})
    axis = 0 if batch is None else 1
    index = jnp.arange(ts.shape[0])
    ys = jax.tree.map(lambda y: jnp.take(y, index + (index >= where), axis=axis), sol.ys)
    y_tau = jax.lax.stop_gradient(jax.tree.map(lambda y: jnp.take(y, where, axis=axis), sol.ys))

    # The step: the solve's mean accepted step (per sample with `vmap`), not differentiated.
    steps = jnp.maximum(sol.stats.num_accepted_steps, 1)
    dt = jax.lax.stop_gradient((ts[-1] - ts[0]) / steps).astype(ts.dtype)
    fn = _JointField(field) if batch == "joint" else field

    def one(y, dt):
        return step_heuristics(
            fn, tau, y, dt, args=args, solver=inner, rtol=rtol, atol=atol, stiffness=stiffness
        )

    step = jax.vmap(one)(y_tau, dt) if batch == "vmap" else one(y_tau, dt)
    solution = Solution(ts=ts, ys=ys, stats=sol.stats, result=sol.result)
    size = STABILITY_SIZES.get(type(inner), 1.0)
    if on_failure == "nan":
        step = jax.tree.map(lambda x: jnp.where(sol.succeeded, x, jnp.nan), step)
    return solution, step, ts[-1] - ts[0], size


def local_error_penalty(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Float[Array, ""]]:
    """The local error-estimate regulariser (Pal, Edelman & Rackauckas 2023):

        R̂_E = (t1 − t0) · E(τ),    τ ~ Uniform[t0, t1),

    where `E(τ)` is the scaled error estimate (`scaled_error`) of one extra, differentiable
    step of `solver` from `(τ, y(τ))`, with `y(τ)` read from the solution with its gradient
    stopped and the solve's mean accepted step `(t1 − t0) / N` as step size (not
    differentiated; the step the solver took at `τ` is not kept, which would cost memory per
    step). It is a one-sample Monte Carlo estimate of `∫ E(t) dt`, which the global
    `R_E = Σ dt_n E_n` (`error_penalty`) approximates; it needs no change to the solver, so
    any `adjoint` works, and it costs one step and one interpolation. Returns
    `(solution, R̂_E)` with the solution at `ts` (it is solved saving at `ts` and `τ`). The
    arguments are `odeint`'s, plus `key` for `τ` (one time for a whole batch; with
    `batch="vmap"` the sample-wise values are averaged).
    """
    sol, step, span, _ = _local(
        "local_error_penalty",
        False,
        field,
        y0,
        ts,
        key=key,
        **options,
    )
    return sol, jnp.mean(span * step.error)  # the mean over samples under vmap


def local_stiffness_penalty(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    reduction: Reduction = "max",
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Float[Array, ""]]:
    """The local stiffness regulariser (Pal et al. 2023): the eigenvalue estimate `|λ̂(τ)|`
    of one extra step at a sampled time `τ` (as in `local_error_penalty`), divided by the
    stability size `S`: `|λ̂(τ)| / S` for `reduction="max"` (a sample of what
    `stiffness_penalty` maximises) or `(t1 − t0) |λ̂(τ)| / S` for `"sum"` (a one-sample
    estimate of `∫ |λ(t)| dt / S`). `solver` Tsit5 or Dopri5. Returns `(solution, penalty)`.
    """
    check_choice("reduction", reduction, ("max", "sum"))
    sol, step, span, size = _local(
        "local_stiffness_penalty",
        True,
        field,
        y0,
        ts,
        key=key,
        **options,
    )
    rate = step.eigenvalue / size
    return sol, jnp.mean(rate if reduction == "max" else span * rate)  # over samples (vmap)
