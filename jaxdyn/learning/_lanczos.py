"""Lanczos with full reorthogonalisation: the extreme eigenpairs of a symmetric operator, and
its spectral density by stochastic Lanczos quadrature.

`m` steps of Lanczos (1950) from a unit vector `q₀` build an orthonormal basis `Q` of the
Krylov space `span{q₀, H q₀, …, H^{m−1} q₀}` and the tridiagonal `T = Qᵀ H Q`. Every new vector
is orthogonalised against the whole basis (classical Gram–Schmidt, twice), so `Q` stays
orthonormal to rounding and no spurious copies of converged eigenvalues appear; when the Krylov
space is invariant (a zero off-diagonal), the next vector is a random one orthogonal to the
basis, so repeated eigenvalues are found too and `m = n` steps give every eigenvalue.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from .._checks import check_choice, check_count, check_key, check_positive
from ._curvature import Eigenpairs, Operator, linear_map, rademacher_probe

__all__ = ["WHICH", "SpectralDensity", "spectral_density", "top_eigenpairs"]

WHICH = ("largest", "smallest", "magnitude")
"""Which end of the spectrum `top_eigenpairs` returns: the largest values (sharpness), the
smallest (the most negative curvature), or the largest magnitudes."""


def _lanczos(
    matvec, q0: Float[Array, " n"], num_steps: int, key: PRNGKeyArray
) -> tuple[Float[Array, " m"], Float[Array, " m"], Float[Array, "m n"]]:
    """`(alphas, betas, basis)` of `num_steps` Lanczos steps from `q0` (any norm): `T` has
    diagonal `alphas` and off-diagonal `betas[:-1]`; `betas[-1]` is the residual coupling
    to the next basis vector. `key` draws the restart vectors after an invariant subspace."""
    n = q0.shape[0]
    dtype = q0.dtype
    threshold = jnp.finfo(dtype).eps ** 0.75  # relative size of an off-diagonal taken as zero
    basis = jnp.zeros((num_steps + 1, n), dtype).at[0].set(q0 / jnp.linalg.norm(q0))

    def orthogonalise(w, basis):  # rows not yet filled are zero and drop out
        for _ in range(2):  # "twice is enough" (Giraud et al. 2005)
            w = w - basis.T @ (basis @ w)
        return w

    def step(j, carry):
        basis, alphas, betas, scale = carry
        q = basis[j]
        w = matvec(q)
        alpha = q @ w
        w = orthogonalise(w, basis)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
        restart = beta <= threshold * scale
        r = orthogonalise(jax.random.normal(jax.random.fold_in(key, j), (n,), dtype), basis)
        r_norm = jnp.linalg.norm(r)
        following = jnp.where(
            restart, r / jnp.where(r_norm > 0, r_norm, 1), w / jnp.where(restart, 1, beta)
        )
        basis = basis.at[j + 1].set(following)
        alphas = alphas.at[j].set(alpha)
        betas = betas.at[j].set(jnp.where(restart, 0, beta))
        return basis, alphas, betas, scale

    zeros = jnp.zeros(num_steps, dtype)
    start = (basis, zeros, zeros, jnp.zeros((), dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, num_steps, step, start)
    return alphas, betas, basis[:num_steps]


def _ritz(alphas, betas):
    """Eigenvalues and eigenvectors of the tridiagonal `T`."""
    tridiagonal = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return jnp.linalg.eigh(tridiagonal)


def _check_steps(num_steps: int | None, size: int, low: int, default: int) -> int:
    if num_steps is None:
        return min(size, default)
    check_count("num_steps", num_steps, low=low)
    if num_steps > size:
        raise ValueError(
            f"num_steps={num_steps} exceeds the operator's size {size} (an invariant Krylov "
            "space has at most that many dimensions)"
        )
    return num_steps


def top_eigenpairs(
    operator: Operator,
    k: int,
    *,
    key: PRNGKeyArray,
    num_steps: int | None = None,
    which: Literal["largest", "smallest", "magnitude"] = "largest",
) -> Eigenpairs:
    """The `k` extreme eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation (Ritz pairs of `T = Qᵀ H Q`; Golub & Van Loan, *Matrix Computations*,
    §10.1–10.3).

    The Ritz values converge to the extreme eigenvalues first, faster the larger their gap to
    the rest; the residual of a Ritz pair `(θ, Q y)` is `‖H Q y − θ Q y‖ = β_m |y_m|`, returned
    as `residuals` (a Ritz value is within it of an eigenvalue). With `num_steps = n` the
    values are all of `H`'s, to rounding.

    **Arguments:**

    - `operator`: a `HessianOperator` or a dense symmetric matrix `(n, n)`.
    - `k`: how many pairs, `1 ≤ k ≤ n`.
    - `key`: the random start (and restart) vectors.
    - `num_steps`: Lanczos steps `m` (products `H v`), `k ≤ m ≤ n`; `None`:
      `min(n, max(2k + 1, 20))` (ARPACK's default basis size).
    - `which`: one of `WHICH`: `"largest"` (sharpness, `λ_max`), `"smallest"`, `"magnitude"`.

    **Returns:** `Eigenpairs(values, vectors, residuals)`, `values` in descending order of
    `which`'s key (`"smallest"`: ascending), `vectors` `(k, n)`.
    """
    matvec, size, dtype = linear_map(operator, "top_eigenpairs")
    check_count("k", k)
    if k > size:
        raise ValueError(f"k={k} exceeds the operator's size {size}")
    num_steps = _check_steps(num_steps, size, k, max(2 * k + 1, 20))
    check_key(key, "top_eigenpairs")
    check_choice("which", which, WHICH)
    start, restarts = jax.random.split(key)
    q0 = jax.random.normal(start, (size,), dtype)
    alphas, betas, basis = _lanczos(matvec, q0, num_steps, restarts)
    values, vectors = _ritz(alphas, betas)  # ascending
    order = {
        "largest": jnp.argsort(-values),
        "smallest": jnp.argsort(values),
        "magnitude": jnp.argsort(-jnp.abs(values)),
    }[which][:k]
    residuals = jnp.abs(betas[-1] * vectors[-1, order])
    return Eigenpairs(values[order], vectors[:, order].T @ basis, residuals)


class SpectralDensity(eqx.Module):
    """A spectral density estimate `φ(t) = (1/n_v) Σ_v Σ_i w_{v,i} N(t; θ_{v,i}, σ²)` and
    the Gauss quadrature behind it.

    - `grid`, `density`: `φ` at the grid points (it integrates to 1 over the real line);
    - `nodes`, `weights`: `(num_probes, num_steps)` Ritz values `θ` and their weights `w`
      (squared first components of `T`'s eigenvectors, summing to 1 per probe): for a
      function `f`, `Σ_i w_{v,i} f(θ_{v,i}) ≈ q_vᵀ f(H) q_v`, exact for polynomials of degree
      below `2 num_steps`; averaged over probes, `≈ tr f(H) / n`;
    - `sigma`: the Gaussian's standard deviation.
    """

    grid: Float[Array, " points"]
    density: Float[Array, " points"]
    nodes: Float[Array, "probes steps"]
    weights: Float[Array, "probes steps"]
    sigma: Scalar


def spectral_density(
    operator: Operator,
    *,
    key: PRNGKeyArray,
    num_probes: int = 1,
    num_steps: int | None = None,
    grid: int | Float[ArrayLike, " points"] = 1000,
    sigma: float | None = None,
    batch_size: int | None = None,
) -> SpectralDensity:
    """The eigenvalue density of a symmetric operator of size `n`, `(1/n) Σ_j δ(t − λ_j)`,
    by stochastic Lanczos quadrature, smoothed by a Gaussian (Ghorbani, Krishnan & Xiao 2019;
    Lin, Saad & Yang 2016; PyHessian, Yao et al. 2020).

    For a unit probe `q = z/‖z‖`, `qᵀ f(H) q = Σ_j (qᵀu_j)² f(λ_j)` is a spectral measure
    whose Gauss quadrature is `Σ_i w_i f(θ_i)`, with `θ_i` the eigenvalues of the Lanczos
    tridiagonal `T` from `q` and `w_i` the squared first components of its eigenvectors; its
    expectation over probes is `tr f(H) / n`. Replacing `f` by a Gaussian kernel gives the
    smoothed density `φ`. Probe `i`'s `z` is the Rademacher vector of `hutchinson_trace`'s
    probe `i` (same `key`), so `n Σ_i w θ` and `n Σ_i w θ²` averaged over probes are exactly its
    estimates of `tr(H)` and `tr(H²)`.

    **Arguments:**

    - `operator`: a `HessianOperator` or a dense symmetric matrix.
    - `key`: the probes. `num_probes`: how many (one is often enough when `n` is large).
    - `num_steps`: Lanczos steps per probe (`2 ≤ m ≤ n`); `None`: `min(n, 80)`.
    - `grid`: the points where `φ` is evaluated, or their number, spread evenly over the
      nodes' range widened by `6σ` on each side.
    - `sigma`: the Gaussian's width; `None`: `√(1e-5) · (θ_max − θ_min) / 2` (Ghorbani et
      al.'s `σ² = 1e-5` on a spectrum rescaled to `[−1, 1]`).
    - `batch_size`: probes run together (`jax.lax.map`); `None`: all at once (`vmap`).

    **Returns:** a `SpectralDensity`.
    """
    matvec, size, dtype = linear_map(operator, "spectral_density")
    check_key(key, "spectral_density")
    check_count("num_probes", num_probes)
    num_steps = _check_steps(num_steps, size, 2, 80)
    if batch_size is not None:
        check_count("batch_size", batch_size)
    if sigma is not None:
        check_positive("sigma", sigma)
    if isinstance(grid, bool) or not isinstance(grid, int):
        grid = jnp.asarray(grid, dtype)
        if grid.ndim != 1 or grid.shape[0] < 2:
            raise ValueError(f"grid must be a number of points or a 1-D array, got {grid.shape}")
    else:
        check_count("grid", grid, low=2)

    def quadrature(k):
        z = rademacher_probe(k, size, dtype)
        alphas, betas, _ = _lanczos(matvec, z, num_steps, jax.random.fold_in(k, 1))
        nodes, vectors = _ritz(alphas, betas)
        return nodes, vectors[0] ** 2

    keys = jax.random.split(key, num_probes)
    nodes, weights = jax.lax.map(quadrature, keys, batch_size=batch_size or num_probes)
    low, high = jnp.min(nodes), jnp.max(nodes)
    floor = jnp.finfo(dtype).eps ** 0.5 * jnp.maximum(jnp.maximum(-low, high), 1)
    width = jnp.maximum(high - low, floor)
    sigma = jnp.asarray(1e-5**0.5 * width / 2 if sigma is None else sigma, dtype)
    if isinstance(grid, int):
        grid = jnp.linspace(low - 6 * sigma, high + 6 * sigma, grid, dtype=dtype)
    kernel = jnp.exp(-0.5 * ((grid[:, None] - nodes.ravel()[None]) / sigma) ** 2)
    kernel = kernel / (sigma * jnp.sqrt(2 * jnp.pi))
    density = kernel @ weights.ravel() / num_probes
    return SpectralDensity(grid, density, nodes, weights, sigma)
