"""Closures for coarse pseudo-spectral solvers: the subgrid term a coarse grid misses, a
nonlinear term with a closure added, a one-coefficient Smagorinsky eddy viscosity and a
learned, translation-equivariant convolutional closure.

A fine solution `u` of `u_t = L u + N(u)`, coarse-grained by the sharp filter `F̄`
(`coarse_grain`, which commutes with the diagonal `L`), obeys

    ū_t = L ū + N(ū) + τ,        τ = F̄ N(u) − N(ū),

the subgrid term `τ` the commutator of the filter and the nonlinearity. A closure `C_θ(ū)`
models `τ` from the coarse field alone: a-priori by regression on `τ` from filtered fine data,
or a-posteriori by differentiating coarse rollouts through the solver (Maddu, Weady &
Shelley 2024, "Learning fast, accurate, and stable closures of a kinetic theory of an active
fluid"; Frezat et al. 2022). Closures have the signature of `ETDRK4`'s nonlinear term,
`closure(u_hat, grid) -> C_hat`, and are Equinox modules whose arrays are the parameters.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float, PRNGKeyArray

from .._checks import check_count
from ._filter import check_grid_pair, coarse_grain
from ._spectral import PeriodicGrid

__all__ = ["ClosedNonlinear", "ConvClosure", "SmagorinskyClosure", "subgrid_term"]

Nonlinear = Callable[[Complex[Array, " modes"], PeriodicGrid], Complex[Array, " modes"]]


def _dealiased(nonlinear: Nonlinear, u: Float[Array, " n"], grid: PeriodicGrid) -> Array:
    """`P N(P u)` in physical space, `P` the 2/3 mask: the term `ETDRK4` integrates."""
    mask = grid.dealias_mask
    return grid.irfft(mask * nonlinear(mask * grid.rfft(u), grid))


def subgrid_term(
    u: Float[ArrayLike, " n_fine"],
    nonlinear: Nonlinear,
    fine: PeriodicGrid,
    coarse: PeriodicGrid,
) -> Float[Array, " n_coarse"]:
    """`τ = F̄ N(u) − N(F̄ u)` on the coarse grid, each `N` dealiased on its own grid as
    `ETDRK4` evaluates it (`nonlinear(u_hat, grid)`, e.g. `Convection()`). One fine field;
    batch with `jax.vmap`. Zero when `u` already lies in the coarse band and `N(u)` has no
    part between the coarse band and the fine one (e.g. a single mode `m` under Burgers'
    `−½(u²)_x`, whose product lands at `2m`, when `2m` is resolved on the coarse grid)."""
    check_grid_pair(fine, coarse, "subgrid_term")
    u = jnp.asarray(u)
    if u.shape != fine.shape:
        raise ValueError(f"u must be one fine field of shape {fine.shape}, got {u.shape}")
    u_bar = coarse_grain(u, fine, coarse)
    exact = coarse_grain(_dealiased(nonlinear, u, fine), fine, coarse)
    return exact - _dealiased(nonlinear, u_bar, coarse)


class ClosedNonlinear(eqx.Module):
    """`N(u) + C(u)`: a nonlinear term with a closure added, both `(u_hat, grid) -> N_hat`, to
    pass to `ETDRK4` as its `nonlinear` (the closure's arrays are then parameters of the
    solver, and `jax.grad` reaches them through `rollout`)."""

    nonlinear: Nonlinear
    closure: Nonlinear

    def __call__(
        self, u_hat: Complex[Array, " modes"], grid: PeriodicGrid
    ) -> Complex[Array, " modes"]:
        return self.nonlinear(u_hat, grid) + self.closure(u_hat, grid)


class SmagorinskyClosure(eqx.Module):
    """Smagorinsky's (1963) eddy viscosity in 1-D, `C(u) = ∂ₓ(c Δ² |u_x| u_x)` with the grid
    spacing `Δ = length / n`: dissipative for `c > 0` (`∫ u C = −c Δ² ∫ |u_x|³`), conservative
    (flux form). `coefficient` is `c = C_s²`."""

    coefficient: Float[Array, ""]

    def __init__(self, coefficient: float | Float[ArrayLike, ""] = 0.0):
        self.coefficient = jnp.asarray(coefficient, float)

    def __call__(
        self, u_hat: Complex[Array, " modes"], grid: PeriodicGrid
    ) -> Complex[Array, " modes"]:
        width = grid.length / grid.n
        u_x = grid.irfft(grid.derivative(u_hat))
        flux = self.coefficient * width**2 * jnp.abs(u_x) * u_x
        return grid.derivative(grid.rfft(flux))


class ConvClosure(eqx.Module):
    """A learned closure in flux form, `C_θ(u) = scale · ∂ₓ f_θ(u, u_x, u_xx)`, with `f_θ` a
    stack of periodic (circular-padded) 1-D convolutions: translation-equivariant,
    mean-conserving, local (receptive field `depth · (kernel_size − 1) + 1` points).
    `scale` (fixed, not trained) sets the output's units; the last layer starts at zero, so a
    fresh closure is `C = 0` (the uncorrected coarse solver)."""

    layers: tuple[eqx.nn.Conv1d, ...]
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 16,
        depth: int = 3,
        kernel_size: int = 5,
        scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        check_count("width", width)
        check_count("depth", depth, 2)
        check_count("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred stencil), got {kernel_size}")
        channels = [3] + [width] * (depth - 1) + [1]
        keys = jax.random.split(key, depth)
        layers = [
            eqx.nn.Conv1d(
                c_in, c_out, kernel_size, padding="SAME", padding_mode="CIRCULAR", key=k
            )  # fmt: skip
            for c_in, c_out, k in zip(channels[:-1], channels[1:], keys, strict=True)
        ]
        last = layers[-1]
        last = eqx.tree_at(lambda c: (c.weight, c.bias), last,
                           (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))  # fmt: skip
        self.layers = (*layers[:-1], last)
        self.scale = float(scale)

    def flux(self, u_hat: Complex[Array, " modes"], grid: PeriodicGrid) -> Float[Array, " n"]:
        """`f_θ` on the grid, from the features `(u, u_x, u_xx)`."""
        u_x = grid.derivative(u_hat)
        h = grid.irfft(jnp.stack([u_hat, u_x, grid.derivative(u_x)]))
        for layer in self.layers[:-1]:
            h = jax.nn.gelu(layer(h))
        return self.layers[-1](h)[0]

    def __call__(
        self, u_hat: Complex[Array, " modes"], grid: PeriodicGrid
    ) -> Complex[Array, " modes"]:
        return self.scale * grid.derivative(grid.rfft(self.flux(u_hat, grid)))
