"""Hypergradients of bilevel problems by implicit differentiation, unrolling, truncated
backpropagation or a truncated Neumann series — on one inner problem, so they can be compared.

    θ ↦ L(x*(θ), θ),    x*(θ) = argminₓ f(x, θ).
"""

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree, Scalar

from .._jaxopt import implicit_solve, jaxopt, linear_solver
from ._info import OnFailure, SolveInfo, apply_policy, as_arrays, check_choice, tree_norm
from ._root import convert

__all__ = ["InnerProblem", "Neumann", "Truncated", "hypergradient", "neumann_solve"]


class InnerProblem(eqx.Module):
    """The inner problem `minₓ f(x, θ)`, solved by gradient descent
    `x ← x - step_size ∇ₓf(x, θ)` from `x0`: the iteration every mode shares. Unrolled and
    truncated modes differentiate through exactly `iterations` steps; implicit and Neumann
    modes only need the solution, so they stop as soon as `‖∇ₓf‖ ≤ tol` (at most
    `iterations` steps) and, with `forward_solver="lbfgs"`, reach it by L-BFGS instead —
    the implicit gradient does not depend on how the solution was found."""

    objective: Callable[[PyTree, Any], Scalar] = eqx.field(static=True)
    x0: PyTree
    step_size: float = eqx.field(static=True)
    iterations: int = eqx.field(static=True)
    tol: float = eqx.field(static=True, default=1e-6)
    forward_solver: str = eqx.field(static=True, default="gradient_descent")

    def __check_init__(self):
        check_choice("forward_solver", self.forward_solver, ("gradient_descent", "lbfgs"))

    def _grad(self, objective=None) -> Callable:
        return jax.grad(self.objective if objective is None else objective)

    def run(self, x: PyTree, theta: Any, iterations: int, objective=None) -> PyTree:
        """`iterations` gradient steps (a `lax.scan`, so it can be differentiated);
        `objective` replaces `self.objective` (hypergradient passes a closure-converted one)."""
        grad = self._grad(objective)

        def step(x, _):
            return jax.tree.map(lambda a, b: a - self.step_size * b, x, grad(x, theta)), None

        return jax.lax.scan(step, x, length=iterations)[0]

    def info(self, x: PyTree, theta: Any, objective=None) -> SolveInfo:
        """Convergence after the fixed `iterations` steps of `run`: `‖∇ₓf(x, θ)‖ ≤ tol`."""
        grad = self._grad(objective)
        return SolveInfo.of(self.iterations, tree_norm(grad(x, theta)), self.tol)

    def solve(self, x: PyTree, theta: Any, objective=None) -> tuple[PyTree, SolveInfo]:
        """Gradient steps until `‖∇ₓf‖ ≤ tol`, at most `iterations` (a `lax.while_loop`: for
        the modes that only need the solution, not a path to differentiate)."""
        grad = self._grad(objective)

        def cond(carry):
            _, g, i = carry
            return (i < self.iterations) & ~(tree_norm(g) <= self.tol)

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
    linear_solve: str | Callable = "cg",
    linear_tol: float = 1e-10,
    linear_max_iter: int | None = None,
    on_failure: OnFailure = "raise",
) -> tuple[Scalar, PyTree, SolveInfo]:
    """The value and gradient of `θ ↦ outer_loss(x*(θ), θ)`, where `x*` solves `inner`.

    Modes (Franceschi et al. 2017; Blondel et al. 2022):

    - `"implicit"`: run the inner iterations, then `dL/dθ = ∂_θL - ∂²_{θx}f (∇²ₓf)⁻¹ ∂ₓL`
      with the linear system solved by `linear_solve` (default `cg`). Memory does not grow
      with the number of inner iterations; exact when the inner problem has converged.
    - `"unrolled"`: backpropagate through all inner iterations (memory grows with them).
    - `Truncated(k)` or `"truncated(k)"`: backpropagate through the last `k` only.
    - `Neumann(k)` or `"neumann(k)"`: implicit, with a `k`-term Neumann series for the inverse.

    `on_failure` applies to the inner problem's convergence (`‖∇ₓf‖ ≤ inner.tol`) in the
    implicit and Neumann modes, whose gradient assumes it; use `"return"` to study
    unconverged inner problems. **Returns:** `(value, gradient, info)`.
    """
    mode = _parse_mode(mode)
    check_choice("on_failure", on_failure, ("raise", "nan", "return"))
    theta = as_arrays(theta)
    x0 = as_arrays(inner.x0)
    objective = convert(inner.objective, "inner.objective", x0, theta)

    if mode == "unrolled" or isinstance(mode, Truncated):
        k = inner.iterations if mode == "unrolled" else min(mode.k, inner.iterations)

        def value_unrolled(theta):
            frozen = jax.lax.stop_gradient(theta)
            x = inner.run(x0, frozen, inner.iterations - k, objective)
            x = inner.run(jax.lax.stop_gradient(x), theta, k, objective)
            return outer_loss(x, theta), inner.info(x, theta, objective)

        (value, info), grad = jax.value_and_grad(value_unrolled, has_aux=True)(theta)
        return value, grad, info

    message = (
        f"hypergradient: the inner problem did not converge (|grad f| > tol={inner.tol}) in "
        f"{inner.iterations} iterations, so the implicit gradient would be wrong; raise "
        "iterations or step_size, or pass on_failure='return' to study it anyway"
    )
    if isinstance(mode, Neumann):
        solve = lambda matvec, b: neumann_solve(matvec, b, k=mode.k, alpha=inner.step_size)  # noqa: E731
    else:
        solve = linear_solver(
            linear_solve, tol=linear_tol, max_iter=linear_max_iter, check=1e-3,
            on_failure=on_failure, caller="hypergradient",
        )  # fmt: skip

    def forward(x0, objective, theta):
        if inner.forward_solver == "lbfgs":
            solver = jaxopt.LBFGS(fun=lambda x, t: objective(x, t), tol=inner.tol,
                                  maxiter=inner.iterations, implicit_diff=False)  # fmt: skip
            x, state = solver.run(x0, theta)
            info = SolveInfo.of(state.iter_num, state.error, inner.tol)
        else:
            x, info = inner.solve(x0, theta, objective)
        return apply_policy(x, info, on_failure, message), info

    def optimality(x, objective, theta):
        return jax.grad(objective)(x, theta)

    def value_implicit(theta):
        x, info = implicit_solve(forward, optimality, solve, x0, objective, theta)
        return outer_loss(x, theta), info

    (value, info), grad = jax.value_and_grad(value_implicit, has_aux=True)(theta)
    return value, grad, info
