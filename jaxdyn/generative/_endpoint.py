"""The end of a sampler's or likelihood's solve as an `Endpoint`, under the failure policy."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from .._checks import OnFailure
from .._solvers import apply_failure_policy
from ..solve import RESULTS, Endpoint, Solution, Stats

__all__ = ["endpoint", "final_endpoint"]


def endpoint(
    value: PyTree[Array],
    stats: Stats,
    result: RESULTS,
    *,
    on_failure: OnFailure,
    caller: str,
    max_steps: int,
) -> Endpoint:
    """`Endpoint(value, stats, result)` after `on_failure` (`docs/api.md`): a non-finite value
    counts as a failure. `result` is one code for all of `value`, or one per sample (leading
    axis) when the samples were solved one by one."""

    def policy(v, r):
        return apply_failure_policy(v, r, on_failure, caller, max_steps)

    if jnp.ndim(result._value) == 0:
        value, result = policy(value, result)
    else:
        value, result = jax.vmap(policy)(value, result)
    return Endpoint(value=value, stats=stats, result=result)


def final_endpoint(
    sol: Solution, batched: bool, *, on_failure: OnFailure, caller: str, max_steps: int
) -> Endpoint:
    """`endpoint` of a sampler's solve, run with `on_failure="return"`: the state at its last
    time, for one sample `(time, dim)` or a batch `(batch, time, dim)`."""
    value = sol.ys[:, -1] if batched else sol.ys[-1]
    return endpoint(value, sol.stats, sol.result, on_failure=on_failure, caller=caller,
                    max_steps=max_steps)  # fmt: skip
