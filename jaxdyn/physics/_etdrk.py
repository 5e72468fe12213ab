"""Exponential time differencing with fourth-order Runge–Kutta stages (ETDRK4) for semilinear
PDEs `u_t = L u + N(u)` on a periodic grid, in Fourier space.

Cox & Matthews (2002) write the stiff linear part exactly (`e^{Lh}`) and integrate the
nonlinear part with four stages; Kassam & Trefethen (2005) evaluate the coefficients'
functions `φ(z) = (e^z − 1)/z, …`, which cancel catastrophically for small `|z|`, as contour
integrals: the mean of `φ` over `M` points on a circle of radius 1 around each `z = L h`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float, Inexact

from .._checks import check_count, check_positive
from ._spectral import PeriodicGrid

__all__ = ["ETDRK4", "etdrk4_coefficients"]

Nonlinear = Callable[[Complex[Array, "*spectral"], PeriodicGrid], Complex[Array, "*spectral"]]


def etdrk4_coefficients(
    linear: Inexact[ArrayLike, "*spectral"],
    dt0: float | Float[ArrayLike, ""],
    num_contour: int = 32,
) -> tuple[Inexact[Array, "*spectral"], ...]:
    """The ETDRK4 coefficients `(e^{z/2}, e^z, Q, f₁, f₂, f₃)` for `z = L h`, `h = dt0`
    (Cox & Matthews 2002, eqs. 26; Kassam & Trefethen 2005, eq. 2.5 and § 4):

        Q  = h · mean[(e^{ζ/2} − 1)/ζ]
        f₁ = h · mean[(−4 − ζ + e^ζ (4 − 3ζ + ζ²))/ζ³]
        f₂ = h · mean[(2 + ζ + e^ζ (ζ − 2))/ζ³]
        f₃ = h · mean[(−4 − 3ζ − ζ² + e^ζ (4 − ζ))/ζ³]

    the means over `ζ = z + r_j`, `r_j` on the unit circle. For a real symbol (dissipative
    problems) the integrands are conjugate-symmetric and the `num_contour` points are the upper
    half circle, `r_j = exp(iπ(j − ½)/M)`, with the real part kept (Kassam & Trefethen's
    choice, M = 32); for a complex symbol (dispersive problems) the full circle of
    `2 · num_contour` points. Traceable in `linear` and `dt0`, so gradients reach parameters of
    the linear symbol and the step."""
    check_count("num_contour", num_contour, 2)
    check_positive("dt0", dt0)
    linear = jnp.asarray(linear)
    real = not jnp.iscomplexobj(linear)
    if real:
        linear = linear.astype(jnp.result_type(linear.dtype, float))
    points = num_contour if real else 2 * num_contour
    angles = np.pi * (np.arange(1, points + 1) - 0.5) / num_contour
    roots = jnp.asarray(np.exp(1j * angles), jnp.result_type(linear.dtype, complex))
    z = linear * dt0

    def accumulate(sums, root):
        zeta = z + root
        e = jnp.exp(zeta)
        terms = (
            (jnp.exp(zeta / 2) - 1) / zeta,
            (-4 - zeta + e * (4 - 3 * zeta + zeta**2)) / zeta**3,
            (2 + zeta + e * (zeta - 2)) / zeta**3,
            (-4 - 3 * zeta - zeta**2 + e * (4 - zeta)) / zeta**3,
        )
        if real:
            terms = tuple(t.real for t in terms)
        return tuple(s + t for s, t in zip(sums, terms, strict=True)), None

    zero = jnp.zeros(z.shape, z.dtype)
    sums, _ = jax.lax.scan(accumulate, (zero,) * 4, roots)
    q, f1, f2, f3 = (dt0 * s / points for s in sums)
    return jnp.exp(z / 2), jnp.exp(z), q, f1, f2, f3


class ETDRK4(eqx.Module):
    """The ETDRK4 scheme (Cox & Matthews 2002, with Kassam & Trefethen's 2005 contour-integral
    coefficients) for `u_t = L u + N(u)` on a `PeriodicGrid`, pseudo-spectral: the state is
    `v = F[u]` (real FFT), `L` is diagonal there (its symbol `L(k)`), and with `h = dt0`

        a = e^{Lh/2} v + Q N̂(v)              b = e^{Lh/2} v + Q N̂(a)
        c = e^{Lh/2} a + Q (2 N̂(b) − N̂(v))
        v ← e^{Lh} v + f₁ N̂(v) + 2 f₂ (N̂(a) + N̂(b)) + f₃ N̂(c)

    where `N̂(v) = P · nonlinear(P · v, grid)` and `P` is the 2/3 dealiasing mask
    (`PeriodicGrid.dealias_mask`), applied to the nonlinearity's input and output.

    **Arguments:**

    - `linear_symbol`: `L(k)` as a function of the wavenumbers, `lambda k: -nu * k**2` (1-D)
      or `lambda kx, ky: -nu * (kx**2 + ky**2)` (2-D), or an array of `grid.spectral_shape`;
      real for dissipative, complex for dispersive terms (`i k³` for `−u_xxx`).
    - `nonlinear`: `N̂` as `nonlinear(u_hat, grid) -> N_hat`, Fourier coefficients in and out
      (`grid.irfft`, `grid.rfft` and `grid.derivative` help); an `eqx.Module` whose array
      fields are parameters (`Convection`), or a plain function.
    - `grid`: the `PeriodicGrid`.
    - `dt0`: the fixed time step `h > 0` (named as every fixed step in jaxdyn is, `dt0`).
    - `num_contour`: contour points `M` for the coefficients (`etdrk4_coefficients`).

    Everything is a pytree of arrays: `jax.jit`, `jax.vmap` over initial conditions and
    `jax.grad` (with respect to `u0`, the nonlinearity's parameters, or a parameter of the
    symbol when the solver is built inside the differentiated function) go through `step` and
    `rollout`. One sample per call; batch with `jax.vmap`.
    """

    grid: PeriodicGrid
    nonlinear: Nonlinear
    dt0: float | Float[Array, ""]
    linear: Inexact[Array, "*spectral"]
    exp_half: Inexact[Array, "*spectral"]
    exp_full: Inexact[Array, "*spectral"]
    q: Inexact[Array, "*spectral"]
    f1: Inexact[Array, "*spectral"]
    f2: Inexact[Array, "*spectral"]
    f3: Inexact[Array, "*spectral"]

    def __init__(
        self,
        linear_symbol: Callable[..., Inexact[Array, "*spectral"]] | Inexact[ArrayLike, "*spectral"],
        nonlinear: Nonlinear,
        *,
        grid: PeriodicGrid,
        dt0: float | Float[ArrayLike, ""],
        num_contour: int = 32,
    ):
        if not isinstance(grid, PeriodicGrid):
            raise TypeError(f"grid must be a PeriodicGrid, got {type(grid).__name__}")
        if not callable(nonlinear):
            raise TypeError(f"nonlinear must be callable, got {type(nonlinear).__name__}")
        check_positive("dt0", dt0)
        if callable(linear_symbol):
            linear = jnp.asarray(linear_symbol(*grid.wavenumbers))
            linear = jnp.broadcast_to(linear, grid.spectral_shape)
        else:
            linear = jnp.asarray(linear_symbol)
        if linear.shape != grid.spectral_shape:
            raise ValueError(
                f"linear_symbol must have the grid's spectral shape {grid.spectral_shape}, got "
                f"shape {linear.shape}"
            )
        probe = jax.ShapeDtypeStruct(grid.spectral_shape, jnp.result_type(complex))
        out = jax.eval_shape(lambda v: nonlinear(v, grid), probe)
        if getattr(out, "shape", None) != grid.spectral_shape:
            raise ValueError(
                f"nonlinear(u_hat, grid) must return Fourier coefficients of shape "
                f"{grid.spectral_shape}, got {getattr(out, 'shape', type(out).__name__)}"
            )
        self.grid = grid
        self.nonlinear = nonlinear
        self.dt0 = dt0
        self.linear = linear
        coefficients = etdrk4_coefficients(linear, dt0, num_contour)
        self.exp_half, self.exp_full, self.q, self.f1, self.f2, self.f3 = coefficients

    def _check_state(self, u: Float[ArrayLike, "*shape"], argument: str) -> Float[Array, "*shape"]:
        u = jnp.asarray(u)
        if u.shape != self.grid.shape:
            raise ValueError(
                f"{argument} must be one field of the grid's shape {self.grid.shape}, got "
                f"shape {u.shape} (batch initial conditions with jax.vmap)"
            )
        if not jnp.issubdtype(u.dtype, jnp.floating):
            raise TypeError(f"{argument} must be a real floating array, got dtype {u.dtype}")
        return u

    def _nonlinear_hat(self, v: Complex[Array, "*spectral"]) -> Complex[Array, "*spectral"]:
        mask = self.grid.dealias_mask
        return mask * self.nonlinear(mask * v, self.grid)

    def step_fourier(self, v: Complex[Array, "*spectral"]) -> Complex[Array, "*spectral"]:
        """One step of the scheme on Fourier coefficients `v = F[u]`."""
        nv = self._nonlinear_hat(v)
        a = self.exp_half * v + self.q * nv
        na = self._nonlinear_hat(a)
        b = self.exp_half * v + self.q * na
        nb = self._nonlinear_hat(b)
        c = self.exp_half * a + self.q * (2 * nb - nv)
        nc = self._nonlinear_hat(c)
        return self.exp_full * v + self.f1 * nv + 2 * self.f2 * (na + nb) + self.f3 * nc

    def step(self, u: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`u(t + dt0)` from `u(t)` on the grid (physical space in and out)."""
        u = self._check_state(u, "u")
        return self.grid.irfft(self.step_fourier(self.grid.rfft(u))).astype(u.dtype)

    def rollout(
        self, u0: Float[ArrayLike, "*shape"], num_steps: int, *, save_every: int | None = None
    ) -> Float[Array, "*shape"] | Float[Array, " time *shape"]:
        """`num_steps` steps from `u0` by `lax.scan`, in Fourier space throughout.

        **Returns:** `u(num_steps · dt0)` when `save_every` is `None`; otherwise the states
        every `save_every` steps, `u0` included: `(num_steps // save_every + 1, *grid.shape)`
        at times `0, save_every · dt0, …, num_steps · dt0` (`save_every` must divide
        `num_steps`)."""
        u0 = self._check_state(u0, "u0")
        check_count("num_steps", num_steps)
        if save_every is not None:
            check_count("save_every", save_every)
            if num_steps % save_every:
                raise ValueError(f"save_every={save_every} must divide num_steps={num_steps}")

        def advance(v, length):
            def body(v, _):
                return self.step_fourier(v), None

            return jax.lax.scan(body, v, length=length)[0]

        v0 = self.grid.rfft(u0)
        if save_every is None:
            return self.grid.irfft(advance(v0, num_steps)).astype(u0.dtype)

        def chunk(v, _):
            v = advance(v, save_every)
            return v, v

        _, vs = jax.lax.scan(chunk, v0, length=num_steps // save_every)
        us = self.grid.irfft(jnp.concatenate([v0[None], vs]))
        return us.astype(u0.dtype)
