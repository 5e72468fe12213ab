"""What `odeint` and `sdeint` share: names of solvers and adjoints, `Solution` and `Stats`,
argument checks, step-size control and the failure policy."""

from collections.abc import Callable
from typing import Any, Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from .._checks import check_positive, choice_error
from .._solvers import (
    ADJOINTS,
    fevals,
    resolve,
)
from .._trees import check_same_shapes, shapes

RESULTS = dfx.RESULTS

OnFailure = Literal["raise", "nan", "return"]
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


class Solution(eqx.Module):
    """The result of `odeint`, `sdeint` or `cdeint`.

    - `ts`: the times the solution is given at, shape `(time,)`.
    - `ys`: the state at `ts`: each leaf has shape `(time, ...)`, or `(batch, time, ...)` when
      solved with `batch="vmap"` or `"joint"`.
    - `stats`: a `Stats`.
    - `result`: a `RESULTS` code (`RESULTS.successful` or the reason for failure);
      `RESULTS[result]` is the message. Batched like `stats`.
    """

    ts: Float[Array, " time"]
    ys: PyTree[Array]
    stats: Stats
    result: RESULTS

    @property
    def succeeded(self) -> Array:
        """Boolean array: True where the solve succeeded."""
        return self.result == RESULTS.successful


def _failure_messages(caller: str, max_steps: int) -> list[str]:
    """One message per `RESULTS` index, saying what failed and what to change."""
    specific = {
        "max_steps_reached": (
            f"{caller}: the solver reached max_steps={max_steps} before the final time. "
            "Increase `max_steps`, loosen `rtol`/`atol`, or, if the problem is stiff, "
            "use an implicit solver such as solver='kvaerno5'."
        ),
        "dt_min_reached": (
            f"{caller}: step size underflow (the step size reached its minimum). The "
            "dynamics may blow up or be stiff: check the field, or use solver='kvaerno5'."
        ),
        "nonfinite": (
            f"{caller}: NaN or Inf in the state. The solution diverged or the field "
            "returned NaN: check the field and y0, use a smaller dt0, or adaptive steps."
        ),
        "nonlinear_max_steps_reached": (
            f"{caller}: the implicit solver's Newton iteration did not converge. Loosen "
            "rtol/atol or check the field's Jacobian."
        ),
        "nonlinear_divergence": (
            f"{caller}: the implicit solver's Newton iteration diverged. Check the field "
            "for NaN or use smaller steps."
        ),
    }
    messages = [f"{caller}: {m}" for m in RESULTS._index_to_message]
    for name, message in specific.items():
        messages[RESULTS._name_to_item[name]._value.item()] = message
    return messages


def apply_failure_policy(
    ys: PyTree[Array],
    result: RESULTS,
    on_failure: OnFailure,
    caller: str,
    max_steps: int,
) -> tuple[PyTree[Array], RESULTS]:
    """Mark a non-finite state as a failure, then apply `on_failure` to `ys`.

    `raise` raises at run time with a message naming the failure; `nan` replaces `ys` by NaN
    where the solve failed; `return` leaves `ys` and `result` for the caller.
    """
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(y)) for y in jax.tree.leaves(ys)]))
    result = RESULTS.where((result == RESULTS.successful) & ~finite, RESULTS.nonfinite, result)
    failed = result != RESULTS.successful
    if on_failure == "raise":
        ys = eqx.branched_error_if(ys, failed, result._value, _failure_messages(caller, max_steps))
    elif on_failure == "nan":
        ys = jax.tree.map(lambda y: jnp.where(failed, jnp.nan, y), ys)
    return ys, result


def check_ts(ts: Array) -> None:
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times, got shape {ts.shape}")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        raise TypeError(f"ts must be floating point, got dtype {ts.dtype}")
    if not isinstance(ts, jax.core.Tracer):
        diffs = np.diff(np.asarray(ts))
        if not np.all(diffs > 0):
            bad = int(np.argmin(diffs > 0))
            raise ValueError(
                f"ts must be strictly increasing; ts[{bad}]={float(ts[bad])} is followed by "
                f"ts[{bad + 1}]={float(ts[bad + 1])}"
            )


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


def check_field(field: Callable, t0: Array, y0: PyTree, args: Any) -> None:
    """Trace the field once (no FLOPs) and compare its output with the state."""
    try:
        out = eqx.filter_eval_shape(field, t0, y0, args)
    except Exception as error:  # a user's field failing on the given y0
        raise ValueError(
            f"field could not be evaluated at y0 with shapes {shapes(y0)}: {error}"
        ) from error
    check_same_shapes("field(t, y, args)", out, y0, "y0")


def joint_field(field: Callable) -> Callable:
    """A per-sample field applied to a whole batch, integrated as one state."""

    def batched(t, y, args):
        return jax.vmap(field, in_axes=(None, 0, None))(t, y, args)

    return batched


def check_options(
    adjoint: str | dfx.AbstractAdjoint,
    on_failure: OnFailure,
    max_steps: int,
    dt0: float | None,
    batch: Batch = None,
) -> dfx.AbstractAdjoint:
    """Check the options every solve shares; return the adjoint resolved by name."""
    adjoint_ = resolve("adjoint", adjoint, ADJOINTS, dfx.AbstractAdjoint)
    if on_failure not in ("raise", "nan", "return"):
        raise choice_error("on_failure", on_failure, ("raise", "nan", "return"))
    if batch not in (None, "vmap", "joint"):
        raise choice_error("batch", batch, ("vmap", "joint"))
    if not (isinstance(max_steps, int) and max_steps > 0):
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if dt0 is not None:
        check_positive("dt0", dt0)
    return adjoint_


def save_times(ts: Array) -> dfx.SaveAt:
    """Save at `ts`; for two times, at the endpoints (cheaper than interpolating at ts)."""
    if ts.shape[0] == 2:
        return dfx.SaveAt(t0=True, t1=True)
    return dfx.SaveAt(ts=ts)


def solve_stats(solver: dfx.AbstractSolver, sol: dfx.Solution) -> Stats:
    """`Stats` of a Diffrax solution."""
    num_steps = sol.stats["num_steps"]
    return Stats(
        num_steps=num_steps,
        num_accepted_steps=sol.stats["num_accepted_steps"],
        num_rejected_steps=sol.stats["num_rejected_steps"],
        num_fevals=fevals(solver, num_steps),
    )
