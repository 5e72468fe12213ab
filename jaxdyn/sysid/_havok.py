"""HAVOK, the Hankel alternative view of Koopman (Brunton, Brunton, Proctor, Kaiser & Kutz 2017,
"Chaos as an intermittently forced linear system"): a chaotic scalar series, delay-embedded, is
a linear system in its first `r − 1` eigen-time-delay coordinates forced by the `r`-th.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_choice, check_count, check_positive
from ._dmd import hankel
from .derivatives import finite_difference

__all__ = ["HAVOK", "HAVOK_DERIVATIVES", "havok"]

HAVOK_DERIVATIVES = ("central2", "central4")
"""The finite-difference stencils `havok` differentiates the coordinates with."""


class HAVOK(eqx.Module):
    """A fitted HAVOK model `dv/dt = A v + B v_r`, `v = (v_1, …, v_{r−1})` (Brunton et al.
    2017), with the SVD of the Hankel matrix `H = U Σ Vᵀ` it came from.

    - `A` `(r−1, r−1)`, `B` `(r−1,)`: the linear dynamics and the forcing's input.
    - `coordinates` `(windows, r)`: the first `r` columns of `V`, the eigen-time-delay
      coordinates (row `k` belongs to the window starting at sample `k`); unit norm each.
    - `modes` `(delays, r)`: the first `r` columns of `U`.
    - `singular_values` `(min(delays, windows),)`: all singular values of `H`.
    - `dt`: the sampling interval.
    """

    A: Float[Array, "linear linear"]
    B: Float[Array, " linear"]
    coordinates: Float[Array, "windows rank"]
    modes: Float[Array, "delays rank"]
    singular_values: Float[Array, " n"]
    dt: Float[Array, ""]

    @property
    def forcing(self) -> Float[Array, " windows"]:
        """The forcing `v_r`, the last coordinate."""
        return self.coordinates[..., -1]

    @property
    def linear_coordinates(self) -> Float[Array, "windows linear"]:
        """`v_1 … v_{r−1}`, the coordinates governed by the linear model."""
        return self.coordinates[..., :-1]

    def simulate(
        self,
        forcing: Float[ArrayLike, " time"] | None = None,
        v0: Float[ArrayLike, " linear"] | None = None,
    ) -> Float[Array, "time linear"]:
        """Integrate `dv/dt = A v + B u(t)` on the sampling grid, `u` linear between samples
        (exact discretisation with a first-order hold, as `scipy.signal.lsim` does):
        `v_{k+1} = e^{AΔt} v_k + Γ₀ u_k + Γ₁ u_{k+1}`, read from the exponential of the
        augmented matrix `[[AΔt, BΔt, 0], [0, 0, 1], [0, 0, 0]]`.

        `forcing` defaults to the fitted `v_r`, `v0` to the first row of the linear
        coordinates; returns `(time, r − 1)` starting at `v0`."""
        u = self.forcing if forcing is None else jnp.asarray(forcing)
        v0 = self.linear_coordinates[0] if v0 is None else jnp.asarray(v0)
        n = self.A.shape[0]
        if u.ndim != 1 or u.shape[0] < 1:
            raise ValueError(f"forcing must be a series (time,), got shape {u.shape}")
        if v0.shape != (n,):
            raise ValueError(f"v0 must have shape ({n},), got {v0.shape}")
        M = jnp.zeros((n + 2, n + 2), self.A.dtype)
        M = M.at[:n, :n].set(self.A * self.dt).at[:n, n].set(self.B * self.dt).at[n, n + 1].set(1)
        E = jax.scipy.linalg.expm(M)
        step, gamma1 = E[:n, :n], E[:n, n + 1]
        gamma0 = E[:n, n] - gamma1

        def advance(v, u_pair):
            v = step @ v + gamma0 * u_pair[0] + gamma1 * u_pair[1]
            return v, v

        _, vs = jax.lax.scan(advance, v0, jnp.stack([u[:-1], u[1:]], axis=1))
        return jnp.concatenate([v0[None], vs])

    def reconstruct(
        self,
        forcing: Float[ArrayLike, " windows"] | None = None,
        v0: Float[ArrayLike, " linear"] | None = None,
    ) -> Float[Array, " time"]:
        """The series from the simulated linear coordinates (`simulate(forcing, v0)`), mapped
        back through the first `r − 1` modes, `Ĥ = U Σ V̂ᵀ`, and read off `Ĥ` as PyDMD's
        `HAVOK.reconstructed_data` does: sample `k` is `Ĥ[min(k, d−1), k − min(k, d−1)]` (the
        first window, then the last delay row). Returns `(windows + delays − 1,)`."""
        vs = self.simulate(forcing, v0)
        r1 = vs.shape[1]
        scaled = self.modes[:, :r1] * self.singular_values[:r1]  # U Σ, (delays, r − 1)
        first_window = scaled @ vs[0]  # Ĥ[:, 0]
        last_row = vs @ scaled[-1]  # Ĥ[d − 1, :]
        return jnp.concatenate([first_window[:-1], last_row])


def _derivative(v: Float[Array, "time k"], dt, derivative: str) -> tuple[Array, int]:
    """`dv/dt` by the named stencil and the rows it drops at each end (`trim`): `central2` is
    second order with one-sided second-order ends (`finite_difference`, order 2: PyDMD's
    `utils.differentiate`, trim 0); `central4` is fourth order, `(−v_{k+2} + 8v_{k+1} −
    8v_{k−1} + v_{k−2}) / 12Δt`, on the interior only (`finite_difference`, order 4, without
    its one-sided ends: Brunton et al. 2017's code, trim 2)."""
    if derivative == "central2":
        return finite_difference(v, dt, order=2), 0
    return finite_difference(v, dt, order=4)[2:-2], 2


def havok(
    x: Float[ArrayLike, " time"],
    dt: float | Float[ArrayLike, ""],
    *,
    delays: int,
    rank: int,
    derivative: Literal["central2", "central4"] = "central4",
) -> HAVOK:
    """HAVOK (Brunton et al. 2017): delay-embed a scalar series, `H = hankel(x, delays)ᵀ =
    U Σ Vᵀ`, keep the first `rank` columns of `V` (`v_1 … v_r`), differentiate them in time and
    fit `dv_i/dt = Σ_j A_ij v_j + B_i v_r` for `i < r` by least squares. On chaotic data `A`
    comes out nearly skew-symmetric and tridiagonal, and `v_r` is an intermittent, heavy-tailed
    forcing that is active before the lobe switches.

    The regression is PyDMD's `HAVOK` (`lstsq` of `dv/dt` on all `r` coordinates; `A`, `B` are
    its first `r − 1` rows), so with `derivative="central2"` (its stencil) both give the same
    `A` and `B` up to the signs of the singular vectors.

    **Arguments:**

    - `x`: the scalar series `(time,)`, sampled every `dt`.
    - `dt`: the sampling interval (> 0).
    - `delays`: rows of the Hankel matrix; `rank <= delays` and at least `rank + 4` windows.
    - `rank`: `r`, the number of coordinates kept (`r − 1` linear ones and the forcing),
      `2 <= rank <= delays`. A Python int: the shapes depend on it.
    - `derivative`: `"central4"` (the paper's fourth-order central differences, two rows
      dropped at each end of the regression) or `"central2"` (PyDMD's second-order stencil).

    **Returns:** a `HAVOK`; `HAVOK.reconstruct()` integrates the forced linear model and gives
    the series back. Jittable and vmappable over series of one length.

    Precision: on the Lorenz system at rank 15 the last kept singular value is ~1e-13 of the
    first, so HAVOK needs float64 and data smooth to that level (samples on a fixed-step
    solver's grid, not an adaptive solver's interpolant: the `havok_lorenz` experiment).
    """
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must be a scalar series (time,), got shape {x.shape}")
    check_positive("dt", dt)
    check_count("delays", delays)
    check_count("rank", rank, low=2)
    check_choice("derivative", derivative, HAVOK_DERIVATIVES)
    if rank > delays:
        raise ValueError(f"rank={rank} exceeds delays={delays} (the Hankel matrix's rows)")
    windows = x.shape[0] - delays + 1
    if windows < rank + 4:
        raise ValueError(
            f"delays={delays} leaves {max(windows, 0)} windows of the series' {x.shape[0]} "
            f"samples; HAVOK with rank={rank} needs at least rank + 4 = {rank + 4} (delays <= "
            f"{x.shape[0] - rank - 3})"
        )
    H = hankel(x, delays).T  # (delays, windows)
    U, s, Vt = jnp.linalg.svd(H, full_matrices=False)
    v = Vt[:rank].T  # (windows, rank)
    dt = jnp.asarray(dt, dtype=v.dtype)
    dv, trim = _derivative(v, dt, derivative)
    regressors = v[trim : windows - trim]
    operator = jnp.linalg.lstsq(regressors, dv[:, :-1])[0].T  # (r − 1, r)
    return HAVOK(
        A=operator[:, :-1],
        B=operator[:, -1],
        coordinates=v,
        modes=U[:, :rank],
        singular_values=s,
        dt=dt,
    )
