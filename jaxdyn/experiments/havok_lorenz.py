"""HAVOK on the x coordinate of the Lorenz system (Brunton et al. 2017, "Chaos as an
intermittently forced linear system", Fig. 1).

Data. The Lorenz system `(σ, ρ, β) = (10, 28, 8/3)` from `y0 = (-8, 8, 27)` (the paper's),
solved by `jaxdyn.odeint` with fixed RK4 steps of the sampling interval `dt` in float64 and
sampled every step; only `x` is kept. Fixed steps on the sampling grid, not an adaptive solve
read through its dense interpolant: rank 15 reaches singular values ~1e-13 of the first, and an
interpolant's non-smooth error there becomes the 15th coordinate (measured: Tsit5 at 1e-10
and Dopri8 at 1e-12, both interpolated, gave reconstruction errors of 2.9 and 1.1).

Model. `jaxdyn.sysid.havok`: `delays` rows of the Hankel matrix, its first `rank` right
singular vectors `v_1 … v_r`, and `dv/dt = A v + B v_r` fitted by least squares on the first
`r − 1`. The reconstruction integrates that forced linear model from `v(0)` with the measured
forcing `v_r` (exact first-order-hold discretisation, as PyDMD's `lsim`) and maps it back to
`x`; `rel_l2_error` is its relative L2 error over the whole fitted window.

Also reported: the forcing's excess kurtosis (0 for a Gaussian), the fraction of lobe switches
(sign changes of `x`) preceded within `burst.lookback` time units by a burst
(`|v_r| > burst.threshold · RMS(v_r)`), beside the same fraction for every sample (what chance
gives), the structure of `A` (`‖A + Aᵀ‖/‖A‖`, and the fraction of `‖A‖` outside the
tridiagonal band), and, when PyDMD is installed, its HAVOK on the same series (same
reconstruction, second-order derivative; the paper's and our default is fourth order).
Row `k` of `V` belongs to the window starting at sample `k` (as in the paper and PyDMD).

Seeds. The fit is deterministic given the series; the seed picks the initial condition: seed 0
is the paper's `y0` exactly, seed `s > 0` is `y0 + data.y0_spread · ε` with `ε ~ N(0, I₃)`
drawn from `jax.random.key(s)`. The trajectory is chaotic, so each seed is another stretch of
the attractor, and the seeds' spread is that of the error over initial conditions.
"""

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, positive, section
from ..data import lorenz_field
from ..plotting import Figure
from ..solve import odeint
from ..sysid import HAVOK, HAVOK_DERIVATIVES, havok
from ._registry import register


@dataclasses.dataclass
class LorenzSeriesConfig:
    sigma: float = positive(10.0)
    rho: float = positive(28.0)
    beta: float = positive(8.0 / 3.0)
    y0: list[float] = dataclasses.field(
        default_factory=lambda: [-8.0, 8.0, 27.0],
        metadata={"check": (lambda v: len(v) == 3, "a list of 3 numbers")},
    )
    y0_spread: float = positive(1.0)  # seed s > 0: y0 + y0_spread * N(0, I) from key(s)
    dt: float = positive(0.001)  # sampling interval = the RK4 step
    num_samples: int = at_least(200_000, 10)  # t = k dt, k < num_samples


@dataclasses.dataclass
class HavokModelConfig:
    delays: int = at_least(100, 2)
    rank: int = at_least(15, 2)  # r: r - 1 linear coordinates and the forcing v_r
    derivative: str = choice("central4", HAVOK_DERIVATIVES)


@dataclasses.dataclass
class BurstConfig:
    threshold: float = positive(0.9)  # a burst: |v_r| > threshold * RMS(v_r)
    lookback: float = positive(0.2)  # time units before a switch searched for a burst


@dataclasses.dataclass
class HavokLorenzConfig:
    experiment: str = "havok_lorenz"
    seed: int = at_least(0, 0)  # 0: the paper's y0; s > 0: y0 perturbed by a draw from key(s)
    target_rel_l2_error: float = positive(0.05)
    compare_pydmd: bool = True  # PyDMD's HAVOK on the same series, when it is installed
    figures: bool = True
    figure_span: float = positive(50.0)  # time units shown in the forcing figure
    data: LorenzSeriesConfig = section(LorenzSeriesConfig)
    model: HavokModelConfig = section(HavokModelConfig)
    burst: BurstConfig = section(BurstConfig)


def _check(cfg: DictConfig) -> None:
    d, m = cfg.data, cfg.model
    if m.rank > m.delays:
        raise ConfigError(f"model.rank={m.rank} exceeds model.delays={m.delays}")
    if d.num_samples - m.delays + 1 < m.rank + 4:
        raise ConfigError(
            f"data.num_samples={d.num_samples} leaves too few Hankel windows for "
            f"model.delays={m.delays} and model.rank={m.rank} (needs num_samples >= "
            f"{m.delays + m.rank + 3})"
        )


def initial_condition(cfg: DictConfig) -> np.ndarray:
    """The seed's `y0`: `data.y0` for seed 0, else `data.y0 + data.y0_spread · ε`, `ε ~ N(0, I₃)`
    from `jax.random.key(seed)` (float64)."""
    y0 = np.asarray(cfg.data.y0, np.float64)
    if cfg.seed == 0:
        return y0
    with jax.enable_x64(True):  # the same draw whatever the caller's precision
        noise = np.asarray(jax.random.normal(jax.random.key(cfg.seed), (3,), jnp.float64))
    return y0 + cfg.data.y0_spread * noise


def lorenz_x(cfg: DictConfig) -> np.ndarray:
    """`x(k dt)`, `k < num_samples`, of the Lorenz system from the seed's initial condition
    (`initial_condition`): fixed RK4 steps of `dt` (float64)."""
    d = cfg.data
    ts = d.dt * np.arange(d.num_samples)
    y0 = jnp.asarray(initial_condition(cfg), jnp.float64)
    sol = odeint(lorenz_field, y0, ts, args=(d.sigma, d.rho, d.beta), solver="rk4", dt0=d.dt)
    return np.asarray(sol.ys[:, 0])


def lobe_switches(x: np.ndarray) -> np.ndarray:
    """Indices `k` with `sign(x_k) != sign(x_{k+1})`: the trajectory changes lobe."""
    return np.nonzero(np.sign(x[:-1]) != np.sign(x[1:]))[0]


def burst_fractions(
    forcing: np.ndarray, switches: np.ndarray, threshold: float, lookback: int
) -> tuple[float | None, float, float]:
    """`(fraction of switches with a burst in the lookback before them, the same fraction over
    every sample (chance), fraction of samples in a burst)`. A burst is `|v_r| > threshold ·
    RMS(v_r)`; `lookback` is in samples; only switches and samples with the whole look-back
    window inside the forcing's span count (`None` when no switch does)."""
    active = np.abs(forcing) > threshold * np.sqrt(np.mean(forcing**2))
    counts = np.concatenate([[0], np.cumsum(active)])  # counts[k] = bursts before sample k

    def preceded(k):  # a burst among samples k - lookback … k
        return counts[k + 1] - counts[k - lookback] > 0

    n = forcing.shape[0]
    inside = switches[(switches >= lookback) & (switches < n)]
    switch_fraction = float(np.mean(preceded(inside))) if inside.size else None
    chance = float(np.mean(preceded(np.arange(lookback, n))))
    return switch_fraction, chance, float(np.mean(active))


def excess_kurtosis(values: np.ndarray) -> float:
    """`E[(v − μ)⁴] / Var(v)² − 3`: 0 for a Gaussian, large for heavy tails."""
    centred = values - values.mean()
    return float(np.mean(centred**4) / np.mean(centred**2) ** 2 - 3.0)


def operator_structure(A: np.ndarray) -> tuple[float, float]:
    """`(‖A + Aᵀ‖/‖A‖, ‖A outside |i − j| <= 1‖/‖A‖)`, Frobenius norms: both 0 for a
    skew-symmetric tridiagonal `A`."""
    norm = np.linalg.norm(A)
    band = np.abs(np.subtract.outer(np.arange(len(A)), np.arange(len(A)))) <= 1
    return float(np.linalg.norm(A + A.T) / norm), float(np.linalg.norm(A[~band]) / norm)


def _rel_l2(pred: np.ndarray, x: np.ndarray) -> float:
    return float(np.linalg.norm(pred - x) / np.linalg.norm(x))


def pydmd_reconstruction(cfg: DictConfig, x: np.ndarray) -> tuple[np.ndarray, float] | None:
    """PyDMD's HAVOK reconstruction of `x` (same delays and rank) and its fit+reconstruct
    time in seconds; `None` when PyDMD is not installed (it is in the test extra only)."""
    try:
        from pydmd import HAVOK as PyDMDHAVOK
    except ImportError:
        return None
    start = time.perf_counter()
    model = PyDMDHAVOK(svd_rank=cfg.model.rank, delays=cfg.model.delays).fit(x, cfg.data.dt)
    reconstruction = model.reconstructed_data
    return reconstruction, time.perf_counter() - start


def _figures(cfg, run_dir: Path, x, reconstruction, model: HAVOK, switches, threshold) -> None:
    dt = cfg.data.dt
    t = dt * np.arange(x.shape[0])
    fig = Figure(figsize=(9, 5))
    axes = fig.subplots(2, 1)
    zoom = t <= min(cfg.figure_span, t[-1]) / 5
    for ax, keep in ((axes[0], slice(None)), (axes[1], zoom)):
        ax.plot(t[keep], x[keep], "k-", lw=0.8, label="x (Lorenz)")
        ax.plot(t[keep], reconstruction[keep], "C1--", lw=0.8, label="HAVOK reconstruction")
        ax.set(xlabel="t", ylabel="x")
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"HAVOK reconstruction, relative L2 error {_rel_l2(reconstruction, x):.3f}")
    fig.tight_layout()
    fig.savefig(run_dir / "reconstruction.png", dpi=120)

    forcing = np.asarray(model.forcing)
    tf = dt * np.arange(forcing.shape[0])
    keep = tf <= cfg.figure_span
    active = np.abs(forcing) > threshold
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(2, 1, sharex=True)
    axes[0].plot(t[t <= cfg.figure_span], x[t <= cfg.figure_span], "k-", lw=0.7)
    axes[0].set_ylabel("x")
    axes[1].plot(tf[keep], forcing[keep], "0.5", lw=0.7, label="$v_r$")
    axes[1].plot(tf[keep & active], forcing[keep & active], "r.", ms=1.5, label="burst")
    for ax in axes:
        for k in switches[t[switches] <= cfg.figure_span]:
            ax.axvline(t[k], color="C0", lw=0.5, alpha=0.6)
    axes[1].set(xlabel="t (blue: lobe switches)", ylabel="forcing $v_r$")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(run_dir / "forcing.png", dpi=120)

    operator = np.concatenate([np.asarray(model.A), np.asarray(model.B)[:, None]], axis=1)
    vmax = np.abs(operator).max()
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    image = ax.imshow(operator, cmap="PuOr", vmin=-vmax, vmax=vmax)
    ax.axvline(operator.shape[1] - 1.5, color="k", lw=1)
    ax.set_title("[A | B]")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(run_dir / "operator.png", dpi=120)


@register("havok_lorenz", HavokLorenzConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """HAVOK of the Lorenz x series (Brunton et al. 2017); target rel. L2 error <= 0.05."""
    with jax.enable_x64(True):  # singular values down to ~1e-13 of the first: float64 only
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    m, d = cfg.model, cfg.data
    x = lorenz_x(cfg)
    fit = jax.jit(havok, static_argnames=("delays", "rank", "derivative"))
    start = time.perf_counter()
    model = jax.block_until_ready(
        fit(x, d.dt, delays=m.delays, rank=m.rank, derivative=m.derivative)
    )
    reconstruction = np.asarray(jax.jit(HAVOK.reconstruct)(model))
    seconds = time.perf_counter() - start  # compile included

    rel_error = _rel_l2(reconstruction, x)
    forcing = np.asarray(model.forcing)
    switches = lobe_switches(x)
    lookback = max(1, round(cfg.burst.lookback / d.dt))
    fraction, chance, active = burst_fractions(forcing, switches, cfg.burst.threshold, lookback)
    skew, off_band = operator_structure(np.asarray(model.A))

    summary = {
        "y0": [float(v) for v in initial_condition(cfg)],
        "rel_l2_error": rel_error,
        "target_rel_l2_error": cfg.target_rel_l2_error,
        "target_met": bool(np.isfinite(rel_error) and rel_error <= cfg.target_rel_l2_error),
        "forcing_excess_kurtosis": excess_kurtosis(forcing),
        "burst_fraction": fraction,
        "burst_chance_fraction": chance,
        "burst_active_fraction": active,
        "lobe_switches": int(switches.size),
        "a_skew_symmetry": skew,
        "a_off_tridiagonal": off_band,
        "singular_value_ratio": float(model.singular_values[m.rank - 1] / model.singular_values[0]),
        "havok_seconds_with_compile": seconds,
    }
    if cfg.compare_pydmd:
        reference = pydmd_reconstruction(cfg, x)
        if reference is not None:
            summary["pydmd_rel_l2_error"] = _rel_l2(reference[0], x)
            summary["pydmd_seconds"] = reference[1]
    if cfg.figures:
        threshold = cfg.burst.threshold * np.sqrt(np.mean(forcing**2))
        _figures(cfg, run_dir, x, reconstruction, model, switches, threshold)
    return summary
