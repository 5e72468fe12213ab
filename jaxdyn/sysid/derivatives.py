"""Derivatives of sampled signals on a uniform grid: finite differences, Savitzky–Golay-smoothed
finite differences, and spectral (Fourier) derivatives of periodic signals.

Stencil weights are computed on the host once per (order, derivative) from the Taylor
conditions `Σ_j w_j (s_j h)^m / m! = δ_{m, d}` (Fornberg 1988); applying them is a jittable,
differentiable linear map of the signal.
"""

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count, check_positive

__all__ = [
    "finite_difference",
    "savgol_smooth",
    "smoothed_finite_difference",
    "spectral_derivative",
]


def _weights(offsets: np.ndarray, d: int) -> np.ndarray:
    """Weights `w` with `Σ_j w_j f(s_j) ≈ f^{(d)}(0)` for unit spacing, exact on polynomials
    of degree < len(offsets)."""
    powers = np.arange(len(offsets))[:, None]
    vandermonde = offsets[None, :].astype(np.float64) ** powers
    rhs = np.zeros(len(offsets))
    rhs[d] = math.factorial(d)
    return np.linalg.solve(vandermonde, rhs)


def finite_difference(
    x: Float[ArrayLike, "time ..."],
    dt: float | Float[ArrayLike, ""],
    *,
    order: int = 2,
    derivative: int = 1,
    axis: int = 0,
) -> Float[Array, "time ..."]:
    """The `derivative`-th derivative of `x` sampled every `dt` along `axis`, accurate to
    `O(dt^order)`: central differences inside (`2⌊(derivative + 1)/2⌋ − 1 + order` points)
    and one-sided differences of `derivative + order` points at the ends (pysindy's
    `FiniteDifference`; for `order = 2`, `derivative = 1` this is `np.gradient(x, dt,
    edge_order=2)`)."""
    x = jnp.asarray(x)
    check_positive("dt", dt)
    check_count("order", order)
    check_count("derivative", derivative)
    if order % 2:
        raise ValueError(f"order must be even (central stencils), got {order}")
    axis = axis % x.ndim if x.ndim else 0
    n = x.shape[axis] if x.ndim else 0
    n_central = 2 * ((derivative + 1) // 2) - 1 + order
    n_side = derivative + order
    half = (n_central - 1) // 2
    if n < max(n_central, n_side):
        raise ValueError(
            f"finite_difference of order {order} needs at least {max(n_central, n_side)} "
            f"samples along axis {axis}, got {n}"
        )
    x = jnp.moveaxis(x, axis, 0)
    # Unit-spacing stencils, and one division by dt^derivative at the end (dt may be traced).
    central = _weights(np.arange(-half, half + 1), derivative)
    interior = sum(float(w) * x[j : n - n_central + 1 + j] for j, w in enumerate(central) if w)
    starts, ends = [], []
    for i in range(half):  # the first `half` points: a stencil starting at 0, evaluated at i
        w = _weights(np.arange(n_side) - i, derivative)
        starts.append(jnp.tensordot(jnp.asarray(w, x.dtype), x[:n_side], axes=(0, 0)))
        w = _weights(np.arange(n_side) - (n_side - 1 - i), derivative)
        ends.append(jnp.tensordot(jnp.asarray(w, x.dtype), x[n - n_side :], axes=(0, 0)))
    out = (
        jnp.concatenate([jnp.stack(starts), interior, jnp.stack(ends[::-1])]) if half else interior
    )
    out = out / jnp.asarray(dt, out.dtype) ** derivative
    return jnp.moveaxis(out, 0, axis)


def savgol_smooth(
    x: Float[ArrayLike, "time ..."], *, window: int = 11, polyorder: int = 3, axis: int = 0
) -> Float[Array, "time ..."]:
    """Savitzky–Golay smoothing (Savitzky & Golay 1964): the value at each point of the
    least-squares polynomial of degree `polyorder` through the `window` points centred on it;
    within `window // 2` of an end, the polynomial fitted to the first (last) `window` points
    (SciPy's `savgol_filter(..., mode="interp")`)."""
    x = jnp.asarray(x)
    check_count("polyorder", polyorder, 0)
    if not isinstance(window, int) or window % 2 == 0 or window <= polyorder:
        raise ValueError(f"window must be an odd int > polyorder={polyorder}, got {window!r}")
    axis = axis % x.ndim
    n = x.shape[axis]
    if n < window:
        raise ValueError(f"savgol_smooth needs at least window={window} samples, got {n}")
    half = window // 2
    # Row k of the projection evaluates, at offset k, the polynomial fitted to the window.
    offsets = np.arange(window) - half
    vandermonde = offsets[:, None].astype(np.float64) ** np.arange(polyorder + 1)
    projection = vandermonde @ np.linalg.pinv(vandermonde)  # (window, window)
    x = jnp.moveaxis(x, axis, 0)
    centre = projection[half]
    interior = sum(float(w) * x[j : n - window + 1 + j] for j, w in enumerate(centre))
    start = jnp.tensordot(jnp.asarray(projection[:half], x.dtype), x[:window], axes=(1, 0))
    end = jnp.tensordot(jnp.asarray(projection[half + 1 :], x.dtype), x[n - window :], axes=(1, 0))
    return jnp.moveaxis(jnp.concatenate([start, interior, end]), 0, axis)


def smoothed_finite_difference(
    x: Float[ArrayLike, "time ..."],
    dt: float,
    *,
    window: int = 11,
    polyorder: int = 3,
    order: int = 2,
    axis: int = 0,
) -> Float[Array, "time ..."]:
    """`finite_difference` of `savgol_smooth(x)` (pysindy's `SmoothedFiniteDifference`, whose
    defaults these are)."""
    smooth = savgol_smooth(x, window=window, polyorder=polyorder, axis=axis)
    return finite_difference(smooth, dt, order=order, axis=axis)


def spectral_derivative(
    u: Float[ArrayLike, "*shape"], length: float, *, derivative: int = 1, axis: int = -1
) -> Float[Array, "*shape"]:
    """`∂^derivative u / ∂x^derivative` of a periodic signal sampled at `n` equispaced points
    on a period of length `length`, by the FFT: `F⁻¹[(i k)^derivative F[u]]`, `k = 2π m /
    length` (the Nyquist mode dropped for odd derivatives, so real signals stay real)."""
    u = jnp.asarray(u)
    u = u.astype(jnp.result_type(u.dtype, jnp.float32))  # integers differentiate as floats
    check_positive("length", length)
    check_count("derivative", derivative)
    n = u.shape[axis]
    k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
    factor = (1j * k) ** derivative
    if derivative % 2 and n % 2 == 0:
        factor[-1] = 0.0
    shape = [1] * u.ndim
    shape[axis] = len(k)
    spectrum = jnp.fft.rfft(u, axis=axis) * jnp.asarray(factor.reshape(shape))
    return jnp.fft.irfft(spectrum, n=n, axis=axis).astype(u.dtype)
