"""Sensitivity of an energy minimum: soft-sphere packing, `∂x*/∂σ` by implicit differentiation
(the molecular-dynamics example of Blondel et al. 2022, §4, without jax-md).

`N` particles in a periodic square box of side `L`, half of species A (diameter `d_A`), half
of species B (diameter `σ`, the parameter), interact through the soft-sphere potential
(Durian 1995; jax-md's `soft_sphere`)

    E(x, σ) = Σ_{i<j} (ε/α) (1 - r_ij/σ_ij)^α  for r_ij < σ_ij,   σ_ij = (σ_i + σ_j)/2,

with minimum-image distances `r_ij`. `L` is set by the packing fraction at the nominal `σ` and
held fixed when `σ` varies. Random positions are relaxed to a minimum `x̄` with `argmin`
(L-BFGS, float64, tight tolerance). The sensitivity `J = ∂x*/∂σ` (shape `(N, 2)`) comes from
reverse mode through `argmin`, row by row (implicit function theorem, `J = -H⁻¹ ∂_σ∇E`: one
linear solve per row; argmin's custom VJP has no forward mode), and is compared
with central finite differences of re-minimised positions at `σ ± h`, both started from `x̄`
(so they stay in its basin). Target: `‖J_impl - J_fd‖ / ‖J_fd‖ ≤ 1e-4`.

Zero modes. `E` is invariant under global translations, and a rattler (a particle with no
contact at `x̄`) sits in a flat cage, so the Hessian `H` is singular and the reverse-mode linear
system `H v = e_k` has no solution for some `k` (argmin's linear-solve check then fails, whatever
the solver). The differentiated problem is therefore

    f(x, σ) = E(x, σ) + (k/2) N ‖mean(x - x̄)‖² + (k_r/2) Σ_{i rattler} ‖x_i - x̄_i‖².

Neither tether changes a minimum of `E` near `x̄`: any such minimum can be translated to
`mean(x) = mean(x̄)`, and a rattler feels no force, so it may stay at `x̄_i`. They only add
eigenvalues `k` (translations) and `k_r` (rattlers) where `H` had zeros, leaving the rest of its
spectrum alone: `J` is the exact sensitivity in the centre-of-mass frame, with rattlers at rest.
With `dense_check`, `J` is also compared with `-H⁺ ∂_σ∇E` (pseudo-inverse of the dense,
un-tethered Hessian), which is the same vector.
"""

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from omegaconf import DictConfig

from ..config import at_least, choice, positive, section
from ..implicit import LINEAR_SOLVERS, LinearSolve, argmin
from ..plotting import Figure
from ._registry import register


@dataclasses.dataclass
class PackingConfig:
    num_particles: int = at_least(64, 4)  # half species A, half species B
    packing_fraction: float = positive(0.9)  # at the nominal diameter; 2D jamming is ~0.84
    diameter_a: float = positive(1.0)
    diameter_b: float = positive(1.4)  # σ, the parameter differentiated
    epsilon: float = positive(1.0)
    alpha: float = at_least(2.0, 2.0)  # exponent; >= 2 keeps the Hessian bounded


@dataclasses.dataclass
class MinimiseConfig:
    solver: str = choice("lbfgs", ("lbfgs", "gradient_descent"))
    tol: float = positive(1e-13)  # on ‖∇f‖; FD divides position errors by 2h
    max_steps: int = at_least(20000, 1)
    step_size: float | None = positive(None)  # gradient_descent only (null: line search)


@dataclasses.dataclass
class SensitivityConfig:
    linear_solver: str = choice("cg", LINEAR_SOLVERS)
    linear_tol: float = positive(1e-10)
    com_stiffness: float = at_least(1.0, 0.0)  # k: removes the translation zero modes
    rattler_stiffness: float = at_least(1.0, 0.0)  # k_r: removes the rattlers' zero modes
    fd_step: float = positive(1e-5)
    dense_check: bool = True  # pseudo-inverse of the dense Hessian (for 2N <= 4096)
    timing_repeats: int = at_least(3, 1)  # timings are the best of this many warm calls


@dataclasses.dataclass
class EnergySensitivityConfig:
    experiment: str = "energy_sensitivity"
    seed: int = 0
    target_rel_error: float = positive(1e-4)
    system: PackingConfig = section(PackingConfig)
    minimise: MinimiseConfig = section(MinimiseConfig)
    sensitivity: SensitivityConfig = section(SensitivityConfig)


def soft_sphere_energy(
    x: Float[Array, "n 2"],
    diameters: Float[Array, " n"],
    box: float,
    *,
    epsilon: float = 1.0,
    alpha: float = 2.0,
) -> Float[Array, ""]:
    """`E = Σ_{i<j} (ε/α)(1 - r_ij/σ_ij)^α [r_ij < σ_ij]`, `σ_ij = (σ_i + σ_j)/2`, with
    minimum-image distances in a periodic square box of side `box` (valid while every
    `σ_ij < box/2`). Positions need not be wrapped into the box."""
    i, j = jnp.triu_indices(x.shape[0], 1)
    dr = x[i] - x[j]
    dr = dr - box * jnp.round(dr / box)
    r2 = jnp.sum(dr**2, -1)
    r = jnp.sqrt(jnp.where(r2 > 0, r2, 1.0))  # coincident particles: no NaN gradient
    sigma = 0.5 * (diameters[i] + diameters[j])
    overlap = jnp.where(r < sigma, 1.0 - r / sigma, 0.0)
    return jnp.sum(epsilon / alpha * overlap**alpha)


def _pair_geometry(x: np.ndarray, diameters: np.ndarray, box: float):
    """Minimum-image distances and contact diameters of all pairs, as `(n, n)` arrays."""
    dr = x[:, None] - x[None]
    dr -= box * np.round(dr / box)
    r = np.sqrt(np.sum(dr**2, -1))
    sigma = 0.5 * (diameters[:, None] + diameters[None])
    np.fill_diagonal(r, np.inf)
    return r, sigma


def _best_time(fn, *args, repeats: int) -> tuple[object, float, float]:
    """`fn(*args)`, its first-call time (compile included) and the best of `repeats` warm calls."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return out, first, best


class Packing(NamedTuple):
    """The system: `n` particles, which are species B, their nominal diameters and the box."""

    n: int
    species_b: np.ndarray
    nominal: np.ndarray
    box: float


def _packing(s: DictConfig) -> Packing:
    """The box side from the packing fraction at the nominal diameters."""
    n = s.num_particles
    species_b = np.arange(n) >= n // 2
    nominal = np.where(species_b, s.diameter_b, s.diameter_a)
    box = float(np.sqrt(np.sum(np.pi * nominal**2 / 4) / s.packing_fraction))
    if max(s.diameter_a, s.diameter_b) >= box / 2:
        raise ValueError(
            f"box side {box:.3g} (from system.num_particles={n}, system.packing_fraction="
            f"{s.packing_fraction}) must exceed twice the largest diameter for minimum-image "
            "distances; raise num_particles or lower packing_fraction"
        )
    return Packing(n, species_b, nominal, box)


def _tethered_solver(energy, n: int, m: DictConfig, sens: DictConfig):
    """`solve(x_start, σ, x_ref, com_stiffness, tether) -> (x, info)`: minimise `f` from
    `x_start`, tethered to `x_ref`: the centre of mass with stiffness `com_stiffness`, particle
    `i` with stiffness `tether[i]`. One compiled solve serves the relaxation (no tethers, from
    random positions), the finite differences and the implicit Jacobian (tethered, from the
    relaxed minimum)."""
    options = dict(
        solver=m.solver, tol=m.tol, max_steps=m.max_steps, step_size=m.step_size,
        linear_solver=LinearSolve(sens.linear_solver, tol=sens.linear_tol),
    )  # fmt: skip

    @eqx.filter_jit  # unlike jax.jit, shows argmin's failure message (eqx.error_if)
    def solve(x_start, sigma, x_ref, com_stiffness, tether):
        def f(x, sigma):
            com = jnp.mean(x - x_ref, 0)
            pinned = jnp.sum(tether[:, None] * (x - x_ref) ** 2)
            return energy(x, sigma) + 0.5 * (com_stiffness * n * jnp.sum(com**2) + pinned)

        return argmin(f, x_start, sigma, **options)

    return solve


def _jacobians(solve, x_bar, sigma0, k_com, tether, h: float, repeats: int) -> dict:
    """`J = ∂x*/∂σ` by implicit differentiation and by central differences, with timings.

    Implicit: the forward solve at σ (converged at x̄ already: one L-BFGS iteration), then
    reverse mode through argmin, one linear solve per row of J (2N, in sequence: jax.jacrev
    would vmap them, and the batched CG runs to the slowest row: 2x slower at N = 64).
    argmin's custom VJP has no forward mode, so jax.jacfwd (one solve) is not available."""
    n = x_bar.shape[0]
    basis = jnp.eye(2 * n, dtype=jnp.float64).reshape(2 * n, n, 2)

    def fd_jacobian(sigma):
        plus, plus_info = solve(x_bar, sigma + h, x_bar, k_com, tether)
        minus, minus_info = solve(x_bar, sigma - h, x_bar, k_com, tether)
        return (plus - minus) / (2 * h), (plus_info.iterations, minus_info.iterations)

    @eqx.filter_jit
    def implicit_jacobian(sigma):
        _, pullback = jax.vjp(lambda sigma: solve(x_bar, sigma, x_bar, k_com, tether)[0], sigma)
        return jax.lax.map(lambda row: pullback(row)[0], basis).reshape(n, 2)

    j_impl, impl_first, impl_time = _best_time(implicit_jacobian, sigma0, repeats=repeats)
    (j_fd, fd_iterations), fd_first, fd_time = _best_time(fd_jacobian, sigma0, repeats=repeats)
    return {
        "implicit": np.asarray(j_impl), "fd": np.asarray(j_fd),
        "fd_iterations": [int(i) for i in fd_iterations],  # re-minimisations at σ ± h
        "implicit_jacobian_s": impl_time, "implicit_per_row_s": impl_time / (2 * n),
        "fd_jacobian_s": fd_time,
        "first": {"implicit_jacobian": impl_first, "fd_jacobian": fd_first},
    }  # fmt: skip


@register("energy_sensitivity", EnergySensitivityConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Soft-sphere packing: ∂x*/∂σ, implicit diff vs finite differences; target rel err ≤ 1e-4."""
    with jax.enable_x64(True):  # float64 here only; restored on exit
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    s, sens = cfg.system, cfg.sensitivity
    p = _packing(s)
    n, box, is_b = p.n, p.box, jnp.asarray(p.species_b)

    def energy(x, sigma):
        diameters = jnp.where(is_b, sigma, s.diameter_a)
        return soft_sphere_energy(x, diameters, box, epsilon=s.epsilon, alpha=s.alpha)

    solve = _tethered_solver(energy, n, cfg.minimise, sens)
    sigma0 = jnp.asarray(s.diameter_b, dtype=jnp.float64)
    x_init = jax.random.uniform(jax.random.key(cfg.seed), (n, 2), jnp.float64, 0.0, box)
    zero, no_tether = jnp.zeros((), jnp.float64), jnp.zeros(n, jnp.float64)
    (x_bar, relax_info), relax_first, relax_time = _best_time(
        solve, x_init, sigma0, x_init, zero, no_tether, repeats=sens.timing_repeats
    )
    r, sigma_ij = _pair_geometry(np.asarray(x_bar), p.nominal, box)
    contacts = r < sigma_ij
    rattlers = ~contacts.any(1)
    k_com = jnp.asarray(sens.com_stiffness, jnp.float64)
    tether = jnp.asarray(np.where(rattlers, sens.rattler_stiffness, 0.0))
    j = _jacobians(solve, x_bar, sigma0, k_com, tether, sens.fd_step, sens.timing_repeats)
    j_impl, j_fd, x_bar = j["implicit"], j["fd"], np.asarray(x_bar)
    rel_error = float(np.linalg.norm(j_impl - j_fd) / np.linalg.norm(j_fd))

    iu = np.triu_indices(n, 1)
    e_min, grad = jax.jit(jax.value_and_grad(energy))(jnp.asarray(x_bar), sigma0)
    summary = {
        "rel_error": rel_error,
        "target_rel_error": cfg.target_rel_error,
        "target_met": bool(rel_error <= cfg.target_rel_error),
        "num_particles": n,
        "packing_fraction": s.packing_fraction,
        "box_side": box,
        "energy": float(e_min),
        "max_abs_grad": float(jnp.max(jnp.abs(grad))),
        "relax_iterations": int(relax_info.iterations),
        "num_contacts": int(np.sum(contacts[iu])),
        "mean_coordination": float(np.mean(np.sum(contacts, 1))),
        "num_rattlers": int(np.sum(rattlers)),  # no contact: tethered
        "fd_iterations": j["fd_iterations"],
        # smallest |r - σ_ij|/σ_ij: FD is unreliable if σ ± h makes or breaks a contact
        "contact_margin": float(np.min(np.abs(r[iu] / sigma_ij[iu] - 1.0))),
        "jacobian_norm": float(np.linalg.norm(j_impl)),
        "relax_s": relax_time,
        "implicit_jacobian_s": j["implicit_jacobian_s"],
        "implicit_per_row_s": j["implicit_per_row_s"],  # one VJP: a scalar loss's gradient
        "fd_jacobian_s": j["fd_jacobian_s"],
        "compile_and_first_call_s": {"relax": relax_first, **j["first"]},
    }
    if sens.dense_check and 2 * n <= 4096:
        summary.update(_dense_check(energy, x_bar, sigma0, j_impl))

    _plot_packing(x_bar, p.nominal, p.species_b, rattlers, box, contacts,
                  run_dir / "packing.png", s)  # fmt: skip
    _plot_sensitivity(x_bar, p.nominal, p.species_b, box, j_impl, j_fd, rel_error,
                      run_dir / "sensitivity.png")  # fmt: skip
    return summary


def _dense_check(energy, x_bar: np.ndarray, sigma0, j_impl: np.ndarray) -> dict:
    """Compare `J_impl` with `-H⁺ ∂_σ∇E` from the dense, un-tethered Hessian."""
    size = x_bar.size
    derivatives = jax.jit(lambda x, sigma: jax.jacfwd(jax.grad(energy), (0, 1))(x, sigma))
    hessian, mixed = derivatives(jnp.asarray(x_bar), sigma0)
    hessian, mixed = np.asarray(hessian).reshape(size, size), np.asarray(mixed).reshape(size)
    eigenvalues = np.linalg.eigvalsh(hessian)
    cutoff = 1e-9 * np.max(np.abs(eigenvalues))
    zero = np.abs(eigenvalues) <= cutoff
    j_dense = -np.linalg.pinv(hessian, rtol=1e-9, hermitian=True) @ mixed
    return {
        "rel_error_vs_dense": float(
            np.linalg.norm(j_impl.reshape(-1) - j_dense) / np.linalg.norm(j_dense)
        ),
        "hessian_min_eigenvalue": float(eigenvalues[0]),  # ≈ 0 (translations), not < 0
        "hessian_min_nonzero_eigenvalue": float(np.min(eigenvalues[~zero])),
        "hessian_max_eigenvalue": float(eigenvalues[-1]),
        "hessian_zero_modes": int(np.sum(zero)),  # 2 translations + 2 per rattler
    }


def _draw_particles(ax, x, diameters, box, colors, alpha=1.0):
    """Discs with their periodic images, clipped to the box `[0, box]²`."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle, Rectangle

    x = np.mod(x, box)
    shifts = [(a, b) for a in (-box, 0.0, box) for b in (-box, 0.0, box)]
    patches, face = [], []
    for (px, py), d, c in zip(x, diameters, colors, strict=True):
        for sx, sy in shifts:
            cx, cy = px + sx, py + sy
            if -d / 2 < cx < box + d / 2 and -d / 2 < cy < box + d / 2:
                patches.append(Circle((cx, cy), d / 2))
                face.append(c)
    frame = Rectangle((0, 0), box, box, fill=False, lw=1.2, color="k")
    ax.add_patch(frame)
    collection = PatchCollection(patches, facecolors=face, edgecolors="k", lw=0.4, alpha=alpha)
    ax.add_collection(collection)
    collection.set_clip_path(frame)
    ax.set(xlim=(0, box), ylim=(0, box), aspect="equal")


def _plot_packing(x, diameters, species_b, rattlers, box, contacts, path, s) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = Figure(figsize=(7.5, 6))
    ax = fig.subplots()
    colors = np.where(species_b, "tab:orange", "tab:blue")
    _draw_particles(ax, x, diameters, box, colors, alpha=0.75)
    xw = np.mod(x, box)
    for i, j in zip(*np.nonzero(np.triu(contacts)), strict=True):
        d = xw[j] - xw[i]
        d -= box * np.round(d / box)
        ax.plot([xw[i, 0], xw[i, 0] + d[0]], [xw[i, 1], xw[i, 1] + d[1]], "k-", lw=0.5)
    ax.plot(*xw[rattlers].T, "kx", ms=6, ls="none")
    handles = [Patch(color="tab:blue", alpha=0.75, label=f"A, d = {s.diameter_a}"),
               Patch(color="tab:orange", alpha=0.75, label=f"B, σ = {s.diameter_b}"),
               Line2D([], [], color="k", lw=0.5, label="contact"),
               Line2D([], [], color="k", marker="x", ls="none", label="rattler")]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(
        f"relaxed packing: N={x.shape[0]}, φ={s.packing_fraction}, "
        f"{int(np.sum(np.triu(contacts)))} contacts",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_sensitivity(x, diameters, species_b, box, j_impl, j_fd, rel_error, path) -> None:
    fig = Figure(figsize=(11, 5.2))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    _draw_particles(ax, x, diameters, box, np.where(species_b, "#fdd0a2", "#c6dbef"))
    xw = np.mod(x, box)
    speed = np.linalg.norm(j_impl, axis=1)
    quiver = ax.quiver(
        xw[:, 0], xw[:, 1], j_impl[:, 0], j_impl[:, 1], speed, cmap="viridis",
        angles="xy", scale_units="xy", scale=np.max(speed) / 1.2, width=0.006,
    )  # fmt: skip
    fig.colorbar(quiver, ax=ax, label="|∂x_i/∂σ|", shrink=0.8)
    ax.set_title("sensitivity ∂x*/∂σ (implicit, centre-of-mass frame)", fontsize=10)
    lim = np.max(np.abs(np.concatenate([j_impl.ravel(), j_fd.ravel()]))) * 1.05
    ax2.plot([-lim, lim], [-lim, lim], "k-", lw=0.6)
    ax2.plot(j_fd.ravel(), j_impl.ravel(), "o", ms=3)
    ax2.set(xlabel="central finite differences", ylabel="implicit differentiation",
            xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
            title=f"components of ∂x*/∂σ: relative error {rel_error:.2e}")  # fmt: skip
    ax2.title.set_fontsize(10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
