"""Fitting an SDE to sampled paths: drift and diffusion networks by Gaussian transition
likelihood, on the one-dimensional stochastic double well.

Data. `num_paths` paths of the Itô SDE (`jaxdyn.data.double_well_paths`)

    dx = (x - x³) dt + σ(x) dW,    σ(x) = √(σ₀² + σ₁² x²)    (σ₁ = 0: additive noise),

from `x₀ ~ U[x0_range]`, integrated by `sdeint` with steps `obs_dt / fine_factor` and
observed without noise every `obs_dt` on `[0, horizon]`.

Model. A `NeuralSDE` `dx = f_θ(x) dt + σ_φ(x) dW` with MLP drift and diffusion
(`MLPField`; the diffusion made positive by a softplus, `SoftplusField`). It is fitted by
maximum likelihood of the observed transitions `x_n → x_{n+1}` under a Gaussian
approximation of the transition density `p_Δ(x_{n+1} | x_n)`, Δ = `obs_dt`: the mean
negative log-likelihood per transition, minimised by `jaxdyn.train.fit` over minibatches of
`train.batch_size` whole paths (all their transitions; an unbiased gradient estimate). Two
approximations (`model.estimators`; several are fitted side by side from the same
initialisation and minibatches, the first is the one the targets judge):

- `euler`: the Euler–Maruyama density `N(x + f Δ, σ² Δ)`
  (`jaxdyn.train.euler_maruyama_log_density`; Florens-Zmirou 1989; with neural drift and
  diffusion, Dietrich et al. 2023). Its maximiser with unlimited data is `f̂ = E[x_{n+1} - x_n |
  x_n]/Δ = f + (Δ/2)(f f' + ½σ² f'') + O(Δ²)` and `σ̂² = Var[x_{n+1} | x_n]/Δ = σ²(1 + f' Δ) +
  O(Δ²)` (additive noise): biased at first order in Δ. In the wells, `f' = -2`, so at Δ = 0.1
  `σ̂ ≈ 0.91 σ`.
- `local_linear`: the local-linearisation density of Ozaki (1992) and Shoji & Ozaki (1998)
  (`jaxdyn.train.local_linear_log_density`): the drift is expanded to first order in `x`
  (Jacobian `J`) and, by Itô's formula, to first order in `t` (`M = ½ tr(σσᵀ ∇²f)`) around
  `x_n`, with the diffusion frozen at `x_n`; the resulting linear SDE has the Gaussian
  transition with mean `x + J⁻¹(e^{JΔ} - 1) f + J⁻²(e^{JΔ} - 1 - JΔ) M` and variance `∫₀^Δ
  e^{Js} σσᵀ e^{Jᵀs} ds` (in one dimension by `φ`-functions with a series near `JΔ = 0`; in more
  from matrix exponentials, Van Loan 1978; no inverse of `J` either way). It is exact for linear
  drift with additive noise (Ornstein–Uhlenbeck), and its mean and variance agree with the true
  conditional moments through O(Δ²) for additive noise, so its bias is O(Δ²) where Euler's is
  O(Δ). What remains: the skewness of the true transition (not Gaussian), and with
  multiplicative noise (`σ₁ > 0`) the frozen diffusion leaves an O(Δ) bias in `σ̂²`, as in
  Euler.

Evaluation. On a grid over the central `1 - 2q` quantile range of the observed states:
the diffusion's maximum and mean relative error `|σ̂ - σ|/σ`, and the drift's error
relative to its own scale (the drift vanishes at 0 and ±1, so pointwise relative errors are
meaningless): `max|f̂ - f| / max|f|`, `mean|f̂ - f| / mean|f|` and `‖f̂ - f‖₂ / ‖f‖₂`.
Marginals: from the data's own initial states, `num_replicates` sets of paths of the learned
SDE and, with the same Brownian paths, of the true SDE (same solver and step as the data);
at each time of `evaluation.times`, the exact Wasserstein-1 distance between the data's and
the learned SDE's empirical marginals, against the same distance between the data and the
true SDE's paths (the sampling-noise floor). Targets: `σ̂` within
`target.diffusion_max_rel_error`, the drift's relative L2 error within
`target.drift_rel_l2_error`, and at every time `W₁(data, model) ≤ target.marginal_ratio ×
W₁(data, true SDE)` (means over replicates). Also recorded: each density's NLL per transition
of all the data at the learned and at the true drift and diffusion (a learned NLL far below
the truth's says the density is misspecified at this Δ: Euler's is).

The densities live in `jaxdyn.train.transition` (with a note on LAPACK on 2 CPU cores).

References: Ozaki (1992), "A bridge between nonlinear time series models and nonlinear
stochastic dynamical systems: a local linearization approach", Statistica Sinica 2; Shoji &
Ozaki (1998), "Estimation for nonlinear stochastic differential equations by a local
linearization method", Stochastic Analysis and Applications 16; Van Loan (1978), "Computing
integrals involving the matrix exponential", IEEE TAC 23; Florens-Zmirou (1989),
"Approximate discrete-time schemes for statistics of diffusion processes", Statistics 20;
Dietrich et al. (2023), "Learning effective stochastic differential equations from
microscopic simulations: linking stochastic numerics to deep learning", Chaos 33.
"""

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, choice, positive, section
from ..data import double_well_diffusion, double_well_drift, double_well_paths
from ..metrics import wasserstein_1d
from ..models import ACTIVATIONS, MLPField, NeuralSDE, SoftplusField
from ..plotting import Figure
from ..solve import SDE_SOLVERS
from ..train import TRANSITION_DENSITIES, transition_nll
from ._records import failed_rows, loss_figure
from ._registry import register
from ._training import fit_from_config

Field = Callable[[Any, Array, Any], Array]


# --- model ------------------------------------------------------------------------------------


def _interval(values) -> bool:
    return len(values) == 2 and values[0] < values[1]


def _estimators(values) -> bool:
    return 0 < len(values) == len(set(values)) and set(values) <= set(TRANSITION_DENSITIES)


@dataclasses.dataclass
class DoubleWellConfig:
    sigma: float = positive(0.5)  # σ₀
    sigma_x: float = at_least(0.0, 0.0)  # σ₁: σ(x) = √(σ₀² + σ₁² x²)
    num_paths: int = at_least(1000, 2)
    horizon: float = positive(5.0)
    obs_dt: float = positive(0.1)
    fine_factor: int = at_least(20, 1)  # the data are integrated with steps obs_dt/fine_factor
    x0_range: list[float] = dataclasses.field(
        default_factory=lambda: [-2.0, 2.0],
        metadata={"check": (_interval, "a list [low, high] with low < high")},
    )
    solver: str = choice("milstein", SDE_SOLVERS)  # for the data and every simulation


@dataclasses.dataclass
class SDEModelConfig:
    width: int = at_least(32, 1)
    depth: int = at_least(2, 0)
    activation: str = choice("tanh", ACTIVATIONS)
    estimators: list[str] = dataclasses.field(
        default_factory=lambda: ["local_linear", "euler"],
        metadata={"check": (_estimators, f"a non-empty list of distinct {TRANSITION_DENSITIES}")},
    )


@dataclasses.dataclass
class SDEEvaluationConfig:
    times: list[float] = dataclasses.field(
        default_factory=lambda: [0.5, 1.0, 2.0, 5.0],
        metadata={"check": (lambda v: len(v) > 0 and min(v) > 0, "a list of times > 0")},
    )
    num_replicates: int = at_least(4, 1)
    grid_points: int = at_least(101, 2)
    quantile: float = dataclasses.field(
        default=0.01, metadata={"check": (lambda v: 0.0 <= v < 0.5, "in [0, 0.5)")}
    )


@dataclasses.dataclass
class SDEFitTargetConfig:
    diffusion_max_rel_error: float = positive(0.05)
    drift_rel_l2_error: float = positive(0.1)
    marginal_ratio: float = positive(1.5)


@dataclasses.dataclass
class SDEFitConfig:
    experiment: str = "sde_fit"
    seed: int = 0
    data: DoubleWellConfig = section(DoubleWellConfig)
    model: SDEModelConfig = section(SDEModelConfig)
    evaluation: SDEEvaluationConfig = section(SDEEvaluationConfig)
    target: SDEFitTargetConfig = section(SDEFitTargetConfig)
    train: TrainConfig = section(TrainConfig, steps=3000, lr=3e-3, schedule="cosine", chunk=500)


# --- experiment -------------------------------------------------------------------------------


def build_sde(cfg: DictConfig, *, key: PRNGKeyArray) -> NeuralSDE:
    """The neural SDE a `sde_fit` config describes (autonomous MLP drift and softplus-MLP
    diagonal diffusion on the 1-D state), simulated like the data. Its solves make a failed
    path NaN (`on_failure="nan"`): the evaluation counts and leaves out such paths."""
    m, d = cfg.model, cfg.data
    drift_key, diffusion_key = jax.random.split(key)
    size = dict(dim=1, width=m.width, depth=m.depth, activation=m.activation)
    drift = MLPField(**size, key=drift_key)
    diffusion = SoftplusField(MLPField(**size, key=diffusion_key))
    return NeuralSDE(
        drift, diffusion, noise="diagonal", solver=d.solver, dt0=d.obs_dt / d.fine_factor,
        batch="vmap", on_failure="nan",
    )  # fmt: skip


def _true_sde(d: DictConfig) -> tuple[Field, Field]:
    sigmas = (d.sigma, d.sigma_x)
    return double_well_drift, lambda t, y, args: double_well_diffusion(t, y, sigmas)


def observation_intervals(cfg: DictConfig) -> int:
    """The number of observation intervals, after checking the config's times (`data.horizon`
    a multiple of `data.obs_dt`, `evaluation.times` within it): `ValueError` naming the key."""
    d, e = cfg.data, cfg.evaluation
    num_obs = round(d.horizon / d.obs_dt)
    if num_obs < 1 or not math.isclose(num_obs * d.obs_dt, d.horizon, rel_tol=1e-6):
        raise ValueError(
            f"data.horizon={d.horizon} must be a positive multiple of data.obs_dt={d.obs_dt}"
        )
    if max(e.times) > d.horizon:
        raise ValueError(f"evaluation.times {list(e.times)} must lie in (0, {d.horizon}]")
    return num_obs


def _field_errors(cfg: DictConfig, models: dict, ys) -> tuple[dict, dict, tuple]:
    """Each model's drift and diffusion errors on the data's central quantile range, its
    curves there, and `(grid, true drift, true diffusion, range)` for the figure."""
    e = cfg.evaluation
    true_drift, true_diffusion = _true_sde(cfg.data)
    low, high = np.quantile(np.asarray(ys).ravel(), [e.quantile, 1.0 - e.quantile])
    grid = jnp.linspace(float(low), float(high), e.grid_points)[:, None]
    on_grid = jax.vmap(lambda field, y: field(0.0, y, None), (None, 0))
    f_true, s_true = on_grid(true_drift, grid)[:, 0], on_grid(true_diffusion, grid)[:, 0]
    curves, errors = {}, {}
    for name, model in models.items():
        f_hat = on_grid(model.drift, grid)[:, 0]
        s_hat = on_grid(model.diffusion, grid)[:, 0]
        curves[name] = (np.asarray(f_hat), np.asarray(s_hat))
        f_err, s_rel = jnp.abs(f_hat - f_true), jnp.abs(s_hat - s_true) / s_true
        errors[name] = {
            "diffusion_max_rel_error": float(jnp.max(s_rel)),
            "diffusion_mean_rel_error": float(jnp.mean(s_rel)),
            "drift_max_error_over_max": float(jnp.max(f_err) / jnp.max(jnp.abs(f_true))),
            "drift_mean_error_over_mean": float(jnp.mean(f_err) / jnp.mean(jnp.abs(f_true))),
            "drift_rel_l2_error": float(jnp.linalg.norm(f_err) / jnp.linalg.norm(f_true)),
        }
    return errors, curves, (np.asarray(grid[:, 0]), f_true, s_true, (float(low), float(high)))


@eqx.filter_jit
def _marginal_w1(observed, paths, index):
    """W₁ between the data's and the paths' marginals at every evaluation time."""
    return jax.vmap(wasserstein_1d, (1, 1))(observed, paths[:, index, 0])


def _marginals(cfg, models, ys, x0, ts, simulate_true, index, *, key) -> dict:
    """From the data's `x0`, `num_replicates` sets of paths of the true SDE (the noise floor)
    and of each model on the same Brownian paths, and the mean W₁ of each to the data at the
    evaluation times. A failed (NaN) model path is counted and left out of its W₁."""
    replicate_keys = jax.random.split(key, cfg.evaluation.num_replicates)
    index = jnp.asarray(index)
    observed = ys[:, index, 0]
    floor_runs = [simulate_true(k) for k in replicate_keys]
    out = {"floor": np.mean([_marginal_w1(observed, p, index) for p in floor_runs], axis=0),
           "true_run": floor_runs[0], "runs": {}, "w1": {}, "failed": {}}  # fmt: skip
    simulate_model = eqx.filter_jit(lambda model, key: model(ts, x0, key=key))
    for name, model in models.items():
        runs = [np.asarray(simulate_model(model, k)) for k in replicate_keys]
        failed = [failed_rows(p) for p in runs]
        if any(f.all() for f in failed):
            raise RuntimeError(f"sde_fit: every simulated path of the {name} model failed")
        out["runs"][name] = runs
        out["w1"][name] = np.mean(
            [_marginal_w1(observed, p[~f], index) for p, f in zip(runs, failed, strict=True)], 0
        )
        out["failed"][name] = int(sum(f.sum() for f in failed))
    return out


@register("sde_fit", SDEFitConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Drift and diffusion of a stochastic double well from paths, by transition likelihood."""
    d = cfg.data
    names, num_obs = list(cfg.model.estimators), observation_intervals(cfg)
    ts = jnp.linspace(0.0, d.horizon, num_obs + 1)
    data_key, x0_key, model_key, train_key, eval_key = jax.random.split(jax.random.key(cfg.seed), 5)
    x0 = jax.random.uniform(x0_key, (d.num_paths, 1), minval=d.x0_range[0], maxval=d.x0_range[1])
    simulate_true = eqx.filter_jit(
        lambda key: double_well_paths(x0, ts, key=key, sigma=d.sigma, sigma_x=d.sigma_x,
                                      dt0=d.obs_dt / d.fine_factor, solver=d.solver)
    )  # fmt: skip
    ys = simulate_true(data_key)  # (paths, time, 1)
    # Minibatches are whole paths (a cheap draw among num_paths; the transitions of a path
    # enter the likelihood independently, so this is an unbiased estimate of its gradient).
    paths = (jnp.broadcast_to(ts[:-1], ys.shape[:1] + ts[:-1].shape), ys[:, :-1], ys[:, 1:])
    transitions = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), paths)

    sde = build_sde(cfg, key=model_key)  # the same initialisation for every estimator
    result = fit_from_config(_loss_fn(d.obs_dt, transitions=False), dict.fromkeys(names, sde),
                             paths, cfg.train, key=train_key, run_dir=run_dir, resume=resume,
                             has_aux=True)  # fmt: skip
    models = {name: result.model[name] for name in names}

    errors, curves, (grid, f_true, s_true, limits) = _field_errors(cfg, models, ys)
    index = sorted({min(max(round(t / d.obs_dt), 1), num_obs) for t in cfg.evaluation.times})
    marginals = _marginals(cfg, models, ys, x0, ts, simulate_true, index, key=eval_key)
    full_nll = eqx.filter_jit(_loss_fn(d.obs_dt, transitions=True))
    nll = jax.tree.map(float, full_nll(models, transitions, None)[1])
    truth = NeuralSDE(*_true_sde(d))
    nll_truth = jax.tree.map(float, full_nll(dict.fromkeys(names, truth), transitions, None)[1])

    times = [round(i * d.obs_dt, 9) for i in index]
    _fields_figure(run_dir, cfg, grid, f_true, s_true, curves, np.asarray(ys).ravel())
    _marginals_figure(run_dir, names, ys, marginals["runs"], marginals["true_run"], index, times)
    loss_figure(run_dir, "sde_fit: minibatch NLL per transition, summed over estimators")
    floor = marginals["floor"]
    estimates = {
        name: {
            **errors[name],
            "marginal_w1": _floats(marginals["w1"][name]),
            "marginal_w1_over_floor": _floats(marginals["w1"][name] / floor),
            "failed_paths": marginals["failed"][name],
            "nll": nll[f"nll_{name}"],
            "nll_at_truth": nll_truth[f"nll_{name}"],
        }
        for name in names
    }
    primary, t = estimates[names[0]], cfg.target
    met = bool(
        primary["diffusion_max_rel_error"] <= t.diffusion_max_rel_error
        and primary["drift_rel_l2_error"] <= t.drift_rel_l2_error
        and np.all(marginals["w1"][names[0]] <= t.marginal_ratio * floor)
    )
    return {
        "estimator": names[0],
        "drift_rel_l2_error": primary["drift_rel_l2_error"],
        "diffusion_max_rel_error": primary["diffusion_max_rel_error"],
        "failed_paths": primary["failed_paths"],
        "simulated_paths": int(d.num_paths * cfg.evaluation.num_replicates),
        "target": {k: float(v) for k, v in t.items()},
        "target_met": met,
        "estimates": estimates,
        "marginal_times": times,
        "marginal_w1_floor": _floats(floor),
        "evaluation_range": list(limits),
        "num_transitions": int(transitions[0].shape[0]),
        "system": (
            f"dx = (x - x^3) dt + sqrt({d.sigma}^2 + ({d.sigma_x} x)^2) dW (Ito), "
            f"observed every {d.obs_dt}, simulated with {d.solver} at dt "
            f"{d.obs_dt / d.fine_factor:g}"
        ),
        "steps": result.step,
    }


def _loss_fn(obs_dt: float, *, transitions: bool):
    """The summed NLL per transition of each model in a dict, and each one's (`nll_<name>`),
    of a minibatch of whole paths (`transitions=False`) or of flat transitions."""

    def loss(models: dict[str, NeuralSDE], batch, key):
        if not transitions:
            batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        nll = {
            name: transition_nll(name, m.drift, m.diffusion, batch, obs_dt)
            for name, m in models.items()
        }
        return sum(nll.values()), {f"nll_{name}": value for name, value in nll.items()}

    return loss


def _floats(values) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values)]


# --- figures ----------------------------------------------------------------------------------


def _fields_figure(run_dir: Path, cfg, grid, f_true, s_true, curves, states) -> None:
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    lim = (grid[0] - 0.3, grid[-1] + 0.3)
    wide = np.linspace(*lim, 200)[:, None]
    true_drift, true_diffusion = _true_sde(cfg.data)
    f_wide = np.asarray(jax.vmap(lambda y: true_drift(0.0, y, None))(jnp.asarray(wide)))[:, 0]
    s_wide = np.asarray(jax.vmap(lambda y: true_diffusion(0.0, y, None))(jnp.asarray(wide)))[:, 0]
    for ax, truth, which, label in (
        (axes[0], f_wide, 0, "drift f(x)"),
        (axes[1], s_wide, 1, "diffusion σ(x)"),
    ):
        ax.axvspan(grid[0], grid[-1], color="0.93", lw=0, label="evaluation range")
        ax.plot(wide[:, 0], truth, "k-", lw=2, label="true")
        for i, (name, curve) in enumerate(curves.items()):
            ax.plot(grid, curve[which], f"C{i + 1}--", lw=1.6, label=f"learned ({name})")
        ax.set(xlabel="x", ylabel=label, xlim=lim, title=f"{label}: learned vs true")
    top = axes[1].get_ylim()[1]
    axes[1].set_ylim(0.0, max(top, 1.3 * float(np.max(s_true))))
    density, edges = np.histogram(states, bins=60, range=lim, density=True)
    low, high = axes[0].get_ylim()
    scale = 0.25 * (high - low) / max(density.max(), 1e-12)
    centres = 0.5 * (edges[1:] + edges[:-1])
    axes[0].fill_between(centres, low, low + scale * density, color="C0", alpha=0.2, lw=0,
                         label="observed states (density)")  # fmt: skip
    axes[0].set_ylim(low, high)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "drift_diffusion.png", dpi=120)


def _marginals_figure(run_dir: Path, names, ys, model_runs, true_run, index, times) -> None:
    fig = Figure(figsize=(3.2 * len(index), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(index), sharey=True))
    data = np.asarray(ys[..., 0])
    for ax, i, t in zip(axes, index, times, strict=True):
        lo, hi = np.nanmin(data[:, i]) - 0.3, np.nanmax(data[:, i]) + 0.3
        bins = np.linspace(lo, hi, 40)
        ax.hist(data[:, i], bins=bins, density=True, color="0.6", alpha=0.6, label="data")
        ax.hist(np.asarray(true_run[:, i, 0]), bins=bins, density=True, histtype="step",
                color="k", lw=1.2, label="true SDE (new noise)")  # fmt: skip
        for j, name in enumerate(names):
            learned = np.asarray(model_runs[name][0][:, i, 0])
            ax.hist(learned, bins=bins, density=True, histtype="step", color=f"C{j + 1}",
                    lw=1.4, label=f"learned ({name})")  # fmt: skip
        ax.set(title=f"t = {t:g}", xlabel="x")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    fig.suptitle("marginals: data vs paths of the learned SDE (from the data's x₀)")
    fig.tight_layout()
    fig.savefig(run_dir / "marginals.png", dpi=120)
