"""A periodic grid in 1-D or 2-D and its real Fourier transform: points, wavenumbers, Orszag's
2/3 dealiasing mask and spectral derivatives.

The domain is `[0, length)^d` with `n` points per axis (the right end excluded); a field is an
array of shape `grid.shape` (`(n,)` or `(n, n)`, axis 0 is `x`, axis 1 is `y`), its transform
`grid.rfft(u)` has shape `grid.spectral_shape` (`(n // 2 + 1,)` or `(n, n // 2 + 1)`: NumPy's
`rfftn` over the last `d` axes, unnormalised forward).
"""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Complex, Float

from .._checks import check_count, check_positive

__all__ = ["PeriodicGrid"]

MIN_POINTS = 4  # below this the 2/3 rule keeps only the mean mode


class PeriodicGrid(eqx.Module):
    """`n` equispaced points per axis on the periodic domain `[0, length)^ndim`, `ndim` 1 or 2.

    `n` must be even (so the Nyquist mode is a single real mode, as in Kassam & Trefethen 2005)
    and at least 4. Everything here is static: a grid is configuration, not a parameter.
    """

    length: float = eqx.field(static=True)
    n: int = eqx.field(static=True)
    ndim: int = eqx.field(static=True)

    def __init__(self, *, length: float, n: int, ndim: int = 1):
        check_positive("length", length)
        check_count("n", n, MIN_POINTS)
        if n % 2:
            raise ValueError(f"n must be even (a real Nyquist mode), got n={n}")
        if ndim not in (1, 2):
            raise ValueError(f"ndim must be 1 or 2, got ndim={ndim!r}")
        self.length = float(length)
        self.n = int(n)
        self.ndim = int(ndim)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of a field in physical space, `(n,) * ndim`."""
        return (self.n,) * self.ndim

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """The shape of its real FFT, `(n,) * (ndim - 1) + (n // 2 + 1,)`."""
        return (self.n,) * (self.ndim - 1) + (self.n // 2 + 1,)

    @property
    def points(self) -> Float[Array, "*shape"] | Float[Array, "ndim *shape"]:
        """The grid points `x_j = j · length / n`: `(n,)` in 1-D, `(2, n, n)` (`x`, `y`, `ij`
        indexing) in 2-D."""
        x = jnp.arange(self.n) * (self.length / self.n)
        if self.ndim == 1:
            return x
        return jnp.stack(jnp.meshgrid(x, x, indexing="ij"))

    def _integer_wavenumbers(self) -> tuple[np.ndarray, ...]:
        """The integer mode numbers `m` per axis, shaped to broadcast to `spectral_shape`."""
        full = np.fft.fftfreq(self.n, 1.0 / self.n)
        half = np.fft.rfftfreq(self.n, 1.0 / self.n)
        axes = [full] * (self.ndim - 1) + [half]
        return tuple(
            m.reshape([-1 if i == axis else 1 for i in range(self.ndim)])
            for axis, m in enumerate(axes)
        )

    @property
    def wavenumbers(self) -> tuple[Float[Array, "..."], ...]:
        """The angular wavenumbers `k = 2π m / length` per axis (`(kx,)` or `(kx, ky)`), each
        shaped to broadcast to `spectral_shape`."""
        scale = 2 * math.pi / self.length
        return tuple(jnp.asarray(scale * m) for m in self._integer_wavenumbers())

    @property
    def dealias_mask(self) -> Bool[Array, "*spectral_shape"]:
        """Orszag's (1971) 2/3 rule: keep the modes with `|m| < n/3` on every axis. The product
        of two fields so truncated then aliases only onto modes the mask removes, so a quadratic
        nonlinearity evaluated on masked fields and masked again is alias-free."""
        keep = [np.abs(m) < self.n / 3 for m in self._integer_wavenumbers()]
        mask = keep[0]
        for other in keep[1:]:
            mask = mask & other
        return jnp.asarray(np.broadcast_to(mask, self.spectral_shape))

    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-self.ndim, 0))

    def rfft(self, u: Float[ArrayLike, "*shape"]) -> Complex[Array, "*spectral_shape"]:
        """`û = rfftn(u)` over the last `ndim` axes (unnormalised)."""
        return jnp.fft.rfftn(jnp.asarray(u), axes=self._axes())

    def irfft(self, u_hat: Complex[ArrayLike, "*spectral_shape"]) -> Float[Array, "*shape"]:
        """The inverse of `rfft`: the real field on the grid."""
        return jnp.fft.irfftn(jnp.asarray(u_hat), s=self.shape, axes=self._axes())

    def derivative(
        self, u_hat: Complex[ArrayLike, "*spectral_shape"], axis: int = 0, order: int = 1
    ) -> Complex[Array, "*spectral_shape"]:
        """`F[∂^order u / ∂x_axis^order] = (i k_axis)^order û`, the Nyquist mode of an odd
        derivative set to zero (its derivative is not real)."""
        check_count("order", order)
        if not 0 <= axis < self.ndim:
            raise ValueError(f"axis must be in [0, {self.ndim}), got axis={axis!r}")
        k = self.wavenumbers[axis]
        factor = (1j * k) ** order
        if order % 2:
            m = self._integer_wavenumbers()[axis]
            factor = jnp.where(jnp.asarray(np.abs(m) == self.n // 2), 0.0, factor)
        return factor * jnp.asarray(u_hat)
