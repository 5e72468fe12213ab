"""Dynamic mode decomposition: exact DMD, its delay-embedded (Hankel) form, and the rank
truncations that go with it (a fixed rank, an energy fraction, Gavish & Donoho's optimal hard
threshold).

Arrays are time first, as everywhere in jaxdyn (`docs/api.md`): a series is `(time, dim)` and a
Hankel matrix is returned as `(windows, delays * channels)`, the transpose of the papers'
`delays × windows` matrix. The rank is a static Python value, so every shape is static and
`dmd`, `hankel_dmd` are jittable and vmappable over trajectories with an integer rank; a rank
chosen from the data (`"optimal"`, an energy fraction) needs concrete data (outside `jit`).
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from .._checks import check_count

__all__ = [
    "DMD",
    "Rank",
    "dmd",
    "hankel",
    "hankel_dmd",
    "optimal_hard_threshold",
    "truncation_rank",
]

Rank = int | float | Literal["optimal"]
"""A truncation rank: an `int` (that many singular values), a `float` in `(0, 1]` (the fewest
singular values whose squares hold that fraction of the total), or `"optimal"` (the singular
values above `optimal_hard_threshold`)."""


def hankel(x: Float[ArrayLike, "time ..."], delays: int) -> Float[Array, "windows delays_channels"]:
    """The delay embedding of a series: row `k` is `(x_k, x_{k+1}, …, x_{k+delays-1})`,
    flattened delay by delay (`delays * channels` entries; `delays` for a 1-D series).

    **Arguments:**

    - `x`: a series `(time,)` or `(time, channels)`.
    - `delays`: the number of consecutive samples per row, `1 <= delays <= time`.

    **Returns:** `(time - delays + 1, delays * channels)`, the transpose of the Hankel matrix
    `H[i, k] = x_{i+k}` of the papers (Brunton et al. 2017; PyDMD's `HAVOK.hankel` has the
    same row order, delay-major).
    """
    x = jnp.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be a series (time,) or (time, channels), got shape {x.shape}")
    check_count("delays", delays)
    if delays > x.shape[0]:
        raise ValueError(f"delays={delays} exceeds the series' length {x.shape[0]} (x's time axis)")
    windows = x.shape[0] - delays + 1
    rows = jax.vmap(lambda i: jax.lax.dynamic_slice_in_dim(x, i, windows))(jnp.arange(delays))
    rows = jnp.moveaxis(rows, 0, 1)  # (windows, delays, *channels)
    return rows.reshape(windows, -1)


def optimal_hard_threshold(
    singular_values: Float[ArrayLike, " n"], shape: tuple[int, int]
) -> Float[Array, ""]:
    """Gavish & Donoho's (2014) optimal hard threshold for singular values under white noise of
    unknown level: `τ = ω(β) · median(σ)` with `β = min(shape) / max(shape)` and
    `ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43` (their eq. (5) fit; `ω(1) ≈ 2.858`).

    **Arguments:**

    - `singular_values`: all `min(shape)` singular values of the matrix.
    - `shape`: the matrix's shape `(rows, columns)` (either orientation).

    **Returns:** `τ`; the singular values above it are kept. Jittable.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be a matrix shape (rows, columns), got {shape!r}")
    s = jnp.asarray(singular_values)
    if s.ndim != 1 or s.shape[0] != min(shape):
        raise ValueError(
            f"singular_values must hold all min(shape)={min(shape)} singular values, got shape "
            f"{s.shape}"
        )
    beta = min(shape) / max(shape)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    return omega * jnp.median(s)


def truncation_rank(
    singular_values: Float[ArrayLike, " n"], shape: tuple[int, int], rank: Rank
) -> int:
    """The number of singular values that `rank` keeps (see `Rank`), as a Python int.

    A rank chosen from the data needs concrete singular values; under `jit`/`vmap` compute it
    first (for a batch, from one representative trajectory) and pass the `int`. The optimal
    threshold keeps at least one value (as PyDMD does).
    """
    n = min(shape)
    if isinstance(rank, bool):
        raise ValueError(f"rank must be an int, a float in (0, 1] or 'optimal', got {rank!r}")
    if isinstance(rank, int | np.integer):
        if not 1 <= rank <= n:
            raise ValueError(f"rank={rank} must be in [1, {n}] (min of the data matrix {shape})")
        return int(rank)
    if not (rank == "optimal" or (isinstance(rank, float) and 0.0 < rank <= 1.0)):
        raise ValueError(f"rank must be an int, a float in (0, 1] or 'optimal', got {rank!r}")
    if isinstance(singular_values, jax.core.Tracer):
        raise ValueError(
            f"rank={rank!r} is chosen from the data, which jit/vmap cannot see: compute "
            "truncation_rank(...) outside jit and pass the int"
        )
    s = np.asarray(singular_values)
    if rank == "optimal":
        return max(1, int(np.sum(s > np.asarray(optimal_hard_threshold(s, shape)))))
    energy = np.cumsum(s**2) / np.sum(s**2)
    return int(min(np.searchsorted(energy, rank) + 1, n))


class DMD(eqx.Module):
    """The result of exact DMD: `x_k ≈ Σ_j Φ_j λ_j^k b_j`, i.e. `x(t) = Φ exp(ω t) b` with
    `ω = log(λ)/dt` (Schmid 2010; Tu et al. 2014).

    - `eigenvalues` `λ` `(rank,)`: the discrete-time eigenvalues (one step of `dt`).
    - `modes` `Φ` `(dim, rank)`: the exact DMD modes `Y V Σ⁻¹ W` (Tu et al. 2014).
    - `amplitudes` `b` `(rank,)`: the least-squares fit `Φ b ≈ x_0` of the first snapshot.
    - `singular_values` `(rank,)`: the kept singular values of the snapshot matrix `X`.
    - `dt`: the time between snapshots (1 when not given: times count steps).
    """

    eigenvalues: Complex[Array, " rank"]
    modes: Complex[Array, "dim rank"]
    amplitudes: Complex[Array, " rank"]
    singular_values: Float[Array, " rank"]
    dt: Float[Array, ""]
    real: bool = eqx.field(static=True)

    @property
    def continuous_eigenvalues(self) -> Complex[Array, " rank"]:
        """`ω = log(λ) / dt`: growth rates (real part) and angular frequencies (imaginary)."""
        return jnp.log(self.eigenvalues) / self.dt

    def reconstruct(
        self, ts: Float[ArrayLike, " time"], x0: Float[ArrayLike, " dim"] | None = None
    ) -> Float[Array, "time dim"]:
        """`x(t) = Φ diag(λ^{t/dt}) b` at times `ts` (from the first snapshot, `t = 0`;
        times past the data predict). With `x0`, the amplitudes are refitted to it
        (`Φ b ≈ x0`, least squares), which predicts from a new initial condition. Real data
        give the real part."""
        ts = jnp.asarray(ts)
        if ts.ndim != 1:
            raise ValueError(f"ts must be a 1-D array of times, got shape {ts.shape}")
        if x0 is None:
            b = self.amplitudes
        else:
            x0 = jnp.asarray(x0)
            if x0.shape != self.modes.shape[:1]:
                raise ValueError(f"x0 must have shape {self.modes.shape[:1]}, got {x0.shape}")
            b = jnp.linalg.lstsq(self.modes, x0.astype(self.modes.dtype))[0]
        steps = (ts / self.dt)[:, None]
        # λ^s = exp(s log λ), with λ^0 = 1 also for λ = 0 (log 0 = -inf).
        powers = jnp.where(steps == 0, 1.0, jnp.exp(steps * jnp.log(self.eigenvalues)))
        xs = (powers * b) @ self.modes.T
        return xs.real if self.real else xs


def dmd(
    X: Float[ArrayLike, "time dim"],
    Y: Float[ArrayLike, "time dim"] | None = None,
    *,
    rank: Rank,
    dt: float | Float[ArrayLike, ""] = 1.0,
) -> DMD:
    """Exact dynamic mode decomposition (Schmid 2010; Tu et al. 2014): the best-fit linear map
    `Y ≈ A X` of snapshot pairs, through its rank-`r` projection.

    With the snapshots as columns, `X = U Σ Vᴴ` truncated to rank `r`,
    `Ã = Uᴴ Y V Σ⁻¹` (`r × r`), `Ã W = W Λ`, exact modes `Φ = Y V Σ⁻¹ W`, and amplitudes
    `b` from `Φ b ≈ x_0` (least squares; as PyDMD's `DMD`).

    **Arguments:**

    - `X`: snapshots `(time, dim)`, time first. With `Y=None`, the pairs are consecutive
      snapshots (`X[:-1]`, `X[1:]`).
    - `Y`: the snapshots one step `dt` after those of `X`, same shape as `X`.
    - `rank`: the truncation (`Rank`): an int, an energy fraction in `(0, 1]`, or `"optimal"`
      (`optimal_hard_threshold` of `X`'s singular values; concrete data only).
    - `dt`: the time between a snapshot and its successor (for `continuous_eigenvalues` and
      `DMD.reconstruct`'s times).

    **Returns:** a `DMD`. Jittable and vmappable with an integer `rank`, and differentiable
    where the kept singular values and the eigenvalues are distinct (the SVD's and the
    eigendecomposition's derivatives need it).
    """
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be snapshots (time, dim), got shape {X.shape}")
    if Y is None:
        if X.shape[0] < 2:
            raise ValueError(f"X needs at least 2 snapshots (time axis), got shape {X.shape}")
        X, Y = X[:-1], X[1:]
    else:
        Y = jnp.asarray(Y)
        if Y.shape != X.shape:
            raise ValueError(f"Y must have X's shape {X.shape}, got {Y.shape}")
    U, s, Vh = jnp.linalg.svd(X.T, full_matrices=False)
    r = truncation_rank(s, X.T.shape, rank)
    U, s, V = U[:, :r], s[:r], Vh[:r].conj().T
    YVs = (Y.T @ V) / s  # Y V Σ⁻¹
    # Eigenvector derivatives are valid for distinct eigenvalues (JAX asks to opt in); the
    # modes' scale is arbitrary, but `b` absorbs it, so reconstructions are differentiable.
    eigenvalues, W = jax.lax.linalg.eig(
        U.conj().T @ YVs, compute_left_eigenvectors=False, enable_eigvec_derivs=True
    )
    modes = YVs @ W
    amplitudes = jnp.linalg.lstsq(modes, X[0].astype(modes.dtype))[0]
    return DMD(
        eigenvalues=eigenvalues,
        modes=modes,
        amplitudes=amplitudes,
        singular_values=s,
        dt=jnp.asarray(dt, dtype=s.dtype),
        real=not jnp.iscomplexobj(X),
    )


def hankel_dmd(
    x: Float[ArrayLike, "time ..."],
    delays: int,
    *,
    rank: Rank,
    dt: float | Float[ArrayLike, ""] = 1.0,
) -> DMD:
    """Hankel (delay) DMD: exact DMD (`dmd`) of the delay vectors `hankel(x, delays)`, which
    finds `rank` oscillations even in a scalar series (Arbabi & Mezić 2017; Brunton et al.
    2017). With the optimal hard threshold (`rank="optimal"`) the rank comes from the data.

    **Arguments:**

    - `x`: a series `(time,)` or `(time, channels)`.
    - `delays`: samples per delay vector; `delays <= time - 2` (three windows at least, i.e.
      two snapshot pairs).
    - `rank`, `dt`: as in `dmd`.

    **Returns:** a `DMD` of the delay vectors: `reconstruct(ts)` gives `(time, delays *
    channels)` rows whose first `channels` entries are the series itself.
    """
    x = jnp.asarray(x)
    if x.ndim in (1, 2) and isinstance(delays, int) and delays > x.shape[0] - 2:
        raise ValueError(
            f"delays={delays} leaves fewer than 3 windows of the series' {x.shape[0]} samples "
            f"(x's time axis): hankel_dmd needs delays <= {x.shape[0] - 2}"
        )
    return dmd(hankel(x, delays), rank=rank, dt=dt)
