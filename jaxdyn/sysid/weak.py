"""The weak form of SINDy (Messenger & Bortz 2021, "Weak SINDy"): no pointwise derivatives.

Multiplying `dx/dt = Ξ Θ(x)` by a test function `φ_k` supported inside `[t₀, t₁]` and
integrating by parts gives, for every `k`,

    −∫ φ_k'(t) x(t) dt = Ξ ∫ φ_k(t) Θ(x(t)) dt,

a linear regression `b = G Ξᵀ` whose entries are integrals of the data (computed by the
trapezoidal rule), which average noise out instead of amplifying it as a derivative does.
The test functions are `φ(t) = ((t − a)(b − t) / H²)^p` on subdomains `[a, b] = [c − H, c + H]`
(pysindy's `WeakPDELibrary`; Messenger & Bortz 2021).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count, check_increasing, check_positive
from .libraries import Library
from .libraries import input_names as default_names
from .sindy import POLYNOMIAL_2, STLSQ_DEFAULT, Optimizer, SINDy

__all__ = ["fit_weak_sindy", "bump_functions", "trapezoid_weights", "weak_form"]


def trapezoid_weights(ts: Float[ArrayLike, " time"]) -> Float[Array, " time"]:
    """Weights `w` with `Σ w_i f(t_i) ≈ ∫ f dt` (the trapezoidal rule on any grid)."""
    ts = jnp.asarray(ts)
    gaps = jnp.diff(ts)
    return 0.5 * (jnp.pad(gaps, (1, 0)) + jnp.pad(gaps, (0, 1)))


def bump_functions(
    ts: Float[ArrayLike, " time"],
    centres: Float[ArrayLike, " k"],
    half_width: float,
    power: int,
    derivatives: int = 1,
) -> Float[Array, "derivatives+1 k time"]:
    """`∂^j φ_k(t)`, `j = 0 … derivatives`, on `ts` for the bumps `φ_k = ((t − c_k + H)(c_k +
    H − t) / H²)^p` inside `|t − c_k| < H` and zero outside (`power > derivatives` keeps every
    derivative continuous at the ends of the support)."""
    if power <= derivatives:
        raise ValueError(f"power={power} must exceed derivatives={derivatives}")

    def bump(t, c):
        return (((t - c + half_width) * (c + half_width - t)) / half_width**2) ** power

    t = jnp.asarray(ts)
    c = jnp.asarray(centres, t.dtype)
    inside = jnp.abs(t[None, :] - c[:, None]) < half_width
    out, f = [], bump
    for _ in range(derivatives + 1):
        values = jax.vmap(jax.vmap(f, in_axes=(0, None)), in_axes=(None, 0))(t, c)
        out.append(jnp.where(inside, values, 0.0))
        f = jax.grad(f)
    return jnp.stack(out)


def weak_form(
    x: Float[ArrayLike, "time dim"],
    ts: Float[ArrayLike, " time"],
    library: Library,
    *,
    num_domains: int = 100,
    half_width: float | None = None,
    power: int = 4,
) -> tuple[Float[Array, "domains features"], Float[Array, "domains dim"]]:
    """`(G, b)` with `G_kj = ∫ φ_k Θ_j(x) dt` and `b_k = −∫ φ_k' x dt` for `num_domains` test
    functions evenly spaced over the data (`half_width` default: a twentieth of the time span,
    pysindy's default); regress `b ≈ G Ξᵀ`."""
    x, ts_np = jnp.asarray(x), np.asarray(ts)
    if x.ndim != 2 or ts_np.shape != x.shape[:1]:
        raise ValueError(f"weak_form needs x (time, dim) and ts (time,), got {x.shape} and "
                         f"{ts_np.shape}")  # fmt: skip
    check_increasing("ts", ts_np)
    check_count("num_domains", num_domains)
    check_count("power", power)
    span = float(ts_np[-1] - ts_np[0])
    half_width = span / 20 if half_width is None else half_width
    check_positive("half_width", half_width)
    if 2 * half_width >= span:
        raise ValueError(f"half_width={half_width} leaves no room for a test function inside "
                         f"the data's time span {span}")  # fmt: skip
    centres = np.linspace(ts_np[0] + half_width, ts_np[-1] - half_width, num_domains)
    ts = jnp.asarray(ts_np, x.dtype)
    phi, dphi = bump_functions(ts, centres, half_width, power)
    w = trapezoid_weights(ts)
    return (phi * w) @ library(x), -(dphi * w) @ x


def fit_weak_sindy(
    x: Float[ArrayLike, "time dim"],
    ts: Float[ArrayLike, " time"],
    *,
    library: Library = POLYNOMIAL_2,
    optimizer: Optimizer = STLSQ_DEFAULT,
    num_domains: int = 100,
    half_width: float | None = None,
    power: int = 4,
    input_names: Sequence[str] | None = None,
) -> SINDy:
    """SINDy in weak form: `optimizer(G, b)` for `weak_form(x, ts, library, ...)` — the same
    model as `fit_sindy`, found without differentiating the data. `ts` is concrete (it places
    the test functions): under `jit`, close over it."""
    gram, rhs = weak_form(x, ts, library, num_domains=num_domains, half_width=half_width,
                          power=power)  # fmt: skip
    fit = optimizer(gram, rhs)
    return SINDy(library, fit.coefficients, default_names(rhs.shape[-1], input_names))
