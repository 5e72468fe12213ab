"""Minibatch optimal-transport coupling for flow matching (OT-CFM; Tong et al. 2023, Pooladian
et al. 2023).

Instead of pairing `x0_i` with `x1_i` independently, draw the pairs from an entropic optimal
transport plan between the two minibatches,

    π = argmin_{π ∈ Π(1/n, 1/m)} Σ_ij π_ij |x0_i − x1_j|² − ε H(π),

computed by ott-jax's Sinkhorn solver (Cuturi 2013), and resample `n` pairs `(i, j) ~ π`. As
`ε → 0` and the batch grows the pairs approach the (static) optimal transport map, whose
interpolation paths are straight and do not cross, so the learned flow needs fewer steps.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import OnFailure, check_count, check_key, check_on_failure, check_positive
from .._jaxopt import load_jaxopt
from .._solvers import apply_on_failure

__all__ = ["ot_coupling", "ot_plan"]


def _flat(name: str, x: Array) -> Array:
    if jnp.ndim(x) < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a batch of shape (batch, *dims); got {jnp.shape(x)}")
    return x.reshape(x.shape[0], -1)


def ot_plan(
    x0: Float[Array, "n ..."],
    x1: Float[Array, "m ..."],
    *,
    epsilon: float = 0.05,
    threshold: float = 1e-3,
    max_steps: int = 2000,
    on_failure: OnFailure = "raise",
) -> tuple[Float[Array, "n m"], Array]:
    """The entropic OT plan between the uniform empirical laws of `x0` and `x1` for the
    squared Euclidean cost (samples flattened), by Sinkhorn.

    **Arguments:** `x0` `(n, *dims)`, `x1` `(m, *dims)`; `epsilon`, the entropic regularisation
    as a fraction of the mean cost (smaller is closer to exact OT and slower: on 256 + 256
    checkerboard points 0.05 takes ~30 Sinkhorn iterations, 0.01 ~150);
    `threshold` and `max_steps`, Sinkhorn's marginal-error tolerance and iteration budget;
    `on_failure`, when Sinkhorn did not converge: `raise` (through `eqx.error_if`, also under
    `jit`), `nan` (the plan becomes NaN) or `return` (the plan as it is).

    **Returns:** `(plan, converged)`: the `(n, m)` plan (sums to one) and a boolean scalar.
    """
    a, b = _flat("x0", x0), _flat("x1", x1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x0 and x1 must have the same sample shape; got {x0.shape}, {x1.shape}")
    check_positive("epsilon", epsilon)
    check_count("max_steps", max_steps)
    check_on_failure(on_failure)
    load_jaxopt()  # ott-jax imports jaxopt: first through the module that filters its notice
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    a, b = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
    geometry = pointcloud.PointCloud(a, b, epsilon=epsilon, relative_epsilon="mean")
    solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_steps)
    out = solver(linear_problem.LinearProblem(geometry))
    message = "ot_plan: Sinkhorn did not converge; raise epsilon or max_steps"
    return apply_on_failure(out.matrix, ~out.converged, on_failure, message), out.converged


def ot_coupling(
    x0: Float[Array, "n ..."],
    x1: Float[Array, "m ..."],
    *,
    key: PRNGKeyArray,
    epsilon: float = 0.05,
    threshold: float = 1e-3,
    max_steps: int = 2000,
    on_failure: OnFailure = "raise",
) -> tuple[Float[Array, "n ..."], Float[Array, "n ..."]]:
    """Re-pair two minibatches along their OT plan (`ot_plan`): `n` index pairs `(i, j)` drawn
    from the plan with replacement (from `key`), returned as `(x0[i], x1[j])`, ready for any
    loss of `jaxdyn.generative` (OT-CFM: `flow_matching_loss` on the result). Jittable; no
    gradient flows through the pairing. When Sinkhorn does not converge, `on_failure`: `raise`,
    `nan` (the pairs become NaN, and so does a loss on them) or `return` (pairs drawn from the
    plan as it is: an approximate coupling)."""
    check_on_failure(on_failure)
    check_key(key, "ot_coupling")
    policy = "raise" if on_failure == "raise" else "return"  # `nan` is applied to the pairs
    plan, converged = ot_plan(
        x0, x1, epsilon=epsilon, threshold=threshold, max_steps=max_steps, on_failure=policy
    )
    n, m = plan.shape
    # Inverse-CDF draws (`choice` with `p`): O(n m) work, where `categorical`'s Gumbel-max would
    # draw n × n m variables (3 s against 10 ms at n = m = 256).
    probabilities = jnp.clip(plan.reshape(-1), min=0.0)
    flat = jax.random.choice(key, n * m, shape=(n,), p=probabilities / jnp.sum(probabilities))
    pairs = x0[flat // m], x1[flat % m]
    if on_failure == "nan":
        pairs = jax.tree.map(lambda x: jnp.where(converged, x, jnp.nan), pairs)
    return pairs
