"""Sharp spectral filters between periodic 1-D grids: the low-pass projection on one grid, the
coarse-graining `F̄` of a fine field onto a coarser grid's resolved band and its inverse
(band-limited interpolation back to the fine grid), as large-eddy-simulation closures use
them (e.g. Pope 2000, § 13.2; the sharp cut-off filter).
"""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count
from ._spectral import PeriodicGrid

__all__ = ["coarse_grain", "lowpass", "refine", "resolved_modes"]


def _one_d(grid: PeriodicGrid, name: str, caller: str) -> None:
    if not isinstance(grid, PeriodicGrid):
        raise TypeError(f"{caller} needs {name}=PeriodicGrid(...), got {type(grid).__name__}")
    if grid.ndim != 1:
        raise ValueError(f"{caller} is 1-D only; got {name}.ndim={grid.ndim}")


def check_grid_pair(fine: PeriodicGrid, coarse: PeriodicGrid, caller: str) -> None:
    """Raise unless `fine` and `coarse` are 1-D grids of one domain, `coarse.n <= fine.n`."""
    _one_d(fine, "fine", caller)
    _one_d(coarse, "coarse", caller)
    if fine.length != coarse.length:
        raise ValueError(
            f"{caller}: the grids must share a domain, got lengths {fine.length} and "
            f"{coarse.length}"
        )
    if coarse.n > fine.n:
        raise ValueError(f"{caller}: coarse.n={coarse.n} must be <= fine.n={fine.n}")


def _band(grid: PeriodicGrid, num_modes: int) -> np.ndarray:
    return np.arange(grid.n // 2 + 1) < num_modes


def lowpass(
    u: Float[ArrayLike, "*batch n"], grid: PeriodicGrid, num_modes: int
) -> Float[Array, "*batch n"]:
    """The sharp spectral cut-off `P_M u = F⁻¹[1_{|m| < M} F[u]]` on `grid` (`M = num_modes`):
    an orthogonal projection (`P_M P_M = P_M`, self-adjoint), batched over leading axes."""
    _one_d(grid, "grid", "lowpass")
    check_count("num_modes", num_modes)
    u = jnp.asarray(u)
    u_hat = jnp.fft.rfft(u, axis=-1) * _band(grid, num_modes)
    return jnp.fft.irfft(u_hat, n=grid.n, axis=-1).astype(u.dtype)


def resolved_modes(coarse: PeriodicGrid) -> int:
    """The modes a coarse pseudo-spectral solver resolves: `|m| < n/3`, its 2/3 rule band."""
    return int(np.ceil(coarse.n / 3))


def coarse_grain(
    u: Float[ArrayLike, "*batch n_fine"], fine: PeriodicGrid, coarse: PeriodicGrid
) -> Float[Array, "*batch n_coarse"]:
    """`ū = F̄ u`: the fine field's modes in the coarse grid's dealiased band `|m| < n_c/3`
    (`PeriodicGrid.dealias_mask`), sampled on the coarse grid. The sharp filter: `ū` is the
    low-pass `P u` written on fewer points, exactly (`refine(ū) = P u`)."""
    check_grid_pair(fine, coarse, "coarse_grain")
    u = jnp.asarray(u)
    u_hat = jnp.fft.rfft(u, axis=-1)[..., : coarse.n // 2 + 1]
    u_hat = u_hat * _band(coarse, resolved_modes(coarse)) * (coarse.n / fine.n)
    return jnp.fft.irfft(u_hat, n=coarse.n, axis=-1).astype(u.dtype)


def refine(
    u_bar: Float[ArrayLike, "*batch n_coarse"], coarse: PeriodicGrid, fine: PeriodicGrid
) -> Float[Array, "*batch n_fine"]:
    """Band-limited (spectral, zero-padded) interpolation of a coarse field onto the fine grid;
    `coarse_grain(refine(ū)) = ū` for every `ū` in the coarse resolved band."""
    check_grid_pair(fine, coarse, "refine")
    u_bar = jnp.asarray(u_bar)
    u_hat = jnp.fft.rfft(u_bar, axis=-1) * (fine.n / coarse.n)
    pad = [(0, 0)] * (u_hat.ndim - 1) + [(0, fine.n // 2 - coarse.n // 2)]
    u_hat = jnp.pad(u_hat, pad)
    return jnp.fft.irfft(u_hat, n=fine.n, axis=-1).astype(u_bar.dtype)
