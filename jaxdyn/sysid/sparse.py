"""Sparse linear regression `y ≈ Θ ξ` with few non-zero `ξ`: sequentially thresholded least
squares (STLSQ; Brunton, Proctor & Kutz 2016) and sparse relaxed regularised regression (SR3;
Zheng et al. 2018, Champion et al. 2020).

Both are `eqx.Module`s called as `optimizer(theta, y)` with `theta` `(samples, features)` and
`y` `(samples, targets)`, returning a `SparseFit` whose `coefficients` are `(targets,
features)` (pysindy's layout). Everything is jittable; thresholds are traced fields, so
`jax.vmap` sweeps them in one program. Gradients flow through the continuous part — the
final least-squares fit on the selected support — and the discrete support is held fixed
(its selection is not differentiable).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import OnFailure, check_choice, check_count, check_on_failure

__all__ = ["SR3", "STLSQ", "SparseFit", "masked_ridge"]


class SparseFit(eqx.Module):
    """A sparse regression's result: `coefficients` `(targets, features)` (zero off the
    support), `support` (their non-zero pattern), `iterations` and `converged`."""

    coefficients: Float[Array, "targets features"]
    support: Bool[Array, "targets features"]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]


def _design(
    theta: ArrayLike, y: ArrayLike, caller: str, normalize: bool
) -> tuple[Array, Array, Array]:
    """`(Θ / norms, y, norms)`: the checked design (columns scaled to unit norm when
    `normalize`), the targets as `(samples, targets)`, and the scaling to undo."""
    theta, y = jnp.asarray(theta), jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if theta.ndim != 2 or y.ndim != 2 or theta.shape[0] != y.shape[0]:
        raise ValueError(
            f"{caller} needs theta (samples, features) and y (samples,) or (samples, targets) "
            f"with one number of samples, got theta {theta.shape} and y {y.shape}"
        )
    for name, value in (("theta", theta), ("y", y)):
        if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
            bad = int(jnp.sum(~jnp.isfinite(value)))
            raise ValueError(f"{caller}: {name} has {bad} non-finite entries (NaN or inf)")
    dtype = jnp.result_type(theta.dtype, y.dtype, jnp.float32)
    theta, y = theta.astype(dtype), y.astype(dtype)
    norms = _column_norms(theta, normalize)
    return theta / norms, y, norms


def _iterate(body, init, max_iter: int):
    """`lax.while_loop` of `body` on `(state, iterations, done)` until done or `max_iter`."""

    def cond(carry):
        _, k, done = carry
        return ~done & (k < max_iter)

    return jax.lax.while_loop(cond, body, (init, jnp.asarray(0), jnp.asarray(False)))


def _finite(theta: Array, y: Array) -> Array:
    """Whether traced data are finite (concrete data were checked by `_design`)."""
    return jnp.all(jnp.isfinite(theta)) & jnp.all(jnp.isfinite(y))


def _column_norms(theta: Array, normalize: bool) -> Array:
    """The features' 2-norms when `normalize` (ones otherwise; a zero column keeps norm 1)."""
    if not normalize:
        return jnp.ones(theta.shape[1], theta.dtype)
    norms = jnp.linalg.norm(theta, axis=0)
    return jnp.where(norms > 0, norms, 1.0)


def masked_ridge(
    gram: Float[Array, "features features"],
    rhs: Float[Array, " features"],
    mask: Bool[Array, " features"],
    alpha: Float[ArrayLike, ""],
) -> Float[Array, " features"]:
    """The ridge solution on the features in `mask` (zero elsewhere): `ξ_S = (G_SS + α I)⁻¹
    b_S` for `G = ΘᵀΘ`, `b = Θᵀ y`. Solved with Jacobi scaling (`D G D`, `D = diag(G)^{-½}`),
    which leaves the solution unchanged and the system far better conditioned when features
    have very different scales (monomials of a state of size 20)."""
    m = mask.astype(gram.dtype)
    diagonal = jnp.diagonal(gram)
    scale = jnp.where(diagonal > 0, 1.0 / jnp.sqrt(jnp.where(diagonal > 0, diagonal, 1.0)), 1.0)
    matrix = gram * jnp.outer(m * scale, m * scale) + jnp.diag(alpha * m * scale**2 + (1 - m))
    return jnp.linalg.solve(matrix, rhs * m * scale) * scale * m


def _failure(fit: SparseFit, on_failure: OnFailure, message: str) -> SparseFit:
    if on_failure == "raise":
        coefficients = eqx.error_if(fit.coefficients, ~fit.converged, message)
        return eqx.tree_at(lambda f: f.coefficients, fit, coefficients)
    if on_failure == "nan":
        nan = jnp.where(fit.converged, fit.coefficients, jnp.nan)
        return eqx.tree_at(lambda f: f.coefficients, fit, nan)
    return fit


class STLSQ(eqx.Module):
    """Sequentially thresholded least squares (Brunton, Proctor & Kutz 2016), as pysindy's
    `STLSQ`: starting from every feature, repeat `ξ = argmin ‖y − Θ_S ξ‖² + α‖ξ‖²` on the
    support `S`, then drop the features with `|ξ_j| < threshold`, until `S` stops changing;
    with `unbias`, the reported coefficients are the plain least-squares fit (`α = 0`) on the
    final support. A row with an empty support (every coefficient under the threshold) is a
    zero equation, not a failure; check `support`.

    **Arguments:** `threshold` (traced: `vmap` over it), `alpha` (ridge weight), `max_iter`,
    `unbias`, `normalize_columns` (threshold and ridge act on the coefficients of unit-norm
    features, as pysindy's option), `on_failure` (`"raise"` when the support still changes
    after `max_iter` refits, `"nan"`, or `"return"` with `converged = False`).
    """

    threshold: Float[ArrayLike, ""] = 0.1
    alpha: Float[ArrayLike, ""] = 0.05
    max_iter: int = eqx.field(static=True, default=20)
    unbias: bool = eqx.field(static=True, default=True)
    normalize_columns: bool = eqx.field(static=True, default=False)
    on_failure: OnFailure = eqx.field(static=True, default="raise")

    def __check_init__(self):
        check_count("max_iter", self.max_iter)
        check_on_failure(self.on_failure)

    def __call__(
        self, theta: Float[ArrayLike, "samples features"], y: Float[ArrayLike, "samples ..."]
    ) -> SparseFit:
        theta, y, norms = _design(theta, y, "STLSQ", self.normalize_columns)
        gram, rhs = theta.T @ theta, theta.T @ y  # (p, p), (p, targets)
        const_gram, const_rhs = jax.lax.stop_gradient((gram, rhs))
        threshold = jax.lax.stop_gradient(jnp.asarray(self.threshold, gram.dtype))
        alpha = jnp.asarray(self.alpha, gram.dtype)
        solve = jax.vmap(masked_ridge, in_axes=(None, 1, 0, None))  # over targets

        def body(state):
            mask, k, _ = state
            coefficients = solve(const_gram, const_rhs, mask, jax.lax.stop_gradient(alpha))
            new = mask & (jnp.abs(coefficients) >= threshold)
            return new, k + 1, jnp.all(new == mask)

        full = jnp.ones((y.shape[1], theta.shape[1]), bool)
        support, iterations, converged = _iterate(body, full, self.max_iter)
        final_alpha = jnp.zeros_like(alpha) if self.unbias else alpha
        coefficients = solve(gram, rhs, support, final_alpha) / norms
        fit = SparseFit(coefficients, support, iterations, converged & _finite(theta, y))
        return _failure(
            fit,
            self.on_failure,
            f"STLSQ's support still changed after max_iter={self.max_iter} refits, or the "
            "data are not finite; raise max_iter (on_failure='return' keeps the last support)",
        )


def _fixed_point_tangent(gram, rhs, weight, nu, support, signs, regularizer) -> Array:
    """Zero in value, and in derivative SR3's fixed point on a fixed support `S`: with `P =
    (ΘᵀΘ + I/ν)⁻¹`, `w_S = (P(Θᵀy + w/ν))_S − c_S` (`c = λν sign w` for ℓ1, 0 for ℓ0), so
    `(I − P_SS/ν) w_S = (P Θᵀy)_S − c_S` (invertible: `P/ν` has eigenvalues below 1). Added
    to the iteration's result, it gives the implicit-function derivative of the fixed point
    without differentiating the loop."""
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    inverse = jnp.linalg.inv(gram + eye / nu)

    def one(b, mask, sign):
        m = mask.astype(gram.dtype)
        c = weight * sign if regularizer == "l1" else jnp.zeros_like(b)
        lhs = eye - jnp.outer(m, m) * inverse / nu
        return jnp.linalg.solve(lhs, m * (inverse @ b - c))

    exact = jax.vmap(one, in_axes=(1, 0, 0))(rhs, support, signs)
    return exact - jax.lax.stop_gradient(exact)


class SR3(eqx.Module):
    """Sparse relaxed regularised regression (Zheng et al. 2018; Champion et al. 2020), as
    pysindy's `SR3`: minimise `½‖y − Θξ‖² + λ R(w) + ‖ξ − w‖²/(2ν)` by alternating
    `ξ = (ΘᵀΘ + I/ν)⁻¹ (Θᵀy + w/ν)` and `w = prox_{λν R}(ξ)` (R = ℓ0: keep `|ξ_j| >
    √(2λν)`; ℓ1: soft threshold at `λν`), from the least-squares `ξ`, until `‖Δw‖/ν < tol`.
    The sparse `w` is reported (refitted by least squares on its support with `unbias`); its
    gradient is the fixed point's on the selected support (implicit function theorem).

    **Arguments:** `reg_weight` (λ, traced), `nu` (ν), `regularizer` (`"l0"` or `"l1"`),
    `tol`, `max_iter`, `unbias`, `normalize_columns` and `on_failure` (as `STLSQ`).
    """

    reg_weight: Float[ArrayLike, ""] = 0.005
    nu: Float[ArrayLike, ""] = 1.0
    regularizer: str = eqx.field(static=True, default="l0")
    tol: float = eqx.field(static=True, default=1e-5)
    max_iter: int = eqx.field(static=True, default=30)
    unbias: bool = eqx.field(static=True, default=False)
    normalize_columns: bool = eqx.field(static=True, default=False)
    on_failure: OnFailure = eqx.field(static=True, default="raise")

    def __check_init__(self):
        check_choice("regularizer", self.regularizer, ("l0", "l1"))
        check_count("max_iter", self.max_iter)
        check_on_failure(self.on_failure)

    def _prox(self, xi, weight):
        if self.regularizer == "l0":
            return xi * (jnp.abs(xi) > jnp.sqrt(2 * weight))
        return jnp.sign(xi) * jnp.maximum(jnp.abs(xi) - weight, 0.0)

    def __call__(
        self, theta: Float[ArrayLike, "samples features"], y: Float[ArrayLike, "samples ..."]
    ) -> SparseFit:
        theta, y, norms = _design(theta, y, "SR3", self.normalize_columns)
        nu = jnp.asarray(self.nu, theta.dtype)
        weight = self.reg_weight * nu
        gram, rhs = theta.T @ theta, theta.T @ y
        eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
        # The iteration runs on constants; its fixed point is differentiated below.
        c_gram, c_rhs, c_weight, c_nu = jax.lax.stop_gradient((gram, rhs, weight, nu))
        cholesky = jax.scipy.linalg.cho_factor(c_gram + eye / c_nu)
        w0 = jnp.linalg.lstsq(*jax.lax.stop_gradient((theta, y)))[0]  # pysindy's start

        def body(state):
            w, k, _ = state
            xi = jax.scipy.linalg.cho_solve(cholesky, c_rhs + w / c_nu)
            new = self._prox(xi, c_weight)
            return new, k + 1, jnp.sqrt(jnp.sum((new - w) ** 2)) / c_nu < self.tol

        w, iterations, converged = _iterate(body, w0, self.max_iter)
        support = (w != 0).T
        if self.unbias:
            solve = jax.vmap(masked_ridge, in_axes=(None, 1, 0, None))
            coefficients = solve(gram, rhs, support, jnp.zeros((), gram.dtype))
        else:
            coefficients = w.T + _fixed_point_tangent(
                gram, rhs, weight, nu, support, jnp.sign(w.T), self.regularizer
            )
        coefficients = coefficients / norms
        fit = SparseFit(coefficients, support, iterations, converged & _finite(theta, y))
        return _failure(
            fit,
            self.on_failure,
            f"SR3 did not reach tol={self.tol} in max_iter={self.max_iter} iterations, or the "
            "data are not finite; raise max_iter or tol",
        )
