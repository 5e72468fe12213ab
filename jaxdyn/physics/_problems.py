"""Ready-made semilinear problems for `ETDRK4`: viscous Burgers, Kuramoto–Sivashinsky and
Korteweg–de Vries in 1-D, and 2-D incompressible Navier–Stokes in vorticity form; and their
nonlinear terms as Equinox modules whose coefficients are differentiable parameters.
"""

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float

from .._checks import check_positive
from ._etdrk import ETDRK4
from ._spectral import PeriodicGrid

__all__ = [
    "Convection",
    "VorticityConvection",
    "burgers",
    "korteweg_de_vries",
    "kuramoto_sivashinsky",
    "navier_stokes_vorticity",
]


def _grid(grid: PeriodicGrid, ndim: int, caller: str) -> PeriodicGrid:
    if not isinstance(grid, PeriodicGrid):
        raise TypeError(f"{caller} needs grid=PeriodicGrid(...), got {type(grid).__name__}")
    if grid.ndim != ndim:
        raise ValueError(f"{caller} needs a {ndim}-D grid, got grid.ndim={grid.ndim}")
    return grid


class Convection(eqx.Module):
    """The conservative quadratic term `N(u) = −(c/2) (u²)_x = −c u u_x` in Fourier space,
    `N̂ = −(c/2) i k F[u²]` (1-D; the product taken on the grid, pseudo-spectrally).
    `coefficient` is `c`: 1 for Burgers and Kuramoto–Sivashinsky, 6 for KdV."""

    coefficient: Float[Array, ""]

    def __init__(self, coefficient: float | Float[ArrayLike, ""] = 1.0):
        self.coefficient = jnp.asarray(coefficient, float)

    def __call__(
        self, u_hat: Complex[Array, " modes"], grid: PeriodicGrid
    ) -> Complex[Array, " modes"]:
        u = grid.irfft(u_hat)
        return -0.5 * self.coefficient * grid.derivative(grid.rfft(u**2))


class VorticityConvection(eqx.Module):
    """The advection of vorticity by its own velocity, `N(ω) = −c (u ω_x + v ω_y)` in 2-D, with
    the stream function `Δψ = −ω` (its mean mode zero) and `(u, v) = (ψ_y, −ψ_x)`; in Fourier
    space `ψ̂ = ω̂ / |k|²`. `coefficient` is `c` (1 for Navier–Stokes)."""

    coefficient: Float[Array, ""]

    def __init__(self, coefficient: float | Float[ArrayLike, ""] = 1.0):
        self.coefficient = jnp.asarray(coefficient, float)

    def __call__(
        self, w_hat: Complex[Array, "n modes"], grid: PeriodicGrid
    ) -> Complex[Array, "n modes"]:
        kx, ky = grid.wavenumbers
        k2 = kx**2 + ky**2
        psi_hat = w_hat / jnp.where(k2 == 0, 1.0, k2) * (k2 != 0)
        u = grid.irfft(grid.derivative(psi_hat, axis=1))
        v = -grid.irfft(grid.derivative(psi_hat, axis=0))
        w_x = grid.irfft(grid.derivative(w_hat, axis=0))
        w_y = grid.irfft(grid.derivative(w_hat, axis=1))
        return -self.coefficient * grid.rfft(u * w_x + v * w_y)


def burgers(
    *, grid: PeriodicGrid, dt0: float, nu: float | Float[ArrayLike, ""] = 0.1, num_contour: int = 32
) -> ETDRK4:
    """Viscous Burgers `u_t = ν u_xx − ½ (u²)_x`: `L(k) = −ν k²`, `N = Convection(1)`."""
    _grid(grid, 1, "burgers")
    check_positive("nu", nu)
    return ETDRK4(
        lambda k: -nu * k**2, Convection(1.0), grid=grid, dt0=dt0, num_contour=num_contour
    )


def kuramoto_sivashinsky(*, grid: PeriodicGrid, dt0: float, num_contour: int = 32) -> ETDRK4:
    """Kuramoto–Sivashinsky `u_t = −u_xx − u_xxxx − ½ (u²)_x` (Kassam & Trefethen 2005's
    example: `length = 32π`, `n = 128`, `u0 = cos(x/16)(1 + sin(x/16))`, `dt0 = 1/4`):
    `L(k) = k² − k⁴`, `N = Convection(1)`."""
    _grid(grid, 1, "kuramoto_sivashinsky")
    return ETDRK4(
        lambda k: k**2 - k**4, Convection(1.0), grid=grid, dt0=dt0, num_contour=num_contour
    )


def korteweg_de_vries(*, grid: PeriodicGrid, dt0: float, num_contour: int = 32) -> ETDRK4:
    """Korteweg–de Vries `u_t = −u_xxx − 6 u u_x`, whose solitons are
    `u = (c/2) sech²(√c (x − ct − x₀)/2)`: `L(k) = i k³` (dispersive: complex coefficients),
    `N = Convection(6)`."""
    _grid(grid, 1, "korteweg_de_vries")
    return ETDRK4(lambda k: 1j * k**3, Convection(6.0), grid=grid, dt0=dt0, num_contour=num_contour)


def navier_stokes_vorticity(
    *,
    grid: PeriodicGrid,
    dt0: float,
    nu: float | Float[ArrayLike, ""] = 1e-3,
    drag: float | Float[ArrayLike, ""] = 0.0,
    num_contour: int = 32,
) -> ETDRK4:
    """2-D incompressible Navier–Stokes in vorticity form on the periodic square,
    `ω_t + u·∇ω = ν Δω − μ ω` (linear drag `μ = drag`): `L(k) = −ν |k|² − μ`,
    `N = VorticityConvection(1)`."""
    _grid(grid, 2, "navier_stokes_vorticity")
    check_positive("nu", nu)
    if not isinstance(drag, jnp.ndarray) and not (math.isfinite(drag) and drag >= 0):
        raise ValueError(f"drag must be a non-negative number, got {drag!r}")

    def symbol(kx, ky):
        return -nu * (kx**2 + ky**2) - drag

    return ETDRK4(symbol, VorticityConvection(1.0), grid=grid, dt0=dt0, num_contour=num_contour)
