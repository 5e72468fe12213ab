"""The failure policy of everything that integrates in time (`docs/api.md`, "Results").

A solve's `result` is a Diffrax `RESULTS` code. `apply_failure_policy` first marks a non-finite
value as a failure (`RESULTS.nonfinite`), then applies `on_failure`: `raise` (at run time, under
`jit` and `vmap` too, with one message per code saying what failed and what to change), `nan`
(failed values become NaN) or `return` (values and code are left for the caller). Shared by
`jaxdyn.solve` and the samplers and likelihoods of the capability packages.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ._checks import OnFailure

__all__ = ["RESULTS", "apply_failure_policy", "failure_messages"]

RESULTS = dfx.RESULTS


def failure_messages(caller: str, max_steps: int) -> list[str]:
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
    values: PyTree[Array],
    result: RESULTS,
    on_failure: OnFailure,
    caller: str,
    max_steps: int,
) -> tuple[PyTree[Array], RESULTS]:
    """Mark non-finite `values` as a failure, then apply `on_failure` to them.

    `result` is one code for all of `values` (`vmap` this function over a batch of solves).
    Returns `(values, result)`.
    """
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(values)]))
    result = RESULTS.where((result == RESULTS.successful) & ~finite, RESULTS.nonfinite, result)
    failed = result != RESULTS.successful
    if on_failure == "raise":
        messages = failure_messages(caller, max_steps)
        values = eqx.branched_error_if(values, failed, result._value, messages)
    elif on_failure == "nan":
        values = jax.tree.map(lambda v: jnp.where(failed, jnp.nan, v), values)
    return values, result
