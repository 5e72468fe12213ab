"""Deep equilibrium layers (Bai, Kolter & Koltun 2019): the output is a fixed point."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._checks import OnFailure
from ..implicit import SolveInfo, fixed_point

__all__ = ["DEQ", "TanhCell"]


class TanhCell(eqx.Module):
    """`f(z, x) = tanh(W z + U x + b)` with `W = γ V / ‖V‖_F`, `0 < γ < 1`.

    Since tanh is 1-Lipschitz, `‖∂f/∂z‖₂ ≤ ‖W‖₂ ≤ ‖W‖_F = γ < 1` for every parameter value:
    `f` is a contraction in `z`, so the equilibrium exists, is unique and fixed-point
    iteration converges (Banach), during training as at initialisation.
    """

    V: Float[Array, "dim dim"]
    U: eqx.nn.Linear
    contraction: float = eqx.field(static=True)

    def __init__(self, *, dim: int, in_size: int, contraction: float = 0.9, key: PRNGKeyArray):
        if not 0 < contraction < 1:
            raise ValueError(f"contraction must be in (0, 1), got {contraction!r}")
        vkey, ukey = jax.random.split(key)
        self.V = jax.random.normal(vkey, (dim, dim)) / jnp.sqrt(dim)
        self.U = eqx.nn.Linear(in_size, dim, key=ukey)
        self.contraction = contraction

    @property
    def W(self) -> Float[Array, "dim dim"]:
        return self.contraction * self.V / jnp.linalg.norm(self.V)

    def __call__(
        self, z: Float[Array, " dim"], x: Float[Array, " in_size"]
    ) -> Float[Array, " dim"]:
        return jnp.tanh(self.W @ z + self.U(x))


class DEQ(eqx.Module):
    """A deep-equilibrium layer `z* = f(z*, x; θ)`: Anderson acceleration (or plain
    iteration) forward, the implicit function theorem backward,
    `∂z*/∂θ = (I - ∂_z f)⁻¹ ∂_θ f`, so memory does not grow with the iterations.

    `cell(z, x)` is any Equinox module (its arrays are `θ`) returning a `(dim,)` state. Call
    on one example; `vmap` for a batch. `solver`, `tol`, `max_steps`, `history_size`,
    `linear_solver` and `on_failure` are those of `jaxdyn.implicit.fixed_point` (a DEQ's
    forward solve is loose, `tol=1e-4`, and capped at 50 steps: training needs the gradient,
    not a precise equilibrium). `jacobian_penalty` gives the Jacobian regulariser of Bai,
    Koltun & Kolter (2021).
    """

    cell: Callable
    dim: int = eqx.field(static=True, kw_only=True)
    solver: str = eqx.field(static=True, default="anderson", kw_only=True)
    tol: float = eqx.field(static=True, default=1e-4, kw_only=True)
    max_steps: int = eqx.field(static=True, default=50, kw_only=True)
    history_size: int = eqx.field(static=True, default=5, kw_only=True)
    linear_solver: str = eqx.field(static=True, default="gmres", kw_only=True)
    on_failure: OnFailure = eqx.field(static=True, default="raise", kw_only=True)

    def solve(self, x: Float[Array, " in_size"]) -> tuple[Float[Array, " dim"], SolveInfo]:
        """The equilibrium and the solve's `SolveInfo`."""
        return fixed_point(
            _apply, jnp.zeros(self.dim, x.dtype), (self.cell, x), solver=self.solver,
            tol=self.tol, max_steps=self.max_steps, history_size=self.history_size,
            linear_solver=self.linear_solver, on_failure=self.on_failure,
        )  # fmt: skip

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " dim"]:
        return self.solve(x)[0]

    def jacobian_penalty(
        self, z: Float[Array, " dim"], x: Float[Array, " in_size"], *, key: PRNGKeyArray
    ) -> Scalar:
        """Hutchinson estimate of `‖∂_z f(z, x)‖_F² / dim` with one Gaussian probe; small
        values keep `f` contractive, so the forward solve stays fast and convergent."""
        _, vjp = jax.vjp(lambda z: self.cell(z, x), jax.lax.stop_gradient(z))
        (row,) = vjp(jax.random.normal(key, z.shape, z.dtype))
        return jnp.sum(row**2) / z.size


def _apply(z, cell_and_x):
    cell, x = cell_and_x
    return cell(z, x)
