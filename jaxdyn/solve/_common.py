"""What `odeint`, `sdeint` and `cdeint` share: `Solution`, `Endpoint` and `Stats`, argument
checks, the batched field, closure conversion for continuous adjoints, and one Diffrax solve
with its failure policy and statistics."""

from collections.abc import Callable
from typing import Any, Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from .._checks import OnFailure, check_on_failure, check_positive, check_times, choice_error
from .._solvers import ADJOINTS, RESULTS, apply_failure_policy, fevals, resolve
from .._trees import check_same_shapes, shapes

__all__ = [
    "RESULTS",
    "Batch",
    "Endpoint",
    "JointField",
    "OnFailure",
    "Solution",
    "Stats",
    "check_field",
    "check_options",
    "check_times",
    "check_y0",
    "closure_convert",
    "integrate",
    "save_times",
    "trace_field",
]

Batch = Literal["vmap", "joint"] | None


class Stats(eqx.Module):
    """Work done by a solve. With `batch="vmap"` every field has a leading batch axis.

    `num_fevals` counts vector-field evaluations of explicit solvers (Euler and explicit
    Runge–Kutta): exact for fixed steps; for adaptive first-same-as-last solvers it omits the
    re-evaluation of the first stage after each rejected *first* step (at most
    `num_rejected_steps`, usually none). It is `None` for solvers whose count is not known in
    closed form (implicit solvers, whose Newton iterations vary, and other families).
    """

    num_steps: Int[Array, "*batch"]
    num_accepted_steps: Int[Array, "*batch"]
    num_rejected_steps: Int[Array, "*batch"]
    num_fevals: Int[Array, "*batch"] | None


class _Outcome(eqx.Module):
    """A solve's `stats` and `result` code, and whether it succeeded."""

    stats: eqx.AbstractVar[Stats]
    result: eqx.AbstractVar[RESULTS]

    @property
    def succeeded(self) -> Array:
        """Boolean array: True where the solve succeeded."""
        return self.result == RESULTS.successful


class Solution(_Outcome):
    """The result of `odeint`, `sdeint` or `cdeint`.

    - `ts`: the times the solution is given at, shape `(time,)`.
    - `ys`: the state at `ts`: each leaf has shape `(time, ...)`, or `(batch, time, ...)` when
      solved with `batch="vmap"` or `"joint"`.
    - `stats`: a `Stats`.
    - `result`: a `RESULTS` code (`RESULTS.successful` or the reason for failure);
      `RESULTS[result]` is the message. Batched like `stats`.
    - `solver_state`: the solver's state after the last accepted step when asked for
      (`odeint(..., save_solver_state=True)`, Diffrax's `SaveAt(solver_state=True)`), else
      `None`. Solvers that carry quantities across steps (`jaxdyn.regularize`) return them so.
    """

    ts: Float[Array, " time"]
    ys: PyTree[Array]
    stats: Stats
    result: RESULTS
    solver_state: PyTree[Array] | None = None


class Endpoint(_Outcome):
    """What a sampler or a likelihood returns: the value at the end of its solve.

    - `value`: the samples at the final time, or the log-densities.
    - `stats`: the solve's `Stats` (per sample when the samples were solved one by one).
    - `result`: a `RESULTS` code, batched like `stats`; a non-finite value counts as a failure.
    """

    value: PyTree[Array]
    stats: Stats
    result: RESULTS


def check_y0(y0: PyTree, batch: Batch) -> None:
    leaves = jax.tree.leaves(y0)
    if not leaves:
        raise ValueError("y0 has no array leaves")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            raise TypeError(
                f"y0 must be floating point, got dtype {jnp.result_type(leaf)} "
                f"(y0 shapes: {shapes(y0)}); cast it with jnp.asarray(y0, float)"
            )
    if batch is not None:
        sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
        if None in sizes or len(sizes) != 1:
            raise ValueError(
                f"batch={batch!r} needs every leaf of y0 to share a leading batch axis; "
                f"got shapes {shapes(y0)}"
            )


def trace_field(name: str, field: Callable, t0: Array, y0: PyTree, args: Any) -> PyTree:
    """`field(t0, y0, args)`'s output shapes, traced once (no FLOPs); a field that fails on
    `y0` is a `ValueError` naming it and `y0`'s shapes."""
    try:
        return eqx.filter_eval_shape(field, t0, y0, args)
    except Exception as error:  # a user's field failing on the given y0
        raise ValueError(
            f"{name} could not be evaluated at y0 with shapes {shapes(y0)}: {error}"
        ) from error


def check_field(field: Callable, t0: Array, y0: PyTree, args: Any) -> None:
    """Trace the field once and compare its output with the state."""
    out = trace_field("field", field, t0, y0, args)
    check_same_shapes("field(t, y, args)", out, y0, "y0")


class JointField(eqx.Module):
    """A field of one state applied to a batch of states, integrated as one state
    (`batch="joint"`). A module, not a closure, so that equal fields compare equal and a second
    un-jitted solve reuses Diffrax's compiled program."""

    fn: Callable

    def __call__(self, t, y, args):
        return jax.vmap(self.fn, in_axes=(None, 0, None))(t, y, args)


def closure_convert(fields: tuple[Callable, ...], t0: Array, y0: PyTree, args: Any) -> tuple:
    """The continuous adjoint differentiates only explicit inputs: turn parameters that the
    fields close over into leaves of the terms (jaxopt #31; optimistix does the same)."""
    return tuple(eqx.filter_closure_convert(f, t0, y0, args) for f in fields)


def check_options(
    adjoint: str | dfx.AbstractAdjoint,
    on_failure: OnFailure,
    dt0: float | None,
    batch: Batch = None,
    save_solver_state: bool = False,
) -> dfx.AbstractAdjoint:
    """Check the options every solve shares; return the adjoint resolved by name."""
    adjoint_ = resolve("adjoint", adjoint, ADJOINTS, dfx.AbstractAdjoint)
    if save_solver_state and isinstance(adjoint_, dfx.BacksolveAdjoint):
        raise ValueError(
            "save_solver_state=True cannot be differentiated with adjoint='backsolve'; "
            "use adjoint='checkpoint' (or 'direct')"
        )
    check_on_failure(on_failure)
    if batch not in (None, "vmap", "joint"):
        raise choice_error("batch", batch, ("vmap", "joint"))
    if dt0 is not None:
        check_positive("dt0", dt0)
    return adjoint_


def save_times(ts: Array, solver_state: bool = False) -> dfx.SaveAt:
    """Save at `ts`; for two times, at the endpoints (cheaper than interpolating at ts). With
    `solver_state`, the solver's final state too."""
    if ts.shape[0] == 2:
        return dfx.SaveAt(t0=True, t1=True, solver_state=solver_state)
    return dfx.SaveAt(ts=ts, solver_state=solver_state)


def integrate(
    terms: PyTree[dfx.AbstractTerm],
    solver: dfx.AbstractSolver,
    ts: Array,
    dt0: float | None,
    y0: PyTree[Array],
    *,
    args: Any,
    controller: dfx.AbstractStepSizeController,
    adjoint: dfx.AbstractAdjoint,
    max_steps: int,
    on_failure: OnFailure,
    caller: str,
    save_solver_state: bool = False,
) -> tuple[PyTree[Array], Stats, RESULTS, PyTree[Array] | None]:
    """One `diffrax.diffeqsolve` from `ts[0]` to `ts[-1]`, saved at `ts`, run with
    `throw=False` and followed by the failure policy; returns `(ys, stats, result,
    solver_state)`, the last the solver's final state with `save_solver_state`, else `None`."""
    sol = dfx.diffeqsolve(
        terms,
        solver,
        ts[0],
        ts[-1],
        dt0,
        y0,
        args=args,
        saveat=save_times(ts, save_solver_state),
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=False,
    )
    ys, result = apply_failure_policy(sol.ys, sol.result, on_failure, caller, max_steps)
    state = sol.solver_state
    if state is not None and on_failure == "nan":  # a failed solve's state is NaN, as its ys
        failed = result != RESULTS.successful
        state = jax.tree.map(
            lambda x: jnp.where(failed, jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            state,
        )
    num_steps = sol.stats["num_steps"]
    stats = Stats(
        num_steps=num_steps,
        num_accepted_steps=sol.stats["num_accepted_steps"],
        num_rejected_steps=sol.stats["num_rejected_steps"],
        num_fevals=fevals(solver, num_steps),
    )
    return ys, stats, result, state
