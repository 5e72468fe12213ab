"""PDE-FIND: sparse regression of a PDE `u_t = Σ ξ_j Θ_j(u, u_x, u_xx, …)` on a space–time
grid (Rudy, Brunton, Proctor & Kutz 2017), pointwise and in weak form (Messenger & Bortz 2021,
"Weak SINDy for partial differential equations").

Pointwise, the features are `u^m ∂_x^d u` (`m ≤ degree`, `d ≤ derivatives`) and the target
`u_t`, all from finite differences. In weak form the features are `∂_x^d (u^m)` and both sides
are integrated against separable test functions `ψ(x) φ(t)`, moving every derivative onto them:
`∫∫ ψφ ∂_x^d(u^m) = (−1)^d ∫∫ ψ^{(d)} φ u^m` and `∫∫ ψφ u_t = −∫∫ ψ φ' u`. (Burgers'
`−u u_x` is `−½ (u²)_x` there.)
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count, check_increasing, check_positive
from .derivatives import finite_difference
from .sindy import STLSQ_DEFAULT, Optimizer, format_equations
from .weak import bump_functions, trapezoid_weights

__all__ = ["PDEModel", "fit_pde_find", "pde_features", "weak_pde_form"]


class PDEModel(eqx.Module):
    """A sparse PDE `u_t = Σ_j ξ_j Θ_j`: `coefficients` `(features,)` and `feature_names`."""

    coefficients: Float[Array, " features"]
    feature_names: tuple[str, ...] = eqx.field(static=True)

    def equation(self, precision: int = 4) -> str:
        """The PDE as text: `"u_t = -1.0000 u u_x + 0.1000 u_xx"`."""
        return format_equations(self.coefficients[None], self.feature_names, ["u_t"],
                                precision=precision)[0]  # fmt: skip

    def coefficient(self, name: str) -> Array:
        """The coefficient of the feature called `name`."""
        if name not in self.feature_names:
            raise ValueError(f"no feature {name!r}; the features are {list(self.feature_names)}")
        return self.coefficients[self.feature_names.index(name)]


def _power_name(m: int) -> str:
    return "" if m == 0 else ("u" if m == 1 else f"u^{m}")


def _check_grid(u: Array, caller: str) -> None:
    if u.ndim != 2:
        raise ValueError(f"{caller} needs u on a grid (time, space), got shape {u.shape}")


def _spacing(name: str, grid: np.ndarray) -> float:
    """The step of a uniform, increasing grid; `ValueError` naming `name` otherwise."""
    check_increasing(name, grid)
    steps = np.diff(grid)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
        raise ValueError(
            f"{name} must be uniformly spaced for finite differences; steps range from "
            f"{steps.min()} to {steps.max()} (the weak form takes any grid)"
        )
    return float(steps[0])


def pde_features(
    u: Float[ArrayLike, "time space"],
    dx: float,
    *,
    degree: int = 2,
    derivatives: int = 2,
    order: int = 2,
) -> tuple[Float[Array, "time space features"], tuple[str, ...]]:
    """The pointwise PDE-FIND library, `0 ≤ m ≤ degree`, `1 ≤ d ≤ derivatives`, in pysindy's
    `PDELibrary` order: `u^m`, then `∂_x^d u`, then `u^m ∂_x^d u` (spatial derivatives by
    finite differences of accuracy `order`); and the features' names (`"u u_x"`, …)."""
    u = jnp.asarray(u)
    _check_grid(u, "pde_features")
    check_positive("dx", dx)
    check_count("degree", degree, 0)
    check_count("derivatives", derivatives, 0)
    # pysindy's order: 1, u^m, ∂^d u, then u^m ∂^d u by derivative, then power
    derivs = [finite_difference(u, dx, order=order, derivative=d, axis=1)
              for d in range(1, derivatives + 1)]  # fmt: skip
    columns = [u**m for m in range(degree + 1)] + derivs
    names = [_power_name(m) or "1" for m in range(degree + 1)]
    names += ["u_" + "x" * d for d in range(1, derivatives + 1)]
    for d, du in enumerate(derivs, start=1):
        for m in range(1, degree + 1):
            columns.append(u**m * du)
            names.append(f"{_power_name(m)} u_{'x' * d}")
    return jnp.stack(columns, -1), tuple(names)


def weak_pde_form(
    u: Float[ArrayLike, "time space"],
    ts: Float[ArrayLike, " time"],
    xs: Float[ArrayLike, " space"],
    *,
    degree: int = 2,
    derivatives: int = 2,
    num_domains: tuple[int, int] = (10, 10),
    half_widths: tuple[float, float] | None = None,
    power: int = 6,
) -> tuple[Float[Array, "domains features"], Float[Array, " domains"], tuple[str, ...]]:
    """`(G, b, names)` of the weak PDE-FIND regression `b ≈ G ξ`: features `∂_x^d (u^m)`
    (`m = 1 … degree`, `d ≤ derivatives`, and the constant), `num_domains = (n_t, n_x)`
    separable bumps `φ(t) ψ(x)` of half-widths `half_widths = (H_t, H_x)` (default a tenth of
    each span) centred evenly inside the grid; integrals by the trapezoidal rule."""
    u = jnp.asarray(u)
    _check_grid(u, "weak_pde_form")
    ts_np, xs_np = np.asarray(ts), np.asarray(xs)
    if ts_np.shape != u.shape[:1] or xs_np.shape != u.shape[1:]:
        raise ValueError(f"weak_pde_form needs ts ({u.shape[0]},) and xs ({u.shape[1]},) for u "
                         f"{u.shape}, got {ts_np.shape} and {xs_np.shape}")  # fmt: skip
    check_increasing("ts", ts_np)
    check_increasing("xs", xs_np)
    spans = (float(ts_np[-1] - ts_np[0]), float(xs_np[-1] - xs_np[0]))
    widths = tuple(s / 10 for s in spans) if half_widths is None else half_widths
    rows = []
    for grid, n, h, span in zip((ts_np, xs_np), num_domains, widths, spans, strict=True):
        check_count("num_domains", n)
        check_positive("half_widths", h)
        if 2 * h >= span:
            raise ValueError(f"half width {h} leaves no room for a test function in span {span}")
        centres = np.linspace(grid[0] + h, grid[-1] - h, n)
        grid = jnp.asarray(grid, u.dtype)
        # ∂^j of the bumps times the quadrature weights: (j, n, points)
        rows.append(bump_functions(grid, centres, h, power, derivatives) * trapezoid_weights(grid))
    phi_t, psi_x = rows

    def integrate(f, j_t, j_x):  # ∫∫ ∂_t^{j_t}φ ∂_x^{j_x}ψ f, one row per (t-domain, x-domain)
        return (phi_t[j_t] @ f @ psi_x[j_x].T).reshape(-1)

    columns, names = [integrate(jnp.ones_like(u), 0, 0)], ["1"]
    for d in range(derivatives + 1):
        for m in range(1, degree + 1):
            columns.append((-1) ** d * integrate(u**m, 0, d))
            base = _power_name(m)
            names.append(base if d == 0 else f"({base})_{'x' * d}")
    return jnp.stack(columns, -1), -integrate(u, 1, 0), tuple(names)


def fit_pde_find(
    u: Float[ArrayLike, "time space"],
    ts: Float[ArrayLike, " time"],
    xs: Float[ArrayLike, " space"],
    *,
    optimizer: Optimizer = STLSQ_DEFAULT,
    weak: bool = False,
    degree: int = 2,
    derivatives: int = 2,
    order: int = 2,
    **weak_options,
) -> PDEModel:
    """PDE-FIND on `u` sampled on the grid `ts × xs` (uniform for the pointwise regression;
    any increasing grid for the weak form): `optimizer` on the pointwise regression (`u_t` and
    spatial derivatives by finite differences of accuracy `order`), or, with `weak=True`, on
    `weak_pde_form` (options passed through). `ts` and `xs` are concrete (close over them
    under `jit`)."""
    u = jnp.asarray(u)
    if weak:
        gram, rhs, names = weak_pde_form(u, ts, xs, degree=degree, derivatives=derivatives,
                                         **weak_options)  # fmt: skip
    else:
        dt, dx = _spacing("ts", np.asarray(ts)), _spacing("xs", np.asarray(xs))
        features, names = pde_features(u, dx, degree=degree, derivatives=derivatives,
                                       order=order)  # fmt: skip
        u_t = finite_difference(u, dt, order=order, axis=0)
        gram, rhs = features.reshape(-1, features.shape[-1]), u_t.reshape(-1)
    fit = optimizer(gram, rhs)
    return PDEModel(fit.coefficients[0], names)
