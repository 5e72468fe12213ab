"""Two-dimensional generative dynamics: stochastic interpolants from a standard normal to the
toy distributions, sampled by their transport ODE and scored by exact likelihood and W2².

Data. `jaxdyn.data.toy2d`: `checkerboard` (uniform on the dark squares of `[-4, 4]²`, entropy
`log 32 ≈ 3.466` nats), `eight_gaussians`, `moons`, `circles`. Every training step draws a
fresh batch of data `x1` and of base noise `x0 ~ N(0, I)` from its step key (independent
coupling); nothing is held fixed.

Interpolants (Albergo, Boffi & Vanden-Eijnden 2023, `jaxdyn.generative`), `x_t = α x0 + β x1 +
γ z` with `x0 ~ N(0, I)`, by family:

- `linear`: `α = 1 − t`, `β = t`, with `interpolant.linear_gamma` (default `zero`: flow
  matching / rectified flow, Lipman et al. 2023; Liu et al. 2023);
- `trigonometric`: `α = cos(πt/2)`, `β = sin(πt/2)`, with `interpolant.trigonometric_gamma`
  (default `quadratic`, `γ = √a t(1 − t)`: with `zero` it would be the one-sided trigonometric
  interpolant again);
- `encoder_decoder`: `x0` encoded into pure noise `z` at `t = ½`, then decoded into `x1`
  (`γ = sin²(πt)`);
- `one_sided`: the Gaussian base is the latent, `γ = 0`, schedule
  `interpolant.one_sided_schedule` (default `trigonometric`).

The mirror interpolant is not offered: it maps the data to themselves (`x_t = x1 + γ z`,
`ρ0 = ρ1`), so its ODE generates nothing from noise. Every family has `γ(0) = γ(1) = 0`, so
`ρ_0 = N(0, I)` and `ρ_1` is the data whatever `γ`: the transport ODE `dx/dt = b(t, x)` from
`N(0, I)` samples the data and its likelihood is exact by the change of variables. Only the
velocity `b` is learned (SDE sampling would also need a score or denoiser for the families
with `γ > 0`; the results here are ODE-based).

Model. `build_model`: a `jaxdyn.models.MLPField` of `(x, sin(kπt), cos(kπt))_{k ≤ K}` (Fourier
time features), trained with `jaxdyn.train.fit` on the mean of `velocity_loss`
(`|b(t, x_t) − ∂_t x_t|²`, `t ~ U[t_min, 1 − t_min]`), Adam with the `train` schedule.

Evaluation, per (dataset, family):

- ODE samples: `num_samples` base points pushed through the transport ODE by `odeint` (dopri5
  at `evaluation.rtol`/`atol`, one step sequence for the batch, as `sample_ode` does; saved at
  41 times for the trajectories; NFE from its stats);
- W2²: `wasserstein2_squared` (exact OT, POT) between the ODE samples and `num_samples` fresh
  data samples, with the *floor* `W2²` between two independent data sets of the same size (the
  empirical W2² of `n` samples of the same law is not zero: 0.041 for the checkerboard at
  n = 2000, 0.029 at 4000);
- test NLL (nats): `−mean log p(x)` over `num_nll` fresh data points by `log_likelihood`
  (exact divergence, dopri5 at the same tolerances), with its standard error, and the data's
  own entropy where known (checkerboard `log 32`; eight Gaussians by Monte Carlo on the same
  points with the mixture's exact density).

One (dataset, family) pair, `main`, is trained at the target settings (`train`, evaluation
`num_samples`/`num_nll`); every other pair of `datasets × families` at the lighter `survey`
settings. Targets (the main pair, on the checkerboard): NLL ≤ `target.nll` (3.60) and W2² of
ODE samples ≤ `target.w2` (0.05). Figures: `samples.png` (data and ODE samples, every pair),
`trajectories.png` (a few ODE paths from the base to the data, every pair), `loss.png` (the main
pair). Each pair's fit is in `fits/<dataset>-<family>/`; its row is appended to `results.jsonl`
when done (samples in `samples.npz`), and `--resume` skips finished pairs.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from omegaconf import DictConfig

from ..config import ConfigError, TrainConfig, at_least, choice, distinct_names, positive, section
from ..data import CHECKERBOARD_ENTROPY, eight_gaussians_mixture, toy2d
from ..generative import (
    GAMMAS,
    EncoderDecoderInterpolant,
    Interpolant,
    LinearInterpolant,
    OneSidedInterpolant,
    TrigonometricInterpolant,
    log_likelihood,
    standard_normal,
    velocity_loss,
)
from ..generative.interpolants import ONE_SIDED_SCHEDULES
from ..metrics import wasserstein2_squared
from ..models import ACTIVATIONS, MLPField
from ..plotting import Figure, loss_curve
from ..solve import odeint
from ..train import fit, make_optimizer, read_metrics
from ._records import append_result, start_results
from ._registry import register
from ._training import validation_options

DATASETS = ("checkerboard", "eight_gaussians", "moons", "circles")
FAMILIES = ("linear", "trigonometric", "encoder_decoder", "one_sided")


# --- model ------------------------------------------------------------------------------------


def build_model(m: DictConfig, *, key: PRNGKeyArray) -> MLPField:
    """The velocity `b(t, x) = MLP(x, sin(πt), …, sin(Kπt), cos(πt), …, cos(Kπt))` of a
    `model` config section (`ToyModelConfig`), for one 2-D point."""
    return MLPField(dim=2, width=m.width, depth=m.depth, activation=m.activation,
                    time_features=m.time_frequencies, key=key)  # fmt: skip


def _interpolant(family: str, c: DictConfig) -> Interpolant:
    """The interpolant of `family` with the config's `γ` choices (see the module)."""
    if family == "linear":
        return LinearInterpolant(c.linear_gamma, c.gamma_scale)
    if family == "trigonometric":
        return TrigonometricInterpolant(c.trigonometric_gamma, c.gamma_scale)
    if family == "encoder_decoder":
        return EncoderDecoderInterpolant()
    if family == "one_sided":
        return OneSidedInterpolant(c.one_sided_schedule)
    raise ValueError(f"unknown interpolant family {family!r}; expected one of {list(FAMILIES)}")


def _flow_matching_loss(dataset: str, interpolant: Interpolant, batch_size: int, t_min: float):
    """`fit`'s loss: the mean `velocity_loss` on a fresh batch of data and base noise drawn
    from the step key (`batch` is a dummy: nothing is held fixed)."""

    def loss(model, batch, key):
        k_data, k_base, k_loss = jax.random.split(key, 3)
        x1 = toy2d(dataset, batch_size, key=k_data)
        x0 = jax.random.normal(k_base, x1.shape, x1.dtype)
        return jnp.mean(velocity_loss(model, interpolant, x0, x1, key=k_loss, t_min=t_min))

    return loss


# --- evaluation (module-level jits: compiled once, reused by every pair) ----------------------


_toy2d = jax.jit(toy2d, static_argnums=(0, 1))  # one compilation per (name, n), not per op


@eqx.filter_jit
def _ode_paths(model, x0, num_times: int, rtol: float, atol: float):
    """The transport ODE `dx/dt = b(t, x)` from `t = 0` to 1 (dopri5, one step sequence for
    the batch: what `sample_ode` solves), saved at `num_times` equally spaced times, so that
    samples and trajectories come from one solve (and one compilation). Returns
    `(paths (batch, time, 2), num_fevals)`."""
    ts = jnp.linspace(0.0, 1.0, num_times, dtype=x0.dtype)
    sol = odeint(model, x0, ts, solver="dopri5", rtol=rtol, atol=atol, batch="joint")
    return sol.ys, sol.stats.num_fevals


@eqx.filter_jit
def _log_likelihood(model, x, rtol: float, atol: float, on_failure: str = "raise"):
    return log_likelihood(model, x, standard_normal(2).log_prob, rtol=rtol, atol=atol,
                          on_failure=on_failure)  # fmt: skip


class _ValidationNLL(eqx.Module):
    """`{"nll": −mean log p(x)}` on validation points (`fit`'s evaluation); a failed solve
    makes it NaN, never the best."""

    x: Array
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def __call__(self, model, key):
        log_p = _log_likelihood(model, self.x, self.rtol, self.atol, on_failure="nan").value
        return {"nll": -jnp.mean(log_p)}


def _data_entropy(dataset: str, x: Array) -> float | None:
    """The data's differential entropy in nats where known: exact for the checkerboard, a
    Monte Carlo estimate `−mean log p(x)` on the test points for the eight Gaussians."""
    if dataset == "checkerboard":
        return CHECKERBOARD_ENTROPY
    if dataset == "eight_gaussians":
        mixture = eight_gaussians_mixture()
        return float(-jnp.mean(jax.vmap(mixture.log_prob)(jnp.asarray(x, mixture.means.dtype))))
    return None


def evaluate_flow(
    model: MLPField,
    dataset: str,
    key: PRNGKeyArray,
    *,
    num_samples: int,
    num_nll: int,
    rtol: float,
    atol: float,
    floors: dict,
    num_times: int = 41,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """W2² of ODE samples to fresh data (and the data-vs-data floor at that size, cached in
    `floors`), test NLL in nats and the NFE of both solves. Returns `(row, samples, paths)`:
    the samples `(num_samples, 2)` and their paths at `num_times` times."""
    k_base, k_ref, k_ref2, k_test = jax.random.split(key, 4)
    dtype = jnp.result_type(float)
    x0 = jax.random.normal(k_base, (num_samples, 2), dtype)
    paths, nfe = _ode_paths(model, x0, num_times, rtol, atol)
    paths = np.asarray(paths)
    samples = paths[:, -1]
    if not np.all(np.isfinite(samples)):
        raise FloatingPointError(f"{dataset}: the ODE samples are not finite")
    reference = _toy2d(dataset, num_samples, key=k_ref)
    w2 = wasserstein2_squared(samples, reference)
    if (dataset, num_samples) not in floors:
        floors[dataset, num_samples] = wasserstein2_squared(
            reference, _toy2d(dataset, num_samples, key=k_ref2)
        )
    test = _toy2d(dataset, num_nll, key=k_test)
    likelihood = _log_likelihood(model, test, rtol, atol)
    log_p, nll_stats = np.asarray(likelihood.value, dtype=np.float64), likelihood.stats
    entropy = _data_entropy(dataset, test)
    nll = float(-log_p.mean())
    row = {
        "w2": float(w2),
        "w2_floor": float(floors[dataset, num_samples]),
        "num_samples": num_samples,
        "nll": nll,
        "nll_se": float(log_p.std(ddof=1) / np.sqrt(num_nll)),
        "num_nll": num_nll,
        "data_entropy": entropy,
        "nll_minus_entropy": None if entropy is None else nll - entropy,
        "sample_nfe": int(nfe),
        "nll_nfe_mean": float(np.mean(nll_stats.num_fevals)),
    }
    return row, samples, paths


# --- config -----------------------------------------------------------------------------------


@dataclasses.dataclass
class ToyModelConfig:
    width: int = at_least(256, 1)
    depth: int = at_least(3, 1)
    activation: str = choice("silu", ACTIVATIONS)
    time_frequencies: int = at_least(8, 1)  # sin/cos(kπt), k = 1..K


@dataclasses.dataclass
class ToyInterpolantConfig:
    linear_gamma: str = choice("zero", GAMMAS)
    trigonometric_gamma: str = choice("quadratic", GAMMAS)
    gamma_scale: float = positive(1.0)  # a in γ = √(a t(1−t)) or √a t(1−t)
    one_sided_schedule: str = choice("trigonometric", ONE_SIDED_SCHEDULES)
    t_min: float = dataclasses.field(
        default=0.0, metadata={"check": (lambda v: 0.0 <= v < 0.5, "in [0, 0.5)")}
    )


@dataclasses.dataclass
class ToySurveyConfig:
    """Lighter settings for every pair but the main one (same model, optimiser, schedule)."""

    steps: int = at_least(1500, 1)
    batch_size: int = at_least(512, 1)
    lr: float = positive(2e-3)
    num_samples: int = at_least(2000, 2)
    num_nll: int = at_least(1000, 2)


@dataclasses.dataclass
class ToyEvaluationConfig:
    num_samples: int = at_least(5000, 2)  # ODE samples and data samples for W2² (main pair)
    num_nll: int = at_least(2000, 2)  # fresh data points for the test NLL (main pair)
    num_validation: int = at_least(1000, 2)  # validation NLL points (main pair, own key)
    rtol: float = positive(1e-5)  # dopri5 tolerances of sampling and likelihood
    atol: float = positive(1e-5)
    num_trajectories: int = at_least(12, 1)
    plot_points: int = at_least(2000, 1)


@dataclasses.dataclass
class ToyTargetConfig:
    nll: float = positive(3.60)  # nats, on the main pair (checkerboard floor log 32 = 3.466)
    w2: float = positive(0.05)


@dataclasses.dataclass
class GenerativeToy2DConfig:
    experiment: str = "generative_toy2d"
    seed: int = 0
    datasets: list[str] = distinct_names(DATASETS, DATASETS)
    families: list[str] = distinct_names(FAMILIES, FAMILIES)
    main_dataset: str = choice("checkerboard", DATASETS)
    main_family: str = choice("linear", FAMILIES)
    model: ToyModelConfig = section(ToyModelConfig)
    interpolant: ToyInterpolantConfig = section(ToyInterpolantConfig)
    train: TrainConfig = section(
        TrainConfig, steps=30000, batch_size=1024, lr=2e-3, schedule="cosine", chunk=500
    )
    survey: ToySurveyConfig = section(ToySurveyConfig)
    evaluation: ToyEvaluationConfig = section(ToyEvaluationConfig)
    target: ToyTargetConfig = section(ToyTargetConfig)


def _check(cfg: DictConfig) -> None:
    """What the schema cannot say: a batch size, and `t_min > 0` for singular interpolants."""
    if cfg.train.batch_size is None:
        raise ConfigError("train.batch_size must be a number: every step draws a fresh batch")
    c = cfg.interpolant
    families = set(cfg.families) | {cfg.main_family}
    gammas = {"linear": c.linear_gamma, "trigonometric": c.trigonometric_gamma}
    singular = []
    if any(gammas[f] == "brownian" for f in gammas if f in families):
        singular.append("gamma='brownian' (γ̇ infinite at t = 0, 1)")
    if "one_sided" in families and c.one_sided_schedule == "vp":
        singular.append("one_sided_schedule='vp' (α̇ infinite at t = 1)")
    if singular and c.t_min == 0.0:
        raise ConfigError(f"config key 'interpolant.t_min' must be > 0 with {', '.join(singular)}")


# --- the experiment ---------------------------------------------------------------------------


def _selection(cfg: DictConfig, dataset: str, root: PRNGKeyArray) -> dict:
    """`fit`'s validation options for the main pair (the `train` section's, as
    `fit_from_config` maps them): the NLL of `evaluation.num_validation` points drawn from a
    key that neither training nor the test uses; with `train.best_metric` the best step is the
    reported one."""
    key = jax.random.fold_in(jax.random.fold_in(root, 3), DATASETS.index(dataset))
    x = _toy2d(dataset, cfg.evaluation.num_validation, key=key)
    return validation_options(
        cfg.train, _ValidationNLL(x, cfg.evaluation.rtol, cfg.evaluation.atol)
    )


def _pairs(cfg: DictConfig) -> list[tuple[str, str]]:
    """The main pair first, then every other pair of `datasets × families`."""
    main = (cfg.main_dataset, cfg.main_family)
    rest = [(d, f) for d in cfg.datasets for f in cfg.families if (d, f) != main]
    return [main, *rest]


@register("generative_toy2d", GenerativeToy2DConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Interpolant flows on 2-D toys: samples, trajectories, NLL, W2² (checkerboard NLL <= 3.60)."""
    e = cfg.evaluation
    main = (cfg.main_dataset, cfg.main_family)
    root = jax.random.key(cfg.seed)
    init_key = jax.random.fold_in(root, 0)  # one initialisation for every pair
    stages = {
        "main": (cfg.train.steps, cfg.train.batch_size, cfg.train.lr, e.num_samples, e.num_nll),
        "survey": (cfg.survey.steps, cfg.survey.batch_size, cfg.survey.lr,
                   cfg.survey.num_samples, cfg.survey.num_nll),
    }  # fmt: skip
    # One optimiser object per stage, so that `fit` reuses its compilation across pairs.
    optimizers = {
        name: make_optimizer(cfg.train.optimizer, lr, schedule=cfg.train.schedule, steps=steps)
        for name, (steps, _, lr, _, _) in stages.items()
    }

    results_path, done = start_results(run_dir, ("dataset", "family"), resume=resume)
    floors: dict = {}
    for dataset, family in _pairs(cfg):
        if (dataset, family) in done:
            continue
        stage = "main" if (dataset, family) == main else "survey"
        steps, batch_size, _, num_samples, num_nll = stages[stage]
        d_index = DATASETS.index(dataset)
        train_key = jax.random.fold_in(jax.random.fold_in(root, 1), d_index)
        eval_key = jax.random.fold_in(jax.random.fold_in(root, 2), d_index)
        interpolant = _interpolant(family, cfg.interpolant)
        loss = _flow_matching_loss(dataset, interpolant, batch_size, cfg.interpolant.t_min)
        fit_dir = run_dir / "fits" / f"{dataset}-{family}"
        result = fit(
            loss, build_model(cfg.model, key=init_key), jnp.zeros((1,)), optimizers[stage],
            steps=steps, batch_size=None, key=train_key, chunk=cfg.train.chunk, run_dir=fit_dir,
            checkpoint_every=cfg.train.checkpoint_every, resume=resume,
            **(_selection(cfg, dataset, root) if stage == "main" else {}),
        )  # fmt: skip
        model = result.model if result.best_model is None else result.best_model
        row, samples, paths = evaluate_flow(
            model, dataset, eval_key, num_samples=num_samples, num_nll=num_nll, rtol=e.rtol,
            atol=e.atol, floors=floors,
        )  # fmt: skip
        np.savez(fit_dir / "samples.npz", samples=samples[: e.plot_points],
                 paths=paths[: e.num_trajectories])  # fmt: skip
        losses = [r["loss"] for r in read_metrics(fit_dir / "metrics.jsonl")]
        row = {
            "dataset": dataset,
            "family": family,
            "stage": stage,
            "steps": steps,
            "best_step": result.best_step,
            "validation_nll": result.best_value,
            "batch_size": batch_size,
            "final_loss": float(np.mean(losses[-100:])) if losses else None,
            **row,
        }
        done[dataset, family] = row
        append_result(results_path, row)

    pairs = _pairs(cfg)
    rows = {pair: done[pair] for pair in pairs}
    _samples_figure(run_dir, cfg, rows, main)
    _trajectories_figure(run_dir, cfg, rows, main)
    main_losses = [
        r["loss"] for r in read_metrics(run_dir / "fits" / "-".join(main) / "metrics.jsonl")
    ]
    if main_losses:
        loss_curve(np.asarray(main_losses), run_dir / "loss.png",
                   title=f"{main[0]} / {main[1]}: velocity loss")  # fmt: skip
    table = _table(rows)
    (run_dir / "results.md").write_text(
        "# generative_toy2d: ODE samples (dopri5) and exact likelihood\n\n" + table
    )
    best = rows[main]
    t = cfg.target
    return {
        "main": {"dataset": main[0], "family": main[1], **best},
        "target": {"nll": t.nll, "w2": t.w2, "pair": list(main)},
        "nll_met": best["nll"] <= t.nll,
        "w2_met": best["w2"] <= t.w2,
        "target_met": bool(best["nll"] <= t.nll and best["w2"] <= t.w2),
        "results": {f"{d}/{f}": row for (d, f), row in rows.items()},
        "table_markdown": table,
    }


# --- records and figures ----------------------------------------------------------------------


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(rows: dict) -> str:
    lines = [
        "| dataset | family | stage (steps) | NLL (nats) ± se | entropy | W2² | W2² floor (n) | "
        "NFE sample / NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, family), r in rows.items():
        lines.append(
            f"| {dataset} | {family} | {r['stage']} ({r['steps']}) | {_fmt(r['nll'])} ± "
            f"{_fmt(r['nll_se'])} | {_fmt(r['data_entropy'])} | {_fmt(r['w2'], 4)} | "
            f"{_fmt(r['w2_floor'], 4)} ({r['num_samples']}) | {r['sample_nfe']} / "
            f"{r['nll_nfe_mean']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _grid(cfg: DictConfig, main: tuple[str, str]):
    datasets = list(dict.fromkeys([main[0], *cfg.datasets]))
    families = list(dict.fromkeys([main[1], *cfg.families]))
    return datasets, families


_LIMITS = (-4.5, 4.5)  # every toy lies in [-4, 4]² (up to Gaussian tails)


def _samples_figure(run_dir: Path, cfg: DictConfig, rows: dict, main) -> None:
    datasets, families = _grid(cfg, main)
    fig = Figure(figsize=(2.6 * (len(families) + 1), 2.6 * len(datasets)))
    axes = np.asarray(fig.subplots(len(datasets), len(families) + 1, squeeze=False))
    key = jax.random.key(cfg.seed + 1)
    for i, dataset in enumerate(datasets):
        data = np.asarray(
            _toy2d(dataset, cfg.evaluation.plot_points, key=jax.random.fold_in(key, i))
        )
        axes[i, 0].scatter(data[:, 0], data[:, 1], s=0.5, c="0.3", rasterized=True)
        axes[i, 0].set_title(f"{dataset}: data", fontsize=8)
        for j, family in enumerate(families, start=1):
            ax = axes[i, j]
            if (dataset, family) not in rows:
                ax.set_axis_off()
                continue
            r = rows[dataset, family]
            x = np.load(run_dir / "fits" / f"{dataset}-{family}" / "samples.npz")["samples"]
            ax.scatter(x[:, 0], x[:, 1], s=0.5, c="C0" if (dataset, family) != main else "C3",
                       rasterized=True)  # fmt: skip
            title = f"{family}: NLL {r['nll']:.3f}, W2² {r['w2']:.3f}\n"
            ax.set_title(title + f"(floor {r['w2_floor']:.3f}, {r['steps']} steps)", fontsize=7)
    for ax in axes.ravel():
        ax.set(xlim=_LIMITS, ylim=_LIMITS, aspect="equal", xticks=[], yticks=[])
    fig.suptitle("ODE samples (dopri5) from N(0, I); red: the main pair at the target settings")
    fig.tight_layout()
    fig.savefig(run_dir / "samples.png", dpi=110)


def _trajectories_figure(run_dir: Path, cfg: DictConfig, rows: dict, main) -> None:
    datasets, families = _grid(cfg, main)
    fig = Figure(figsize=(2.8 * len(families), 2.8 * len(datasets)))
    axes = np.asarray(fig.subplots(len(datasets), len(families), squeeze=False))
    for i, dataset in enumerate(datasets):
        for j, family in enumerate(families):
            ax = axes[i, j]
            if (dataset, family) not in rows:
                ax.set_axis_off()
                continue
            saved = np.load(run_dir / "fits" / f"{dataset}-{family}" / "samples.npz")
            x, paths = saved["samples"], saved["paths"]
            ax.scatter(x[:, 0], x[:, 1], s=0.3, c="0.75", rasterized=True)
            for k, path in enumerate(paths):
                ax.plot(path[:, 0], path[:, 1], "-", lw=0.8, color=f"C{k % 10}")
                ax.plot(path[0, 0], path[0, 1], "o", ms=2.5, color=f"C{k % 10}")
                ax.plot(path[-1, 0], path[-1, 1], "x", ms=3.5, color=f"C{k % 10}")
            ax.set_title(f"{dataset} / {family}", fontsize=8)
            ax.set(xlim=_LIMITS, ylim=_LIMITS, aspect="equal", xticks=[],
                   yticks=[])  # fmt: skip
    fig.suptitle("transport ODE paths, t = 0 (o, base) to 1 (x, data)")
    fig.tight_layout()
    fig.savefig(run_dir / "trajectories.png", dpi=110)
