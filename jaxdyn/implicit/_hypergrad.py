"""Hypergradients of bilevel problems by implicit differentiation, unrolling, truncated
backpropagation or a truncated Neumann series — on one inner problem, so they can be compared.

    θ ↦ L(x*(θ), θ),    x*(θ) = argminₓ f(x, θ).
"""

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree, Scalar

from .._checks import OnFailure, check_choice, check_count, check_on_failure
from .._jaxopt import iterate
from .._trees import as_arrays, tree_norm
from ._common import convert, solve_implicitly
from ._info import SolveInfo
from ._linear import LinearSolve, as_linear_solve

__all__ = ["InnerProblem", "Neumann", "Truncated", "hypergradient", "neumann_solve"]


class InnerProblem(eqx.Module):
    """The inner problem `minₓ f(x, θ)`, solved by gradient descent
    `x ← x - step_size ∇ₓf(x, θ)` from `x0`: the iteration every mode shares.

    `max_steps` caps the iterations. Unrolled and truncated modes differentiate a path of
    fixed length, so they run exactly `max_steps` steps; implicit and Neumann modes only need
    the solution, so they stop as soon as `‖∇ₓf‖ ≤ tol` (at most `max_steps` steps) and, with
    `solver="lbfgs"`, reach it by L-BFGS instead of gradient descent — the implicit gradient
    does not depend on how the solution was found."""

    objective: Callable[[PyTree, Any], Scalar] = eqx.field(static=True)
    x0: PyTree
    step_size: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    tol: float = eqx.field(static=True, default=1e-6)
    solver: str = eqx.field(static=True, default="gradient_descent")

    def __check_init__(self):
        check_choice("solver", self.solver, ("gradient_descent", "lbfgs"))
        check_count("max_steps", self.max_steps)

    def _grad(self, objective=None) -> Callable:
        return jax.grad(self.objective if objective is None else objective)

    def run(self, x: PyTree, theta: Any, num_steps: int, objective=None) -> PyTree:
        """Exactly `num_steps` gradient steps (a `lax.scan`, so it can be differentiated);
        `objective` replaces `self.objective` (hypergradient passes a closure-converted one)."""
        grad = self._grad(objective)

        def step(x, _):
            return jax.tree.map(lambda a, b: a - self.step_size * b, x, grad(x, theta)), None

        return jax.lax.scan(step, x, length=num_steps)[0]

    def info(self, x: PyTree, theta: Any, objective=None) -> SolveInfo:
        """Convergence after the `max_steps` steps of `run`: `‖∇ₓf(x, θ)‖ ≤ tol`."""
        grad = self._grad(objective)
        return SolveInfo.of(self.max_steps, tree_norm(grad(x, theta)), self.tol)

    def solve(self, x: PyTree, theta: Any, objective=None) -> tuple[PyTree, SolveInfo]:
        """The solution, by `solver`, stopping at `‖∇ₓf‖ ≤ tol` or after `max_steps`
        iterations (gradient descent is a `lax.while_loop`: for the modes that only need the
        solution, not a path to differentiate)."""
        objective = self.objective if objective is None else objective
        if self.solver == "lbfgs":
            x, iterations, error = iterate("lbfgs", objective, x, theta, tol=self.tol,
                                           max_steps=self.max_steps)  # fmt: skip
            return x, SolveInfo.of(iterations, error, self.tol)
        grad = self._grad(objective)

        def cond(carry):
            _, g, i = carry
            return (i < self.max_steps) & ~(tree_norm(g) <= self.tol)

        def body(carry):
            x, g, i = carry
            x = jax.tree.map(lambda a, b: a - self.step_size * b, x, g)
            return x, grad(x, theta), i + 1

        x, g, i = jax.lax.while_loop(cond, body, (x, grad(x, theta), jnp.asarray(0)))
        return x, SolveInfo.of(i, tree_norm(g), self.tol)


@dataclasses.dataclass(frozen=True)
class Truncated:
    """Backpropagate through the last `k` inner steps only (Shaban et al. 2019)."""

    k: int


@dataclasses.dataclass(frozen=True)
class Neumann:
    """Implicit gradient with `(∇²ₓf)⁻¹` replaced by the truncated Neumann series
    `α Σ_{j≤k} (I - α∇²ₓf)^j` (Lorraine, Vicol & Duvenaud 2020); `α` is the inner step."""

    k: int


Mode = str | Truncated | Neumann


def _parse_mode(mode: Mode) -> Mode:
    if isinstance(mode, Truncated | Neumann) or mode in ("implicit", "unrolled"):
        return mode
    match = re.fullmatch(r"(truncated|neumann)\((\d+)\)", str(mode))
    if match is None:
        raise ValueError(f"unknown mode={mode!r}; expected 'implicit', 'unrolled', "
                         "'truncated(k)' or 'neumann(k)'")  # fmt: skip
    return (Truncated if match[1] == "truncated" else Neumann)(int(match[2]))


def neumann_solve(matvec: Callable, b: PyTree, *, k: int, alpha: float) -> PyTree:
    """`A⁻¹b ≈ α Σ_{j=0}^{k} (I - αA)^j b`, exact as `k → ∞` when `‖I - αA‖ < 1`."""

    def body(carry, _):
        term, total = carry
        term = jax.tree.map(lambda t, a: t - alpha * a, term, matvec(term))
        return (term, jax.tree.map(jnp.add, total, term)), None

    (_, total), _ = jax.lax.scan(body, (b, b), length=k)
    return jax.tree.map(lambda t: alpha * t, total)


def hypergradient(
    outer_loss: Callable[[PyTree, Any], Scalar],
    inner: InnerProblem,
    theta: Any,
    *,
    mode: Mode = "implicit",
    linear_solver: str | Callable | LinearSolve = "cg",
    on_failure: OnFailure = "raise",
) -> tuple[tuple[Scalar, PyTree], SolveInfo]:
    """The value and gradient of `θ ↦ outer_loss(x*(θ), θ)`, where `x*` solves `inner`.

    Modes (Franceschi et al. 2017; Blondel et al. 2022):

    - `"implicit"`: solve the inner problem, then `dL/dθ = ∂_θL - ∂²_{θx}f (∇²ₓf)⁻¹ ∂ₓL`
      with the linear system solved as `linear_solver` says (default `cg`; a name or a
      `LinearSolve`, as in `root`). Memory does not grow with the number
      of inner iterations; exact when the inner problem has converged.
    - `"unrolled"`: backpropagate through all `inner.max_steps` iterations (memory grows with
      them).
    - `Truncated(k)` or `"truncated(k)"`: backpropagate through the last `k` only.
    - `Neumann(k)` or `"neumann(k)"`: implicit, with a `k`-term Neumann series for the inverse
      (its result is not checked: it is an approximation by design).

    `on_failure` applies to the inner problem's convergence (`‖∇ₓf‖ ≤ inner.tol`) in the
    implicit and Neumann modes, whose gradient assumes it; use `"return"` to study
    unconverged inner problems. **Returns:** `((value, gradient), info)`.
    """
    mode = _parse_mode(mode)
    check_on_failure(on_failure)
    theta = as_arrays(theta)
    x0 = as_arrays(inner.x0)
    objective = convert(inner.objective, "inner.objective", x0, theta)

    if mode == "unrolled" or isinstance(mode, Truncated):
        k = inner.max_steps if mode == "unrolled" else min(mode.k, inner.max_steps)

        def value_unrolled(theta):
            frozen = jax.lax.stop_gradient(theta)
            x = inner.run(x0, frozen, inner.max_steps - k, objective)
            x = inner.run(jax.lax.stop_gradient(x), theta, k, objective)
            return outer_loss(x, theta), inner.info(x, theta, objective)

        (value, info), grad = jax.value_and_grad(value_unrolled, has_aux=True)(theta)
        return (value, grad), info

    if isinstance(mode, Neumann):
        neumann = functools.partial(neumann_solve, k=mode.k, alpha=inner.step_size)
        linear = LinearSolve(neumann, check=None)
    else:
        linear = as_linear_solve(linear_solver)

    def optimality(x, theta, objective):
        return jax.grad(objective)(x, theta)

    def value_implicit(theta):
        x, info = solve_implicitly(
            inner.solve, optimality, x0, (theta, objective), linear=linear,
            on_failure=on_failure, caller="hypergradient", message=(
                f"hypergradient: the inner problem did not converge (|grad f| > "
                f"tol={inner.tol}) in max_steps={inner.max_steps} iterations, so the implicit "
                "gradient would be wrong; raise max_steps or step_size, or pass "
                "on_failure='return' to study it anyway"
            ),
        )  # fmt: skip
        return outer_loss(x, theta), info

    (value, info), grad = jax.value_and_grad(value_implicit, has_aux=True)(theta)
    return (value, grad), info
