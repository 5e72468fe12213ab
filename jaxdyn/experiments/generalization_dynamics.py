"""The dynamics of generalization error of a linear student (Advani & Saxe 2017, "High-
dimensional dynamics of generalization error in neural networks", §2–3).

Setting. A teacher `w̄ ∈ R^N`, `w̄ ~ N(0, σ_w̄² I)`, labels `y = X w̄ + ε` with `ε ~ N(0, σ_ε² I)`
for `P = αN` inputs `x ~ N(0, I/N)` (the rows of `X`); a linear student trained by gradient
flow `τ ẇ = Xᵀ(y − Xw)` from `w(0) = 0`. Training error `‖y − Xw‖²/P`; test error
`‖w − w̄‖²/N + σ_ε²` (the expected error on a fresh sample).

Closed form. In the eigenbasis of `XᵀX` (eigenvalues `λ`) each component of the error
`e = w − w̄` relaxes on its own, `ẽ_λ(t) = −w̃_λ e^{−λt/τ} + b̃_λ (1 − e^{−λt/τ})/λ` with
`b̃ = VᵀXᵀε`: exact for each sample (the "realised" curves). Averaged over teacher and noise,
the curves depend on the spectrum only (`jaxdyn.learning.linear_learning_curves`):

    E_test(t) = ∫ [σ_w̄² e^{−2λt/τ} + σ_ε² (1 − e^{−λt/τ})²/λ] dρ(λ) + σ_ε²,

with `ρ` the `N` eigenvalues of a sample (finite size) or the Marchenko–Pastur law of load `α`
(`N → ∞`). As `t → ∞`, `E_test → σ_ε² + σ_w̄² (1 − α)₊ + σ_ε² α/(1 − α)` (`α < 1`) or
`σ_ε² α/(α − 1)` (`α > 1`): it diverges at `α = 1`, where the smallest eigenvalues reach zero;
stopping early caps the noise term and removes the peak.

Reported, per headline load `α ∈ {0.5, 1, 2}`: (1) `jaxdyn.odeint` of the weights' flow on one
sample against that sample's eigen-solution (largest error of `w` over the time grid, relative
to `‖w̄‖`; target 1e-6); (2) the finite-size expected curves, averaged over `draws` samples of
`X`, against Marchenko–Pastur (the largest relative deviation of the test error over the time
grid, and of the training error relative to its initial value `σ_w̄² + σ_ε²`; target 2%); the
realised curves of the same samples (teacher and noise drawn too) against Marchenko–Pastur,
reported; (3) over a sweep of loads, the test error at a long time
and its peak; (4) the early-stopping optimum (time and error) of the Marchenko–Pastur curve
against the realised curves' own optima (mean over draws). The seed draws every `X`, `w̄`, `ε`.
"""

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, positive, positive_list, section
from ..learning import linear_learning_curves, marchenko_pastur_quadrature
from ..plotting import Figure
from ..solve import SOLVERS, odeint
from ._registry import register


@dataclasses.dataclass
class TimesConfig:
    t_min: float = positive(0.01)  # the log-spaced grid of the curves, [t_min, t_max]
    t_max: float = positive(100.0)
    num: int = at_least(1001, 3)
    long_time: float = positive(1000.0)  # where the sweep's "late" test error is read


@dataclasses.dataclass
class SweepConfig:
    alphas: list[float] = positive_list([round(0.2 + 0.1 * i, 1) for i in range(29)], "loads")
    draws: int = at_least(3, 1)  # samples per load in the sweep


@dataclasses.dataclass
class FlowConfig:
    solver: str = choice("dopri8", SOLVERS)
    rtol: float = positive(1e-10)
    atol: float = positive(1e-12)
    num_times: int = at_least(41, 2)  # saved times of the odeint check (log-spaced, as above)
    max_steps: int = at_least(100_000, 1)


@dataclasses.dataclass
class GeneralizationDynamicsConfig:
    experiment: str = "generalization_dynamics"
    seed: int = 0
    figures: bool = True
    size: int = at_least(500, 2)  # N, the input dimension
    draws: int = at_least(10, 1)  # samples of (X, w̄, ε) per headline load
    alphas: list[float] = positive_list([0.5, 1.0, 2.0], "loads")
    teacher_variance: float = positive(1.0)  # σ_w̄²
    noise_variance: float = positive(0.25)  # σ_ε² (SNR σ_w̄²/σ_ε² = 4)
    tau: float = positive(1.0)
    quadrature_nodes: int = at_least(1024, 2)
    target_rel_deviation: float = positive(0.02)
    target_flow_rel_error: float = positive(1e-6)
    times: TimesConfig = section(TimesConfig)
    sweep: SweepConfig = section(SweepConfig)
    flow: FlowConfig = section(FlowConfig)


def _check(cfg: DictConfig) -> None:
    t = cfg.times
    if not t.t_min < t.t_max:
        raise ConfigError(f"times.t_min={t.t_min} must be < times.t_max={t.t_max}")
    for name, alphas in (("alphas", cfg.alphas), ("sweep.alphas", cfg.sweep.alphas)):
        small = [a for a in alphas if round(a * cfg.size) < 1]
        if small:
            raise ConfigError(f"{name}={list(alphas)}: {small} leave no sample at size={cfg.size}")


def _relaxation(x):
    """`(1 − e^{−x})/x`, `1` at `x = 0`."""
    small = jnp.abs(x) < 1e-8
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - x / 2, -jnp.expm1(-safe) / safe)


def asymptotic_test_error(alpha: float, teacher_variance: float, noise_variance: float):
    """`lim_{t→∞} E_test` under Marchenko–Pastur (`None` at `α = 1`, where it diverges)."""
    if alpha == 1:
        return None
    if alpha < 1:
        return noise_variance * (1 + alpha / (1 - alpha)) + teacher_variance * (1 - alpha)
    return noise_variance * alpha / (alpha - 1)


def sample(key, size: int, num_samples: int, cfg: DictConfig) -> dict:
    """One data set `X (P, N)`, teacher `w̄`, noise `ε`, reduced to what the curves need: the
    eigenvalues `λ` and vectors `V` of `XᵀX`, `w̃ = Vᵀw̄`, `b̃ = VᵀXᵀε`, `‖ε‖²` (and `XᵀX`,
    `Xᵀy` for the flow)."""
    k_x, k_w, k_e = jax.random.split(key, 3)
    x = np.asarray(jax.random.normal(k_x, (num_samples, size))) / np.sqrt(size)
    teacher = np.sqrt(cfg.teacher_variance) * np.asarray(jax.random.normal(k_w, (size,)))
    noise = np.sqrt(cfg.noise_variance) * np.asarray(jax.random.normal(k_e, (num_samples,)))
    gram = x.T @ x
    lam, v = np.linalg.eigh(gram)  # LAPACK through NumPy: ~2x jnp.linalg.eigh's time on CPU
    return {"lam": np.maximum(lam, 0.0), "v": v, "teacher": teacher, "w": v.T @ teacher,
            "b": v.T @ (x.T @ noise), "noise_sq": float(noise @ noise), "gram": gram,
            "xty": x.T @ (x @ teacher + noise), "num_samples": num_samples}  # fmt: skip


def realised_error(lam, w, b, ts, tau: float):
    """The error `ẽ(t) = Vᵀ(w(t) − w̄)` of one sample in the eigenbasis, at every time."""
    x = jnp.outer(ts, lam) / tau
    return -w * jnp.exp(-x) + b * (ts[:, None] / tau) * _relaxation(x)


@jax.jit
def _curves(lam, w, b, noise_sq, num_samples, ts, teacher_variance, noise_variance, tau):
    """Realised `(train, test)` of one sample, exactly, and the expected (finite-size) ones."""
    e = realised_error(lam, w, b, ts, tau)
    size = lam.shape[0]
    train = (e**2 @ lam - 2 * e @ b + noise_sq) / num_samples
    test = jnp.sum(e**2, axis=1) / size + noise_variance
    expected = linear_learning_curves(lam, jnp.full(size, 1.0 / size), ts,
                                      alpha=num_samples / size, teacher_variance=teacher_variance,
                                      noise_variance=noise_variance, tau=tau)  # fmt: skip
    return train, test, expected.train, expected.test


def mp_curves(alpha: float, ts, cfg: DictConfig):
    lam, w = marchenko_pastur_quadrature(alpha, cfg.quadrature_nodes)
    c = linear_learning_curves(lam, w, ts, alpha=alpha, teacher_variance=cfg.teacher_variance,
                               noise_variance=cfg.noise_variance, tau=cfg.tau)  # fmt: skip
    return np.asarray(c.train), np.asarray(c.test)


def draw_curves(key, alpha: float, draws: int, ts, cfg: DictConfig) -> dict:
    """Per draw: the realised and the expected (finite-size) curves; `(draws, time)` each."""
    num_samples = round(alpha * cfg.size)
    out = []
    for k in jax.random.split(key, draws):
        d = sample(k, cfg.size, num_samples, cfg)
        out.append(_curves(d["lam"], d["w"], d["b"], d["noise_sq"], float(num_samples), ts,
                           cfg.teacher_variance, cfg.noise_variance, cfg.tau))  # fmt: skip
    return dict(zip(("train", "test", "expected_train", "expected_test"),
                    (np.stack([np.asarray(o[i]) for o in out]) for i in range(4)),
                    strict=True))  # fmt: skip


def flow_check(key, alpha: float, cfg: DictConfig) -> dict:
    """`odeint` of `τ ẇ = Xᵀ(y − Xw)` on one sample against its eigen-solution."""
    d = sample(key, cfg.size, round(alpha * cfg.size), cfg)
    ts = np.logspace(np.log10(cfg.times.t_min), np.log10(cfg.times.t_max), cfg.flow.num_times)
    ts = np.concatenate([[0.0], ts])
    exact = (
        d["teacher"] + np.asarray(realised_error(d["lam"], d["w"], d["b"], ts, cfg.tau)) @ d["v"].T
    )
    ys, steps = _flow(d["gram"], d["xty"], ts, cfg.tau, cfg.flow.solver, cfg.flow.rtol,
                      cfg.flow.atol, cfg.flow.max_steps)  # fmt: skip
    error = np.max(np.linalg.norm(np.asarray(ys) - exact, axis=1)) / np.linalg.norm(d["teacher"])
    return {"max_rel_error": float(error), "solver_steps": int(steps)}


@functools.partial(jax.jit, static_argnames=("tau", "solver", "rtol", "atol", "max_steps"))
def _flow(gram, xty, ts, tau, solver: str, rtol, atol, max_steps: int):
    def field(t, w, args):
        gram, xty = args
        return (xty - gram @ w) / tau

    sol = odeint(field, jnp.zeros(gram.shape[0]), ts, args=(gram, xty), solver=solver, rtol=rtol,
                 atol=atol, adjoint="direct", max_steps=max_steps)  # fmt: skip
    return sol.ys, sol.stats.num_steps


def _optimum(ts: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    k = int(np.argmin(test))
    return float(ts[k]), float(test[k])


def _tag(alpha: float) -> str:
    return f"alpha_{alpha:g}".replace(".", "p")


@register("generalization_dynamics", GeneralizationDynamicsConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Linear student, noisy linear teacher: learning curves against Marchenko–Pastur."""
    with jax.enable_x64(True):  # exponentials of λt up to 1e3 and 1e-6 comparisons
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    t = cfg.times
    ts_np = np.logspace(np.log10(t.t_min), np.log10(t.t_max), t.num)
    ts = jnp.asarray(ts_np)
    e0 = cfg.teacher_variance + cfg.noise_variance
    k_main, k_flow, k_sweep = jax.random.split(jax.random.key(cfg.seed), 3)

    per_alpha, plots = {}, {}
    for i, alpha in enumerate(cfg.alphas):
        a = round(alpha * cfg.size) / cfg.size  # the load actually drawn
        curves = draw_curves(jax.random.fold_in(k_main, i), alpha, cfg.draws, ts, cfg)
        mp_train, mp_test = mp_curves(a, ts, cfg)
        exp_train, exp_test = curves["expected_train"].mean(0), curves["expected_test"].mean(0)
        sim_train, sim_test = curves["train"].mean(0), curves["test"].mean(0)
        optima = np.array([_optimum(ts_np, c) for c in curves["test"]])
        t_mp, e_mp = _optimum(ts_np, mp_test)
        flow = flow_check(jax.random.fold_in(k_flow, i), alpha, cfg)
        per_alpha[_tag(alpha)] = {
            "alpha": a,
            "flow_max_rel_error": flow["max_rel_error"],
            "flow_solver_steps": flow["solver_steps"],
            "finite_size_vs_mp_test": float(np.max(np.abs(exp_test - mp_test) / mp_test)),
            "finite_size_vs_mp_train": float(np.max(np.abs(exp_train - mp_train)) / e0),
            "realised_vs_mp_test": float(np.max(np.abs(sim_test - mp_test) / mp_test)),
            "realised_vs_mp_train": float(np.max(np.abs(sim_train - mp_train)) / e0),
            "early_stopping_time_mp": t_mp,
            "early_stopping_error_mp": e_mp,
            "early_stopping_time_realised": float(optima[:, 0].mean()),
            "early_stopping_error_realised": float(optima[:, 1].mean()),
            "early_stopping_error_rel_diff": float(optima[:, 1].mean() / e_mp - 1),
            "test_error_at_t_max_mp": float(mp_test[-1]),
            "test_error_at_t_max_realised": float(sim_test[-1]),
            "test_error_asymptotic_mp": asymptotic_test_error(a, cfg.teacher_variance,
                                                              cfg.noise_variance),
            "train_error_at_t_max_mp": float(mp_train[-1]),
        }  # fmt: skip
        plots[alpha] = (curves, mp_train, mp_test)

    sweep = _sweep(k_sweep, cfg)
    worst = {
        key: max(v[key] for v in per_alpha.values())
        for key in ("flow_max_rel_error", "finite_size_vs_mp_test", "finite_size_vs_mp_train",
                    "realised_vs_mp_test", "realised_vs_mp_train")
    }  # fmt: skip
    summary = {
        **{f"max_{key}": value for key, value in worst.items()},
        "peak_alpha_mp": sweep["peak_alpha_mp"],
        "peak_alpha_realised": sweep["peak_alpha_realised"],
        "early_stopped_mp_decreasing_in_alpha": sweep["early_stopped_mp_decreasing"],
        "target_rel_deviation": cfg.target_rel_deviation,
        "target_flow_rel_error": cfg.target_flow_rel_error,
        "target_met": bool(
            worst["flow_max_rel_error"] <= cfg.target_flow_rel_error
            and worst["finite_size_vs_mp_test"] <= cfg.target_rel_deviation
            and worst["finite_size_vs_mp_train"] <= cfg.target_rel_deviation
            and sweep["peak_alpha_mp"] == 1.0
            and sweep["peak_alpha_realised"] == 1.0
        ),
        "per_alpha": per_alpha,
        "sweep": sweep["table"],
    }
    if cfg.figures:
        _figure_curves(run_dir, ts_np, plots, cfg)
        _figure_sweep(run_dir, sweep, cfg)
    return summary


def _sweep(key, cfg: DictConfig) -> dict:
    """Per load: the test error at `times.long_time` and the early-stopped optimum on the
    curves' grid, Marchenko–Pastur and realised (mean over `sweep.draws` samples)."""
    ts_np = np.logspace(np.log10(cfg.times.t_min), np.log10(cfg.times.t_max), cfg.times.num)
    ts = jnp.asarray(np.append(ts_np, cfg.times.long_time))
    rows = []
    for i, alpha in enumerate(cfg.sweep.alphas):
        a = round(alpha * cfg.size) / cfg.size
        curves = draw_curves(jax.random.fold_in(key, i), alpha, cfg.sweep.draws, ts, cfg)
        mp_test = mp_curves(a, ts, cfg)[1]
        optima = np.array([_optimum(ts_np, c[:-1]) for c in curves["test"]])
        rows.append({
            "alpha": a,
            "late_test_mp": float(mp_test[-1]),
            "late_test_realised": float(curves["test"][:, -1].mean()),
            "early_stopped_test_mp": _optimum(ts_np, mp_test[:-1])[1],
            "early_stopped_test_realised": float(optima[:, 1].mean()),
            "asymptotic_test_mp": asymptotic_test_error(a, cfg.teacher_variance,
                                                        cfg.noise_variance),
        })  # fmt: skip
    late_mp = [r["late_test_mp"] for r in rows]
    late_sim = [r["late_test_realised"] for r in rows]
    stopped = np.array([r["early_stopped_test_mp"] for r in rows])
    order = np.argsort([r["alpha"] for r in rows])
    return {
        "table": rows,
        "peak_alpha_mp": rows[int(np.argmax(late_mp))]["alpha"],
        "peak_alpha_realised": rows[int(np.argmax(late_sim))]["alpha"],
        "early_stopped_mp_decreasing": bool(np.all(np.diff(stopped[order]) < 0)),
    }


def _figure_curves(run_dir: Path, ts, plots: dict, cfg: DictConfig) -> None:
    fig = Figure(figsize=(4 * len(plots), 7))
    axes = fig.subplots(2, len(plots), sharex=True, squeeze=False)
    for j, (alpha, (curves, mp_train, mp_test)) in enumerate(plots.items()):
        for row, (name, mp) in enumerate((("test", mp_test), ("train", mp_train))):
            ax = axes[row, j]
            sim = curves[name]
            mean, sd = sim.mean(0), sim.std(0)
            ax.fill_between(ts, mean - sd, mean + sd, color="C0", alpha=0.25, lw=0)
            ax.semilogx(ts, mean, color="C0", lw=2, label=f"realised (mean ± sd, {cfg.draws})")
            ax.semilogx(ts, curves[f"expected_{name}"].mean(0), color="C1", lw=1,
                        label="finite-size eigen-sum")  # fmt: skip
            ax.semilogx(ts, mp, "k--", lw=1, label="Marchenko–Pastur")
            ax.set(title=f"α = {alpha:g}: {name} error", xlabel="t / τ" if row else None)
            if name == "test":
                k = int(np.argmin(mp))
                ax.plot(ts[k], mp[k], "kv", ms=6, label="early-stopping optimum")
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "learning_curves.png", dpi=110)


def _figure_sweep(run_dir: Path, sweep: dict, cfg: DictConfig) -> None:
    rows = sweep["table"]
    alpha = np.array([r["alpha"] for r in rows])
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(alpha, [r["late_test_mp"] for r in rows], "C3-",
            label=f"t = {cfg.times.long_time:g}: Marchenko–Pastur")  # fmt: skip
    ax.plot(alpha, [r["late_test_realised"] for r in rows], "C3o", ms=4, label="realised")
    asym = [np.nan if r["asymptotic_test_mp"] is None else r["asymptotic_test_mp"] for r in rows]
    ax.plot(alpha, asym, "k:", lw=1, label="t → ∞ (closed form)")
    ax.plot(alpha, [r["early_stopped_test_mp"] for r in rows], "C0-",
            label="early-stopped: Marchenko–Pastur")  # fmt: skip
    ax.plot(alpha, [r["early_stopped_test_realised"] for r in rows], "C0s", ms=4,
            label="early-stopped: realised")  # fmt: skip
    ax.axvline(1.0, color="grey", lw=0.5)
    top = 3 * max(r["late_test_mp"] for r in rows if r["alpha"] != 1.0)
    ax.set(xlabel="α = P / N", ylabel="test error", ylim=(0, top),
           title=f"Advani & Saxe 2017: the peak at α = 1 (N = {cfg.size}, "
                 f"SNR = {cfg.teacher_variance / cfg.noise_variance:g})")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "test_error_vs_alpha.png", dpi=110)
