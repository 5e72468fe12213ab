"""The Hessian of a loss as a matrix-free operator: Hessian–vector products, the largest
eigenvalue by power iteration, and Hutchinson's estimates of tr(H) and tr(H²).

Parameters are any pytree; its floating-point arrays are the variables (the rest, e.g. an
Equinox model's activation functions, is held fixed), so a model itself or its `eqx.filter`ed
arrays can be passed. The operator acts on flat vectors (`jax.flatten_util.ravel_pytree` order);
`HessianOperator.unravel` turns one back into the parameters' pytree. Everything here is pure
and jittable and takes its randomness from an explicit `key`, so it runs inside a jitted
evaluation, e.g. `fit`'s `eval_fn` (see `jaxdyn.learning`).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._checks import OnFailure, check_count, check_key, check_on_failure, check_positive
from .._solvers import apply_on_failure
from ..implicit import SolveInfo

__all__ = [
    "Eigenpairs",
    "HessianOperator",
    "Operator",
    "TraceEstimate",
    "hessian_operator",
    "hutchinson_trace",
    "hvp",
    "power_iteration",
]


class HessianOperator(eqx.Module):
    """`H = ∇²L(θ)` as a linear map on flat vectors of `size` entries: `op(v) = H v`.

    - `matvec`: `v ↦ H v`, for `v` of shape `(size,)` and `dtype`;
    - `size`, `dtype`: the number and type of the flattened parameters;
    - `unravel`: a flat vector (an eigenvector, a probe) back to the parameters' pytree.

    Built by `hessian_operator`. A pytree whose leaves are the values the linearisation stored
    (`jax.linearize` returns a `jax.tree_util.Partial`), so it may be passed into a function
    under `eqx.filter_jit`; building it inside the jitted function avoids carrying them.
    """

    matvec: Callable[[Array], Array]
    size: int = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)
    unravel: Callable[[Array], PyTree]

    def __call__(self, v: Float[Array, " size"]) -> Float[Array, " size"]:
        """`H v`."""
        return self.matvec(v)


Operator = HessianOperator | Float[Array, "n n"]
"""What the spectral tools take: a `HessianOperator`, or a dense symmetric matrix (its upper
and lower triangles are both used as given)."""


class Eigenpairs(eqx.Module):
    """Eigenvalue estimates, sorted (by `which`), with their unit eigenvectors (flat, one per
    row; `HessianOperator.unravel` gives the pytree) and residual norms `‖H x − λ x‖` (for
    Lanczos the estimate `β_m |y_m|`, equal to it in exact arithmetic; rounding adds about
    `ε ‖H‖`). An eigenvalue lies within the residual of each value."""

    values: Float[Array, " k"]
    vectors: Float[Array, "k size"]
    residuals: Float[Array, " k"]


class TraceEstimate(eqx.Module):
    """Hutchinson's estimates of `tr(H)` and `tr(H²)` with their standard errors (the sample
    standard deviation over probes divided by `√num_probes`)."""

    trace: Scalar
    trace_se: Scalar
    trace_square: Scalar
    trace_square_se: Scalar


def _split_params(loss_fn: Callable, params: PyTree, args: tuple) -> tuple[PyTree, Callable]:
    """The floating-point arrays of `params` and the loss as a function of them alone, checked
    to be a real scalar."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    variables, fixed = eqx.partition(params, eqx.is_inexact_array)
    if not jax.tree.leaves(variables):
        raise ValueError(
            f"params has no floating-point arrays to differentiate: got {type(params).__name__}"
        )

    def loss(v):
        return loss_fn(eqx.combine(v, fixed), *args)

    out = jax.eval_shape(loss, variables)
    if (
        not isinstance(out, jax.ShapeDtypeStruct)
        or out.shape != ()
        or not (jnp.issubdtype(out.dtype, jnp.floating))
    ):
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a real scalar, got {shape}")
    return variables, loss


def hvp(loss_fn: Callable[..., Scalar], params: PyTree, v: PyTree, *args: Any) -> PyTree:
    """The Hessian–vector product `∇²L(θ) v = d/dε ∇L(θ + ε v)|₀`, forward-over-reverse
    (`jax.jvp` of `jax.grad`: one gradient's cost, about three forward passes; Pearlmutter
    1994).

    **Arguments:**

    - `loss_fn`: `(params, *args) -> scalar`.
    - `params`: a pytree (an Equinox model, or its `eqx.filter(model, eqx.is_inexact_array)`);
      its floating-point arrays are differentiated, everything else is held fixed.
    - `v`: the direction, a pytree of the same structure, shapes and dtypes as `params`'
      floating-point arrays (`None` where `params` has none).
    - `*args`: passed to `loss_fn` (data), not differentiated.

    **Returns:** `H v` with the structure of `eqx.filter(params, eqx.is_inexact_array)`.
    """
    variables, loss = _split_params(loss_fn, params, args)
    tangent = eqx.filter(v, eqx.is_inexact_array)
    want = jax.tree.map(lambda x: (x.shape, x.dtype), variables)
    got = jax.tree.map(lambda x: (x.shape, jnp.asarray(x).dtype), tangent)
    if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
        raise ValueError(
            "v must have the structure, shapes and dtypes of params' floating-point arrays: "
            f"expected {want}, got {got}"
        )
    return jax.jvp(jax.grad(loss), (variables,), (tangent,))[1]


def hessian_operator(loss_fn: Callable[..., Scalar], params: PyTree, *args: Any) -> HessianOperator:
    """The Hessian of `loss_fn(params, *args)` at `params` as a `HessianOperator` on flat
    vectors.

    The gradient is linearised once (`jax.linearize` of `jax.grad`: forward-over-reverse, its
    intermediate values stored), so each product `H v` re-runs only the linear part; `jax.vmap`
    over vectors batches products. Arguments as in `hvp`.
    """
    variables, loss = _split_params(loss_fn, params, args)
    flat, unravel = ravel_pytree(variables)

    def flat_gradient(x):
        return ravel_pytree(jax.grad(loss)(unravel(x)))[0]

    _, matvec = jax.linearize(flat_gradient, flat)
    return HessianOperator(matvec, int(flat.size), flat.dtype, unravel)


def linear_map(operator: Operator, caller: str) -> tuple[Callable[[Array], Array], int, Any]:
    """`(matvec, size, dtype)` of a `HessianOperator` or a dense square matrix."""
    if isinstance(operator, HessianOperator):
        return operator.matvec, operator.size, operator.dtype
    if isinstance(operator, jax.Array | jax.core.Tracer) or hasattr(operator, "__array__"):
        matrix = jnp.asarray(operator)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
            raise ValueError(
                f"{caller}: operator must be a HessianOperator or a square matrix (n, n), got "
                f"shape {matrix.shape}"
            )
        if not jnp.issubdtype(matrix.dtype, jnp.floating):
            raise ValueError(f"{caller}: operator must be real floating, got {matrix.dtype}")
        return (lambda v: matrix @ v), matrix.shape[0], matrix.dtype
    raise TypeError(
        f"{caller}: operator must be a HessianOperator (hessian_operator(...)) or a square "
        f"matrix, got {type(operator).__name__}"
    )


def rademacher_probe(key: PRNGKeyArray, size: int, dtype: Any) -> Float[Array, " size"]:
    """A vector of independent ±1 entries."""
    return jax.random.rademacher(key, (size,), dtype=dtype)


def power_iteration(
    operator: Operator,
    *,
    key: PRNGKeyArray,
    max_steps: int = 500,
    tol: float | None = None,
    on_failure: OnFailure = "raise",
) -> tuple[Eigenpairs, SolveInfo]:
    """The eigenvalue of largest magnitude by power iteration (von Mises 1929): `v ← H v /
    ‖H v‖` from a random start, `λ = vᵀ H v`.

    Stops when the relative residual `‖H v − λ v‖ / |λ|` is at most `tol` (the eigenvalue is
    then within `(tol λ)² / gap` of one of `H`'s, `gap` its distance to the others); it
    converges at the rate `|λ₂/λ₁|` per step, and not at all when the two largest eigenvalues
    have one magnitude and opposite signs (then use `top_eigenpairs`, Lanczos).

    **Arguments:**

    - `operator`: a `HessianOperator` or a dense symmetric matrix.
    - `key`: the random start.
    - `max_steps`: the cap on products `H v`. `tol`: the relative residual to reach; `None`:
      `√ε` of the operator's dtype (1.5e-8 in float64, 3.5e-4 in float32), where the
      eigenvalue's error, `ε λ² / gap`, is at rounding level.
    - `on_failure`: `"raise"` (at run time, under `jit` too), `"nan"` or `"return"` when the
      residual is still above `tol` after `max_steps` (`docs/api.md`).

    **Returns:** `(pair, info)`: `pair` an `Eigenpairs` of one value (signed) and its unit
    vector; `info` a `SolveInfo(iterations, error, converged)` with `error` the relative
    residual.
    """
    matvec, size, dtype = linear_map(operator, "power_iteration")
    check_key(key, "power_iteration")
    check_count("max_steps", max_steps)
    if tol is None:
        tol = float(jnp.finfo(dtype).eps) ** 0.5
    check_positive("tol", tol)
    check_on_failure(on_failure)
    tiny = jnp.finfo(dtype).tiny
    v0 = jax.random.normal(key, (size,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def measure(v):
        w = matvec(v)
        value = v @ w
        error = jnp.linalg.norm(w - value * v) / jnp.maximum(jnp.abs(value), tiny)
        return w, value, error

    def unfinished(carry):
        step, _, _, _, error = carry
        return (step < max_steps) & ~(error <= tol)

    def iterate(carry):
        step, _, w, _, _ = carry
        v = w / jnp.maximum(jnp.linalg.norm(w), tiny)
        w, value, error = measure(v)
        return step + 1, v, w, value, error

    w, value, error = measure(v0)
    steps, v, _, value, error = jax.lax.while_loop(
        unfinished, iterate, (jnp.asarray(1), v0, w, value, error)
    )
    info = SolveInfo.of(steps, error, tol)
    pair = Eigenpairs(value[None], v[None], (error * jnp.abs(value))[None])
    message = (
        f"power_iteration did not reach a relative residual of tol={tol} in max_steps="
        f"{max_steps} products: the two largest eigenvalues are close in magnitude (or "
        "opposite); raise max_steps or use top_eigenpairs (Lanczos)"
    )
    return apply_on_failure(pair, ~info.converged, on_failure, message), info


def hutchinson_trace(
    operator: Operator,
    *,
    key: PRNGKeyArray,
    num_probes: int = 100,
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutchinson's (1989) estimates `tr(H) ≈ mean zᵀ H z` and `tr(H²) ≈ mean ‖H z‖²` over
    Rademacher probes `z` (independent ±1 entries), both from one product `H z` per probe.

    For Rademacher probes the variance of `zᵀ H z` is `2 Σ_{i≠j} H_ij²` (the smallest among
    probes of independent zero-mean unit-variance entries; Hutchinson 1989) and that of
    `‖H z‖²` is `2 Σ_{i≠j} (H²)_ij²`; the standard errors are estimated from the probes'
    spread. Probe `i` is drawn from `jax.random.split(key, num_probes)[i]` (as
    `spectral_density`'s probe `i`).

    **Arguments:**

    - `operator`: a `HessianOperator` or a dense symmetric matrix.
    - `key`: the probes. `num_probes` (≥ 2, for a standard error).
    - `batch_size`: probes evaluated together (`jax.lax.map`); `None`: all at once (`vmap`).

    **Returns:** a `TraceEstimate`.
    """
    matvec, size, dtype = linear_map(operator, "hutchinson_trace")
    check_key(key, "hutchinson_trace")
    check_count("num_probes", num_probes, low=2)
    if batch_size is not None:
        check_count("batch_size", batch_size)

    def probe(k):
        z = rademacher_probe(k, size, dtype)
        hz = matvec(z)
        return z @ hz, hz @ hz

    keys = jax.random.split(key, num_probes)
    quadratic, square = jax.lax.map(probe, keys, batch_size=batch_size or num_probes)
    scale = 1 / jnp.sqrt(num_probes)
    return TraceEstimate(
        jnp.mean(quadratic),
        jnp.std(quadratic, ddof=1) * scale,
        jnp.mean(square),
        jnp.std(square, ddof=1) * scale,
    )
