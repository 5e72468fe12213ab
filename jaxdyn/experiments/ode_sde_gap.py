"""The ODE–SDE gap of score-based diffusion and the Fokker–Planck regulariser that closes it
(Deveney, Stanczuk, Kreusser, Budd & Schönlieb 2023), on 2-D toys.

For each dataset of `data.datasets` (from `jaxdyn.data.toy2d`) and each weight `w_R` of
`regulariser.weights`, a VP score model (Song et al. 2021) `s_θ(t, x) = −ε_θ(t, x)/σ(t)`, with
`ε_θ` an MLP of `(x, t)`, is trained through `jaxdyn.train.fit` on

    E[|σ(t) s_θ(t, x_t) + z|²]  +  w_R · E[λ_R(t) |R_θ(t, x_t)|²]

(`dsm_loss` and `fokker_planck_loss`; fresh data drawn inside the loss every step; the
regulariser's times are drawn from `[regulariser.t_min, 1]` on the first
`regulariser.batch_size` points). `R_θ` is the score Fokker–Planck residual
(`fokker_planck_residual`), whose size the paper shows bounds the W2 distance between the laws
of the probability-flow ODE and the reverse SDE.

**The weighting** (`regulariser.weighting`). `natural` (the default) is
`λ_R(t) = (σ(t)³/g(t)²)²` (`fokker_planck_weight`): the residual of a learned score is of size
`g²/σ³` (measured on a DSM-trained checkerboard model: `(σ³/g²)² E|R|²` is 0.014–0.024 for all
`t ∈ [10⁻³, 1]` while `E|R|²` itself falls from `3·10⁸` to `2`), so this weighting makes the
regulariser `O(1)` at every time and comparable to the DSM loss. `sigma_power` is
`λ_R = σ(t)^p` (`p = regulariser.weight_power`), the first version's choice: with `p = 2` the
regulariser of a DSM-trained model is `~10`–`30` (its small times dominate), and at `w_R ≥ 1`
every model collapsed to the trivial zero of the residual, `ε_θ ≡ 0` (`s ≡ 0`; DSM loss
`= dim = 2`), whose samplers return `≈ 150 ×` the prior draws (W2² ~ 4·10⁴). The recorded
`eps_sq = E|ε_θ|²` flags such a collapse (near 0). For comparison, the paper's code (Deveney et
al., github.com/teojd/ODESDEGap) trains a log-density network on an OU process with the
unweighted scalar log-density residual at uniform collocation points in a box, plus a boundary
term, for 10⁵ iterations; FP-Diffusion (Lai et al. 2023) fine-tunes a DSM model with the
residual norm weighted by `g(t)²`.

**Sampling and metrics.** `sampling.repeats × sampling.num_samples` prior draws, the same for
every model of a dataset, are pushed through the probability-flow ODE (adaptive dopri5; its
NFE recorded) and the reverse SDE (Euler–Maruyama, `sampling.sde_steps` steps), optionally also
predictor–corrector; they are split into `repeats` sets of `num_samples`, and each set is scored
against its own fresh data set by exact optimal transport (`jaxdyn.metrics.wasserstein2_squared`):
W2² of the ODE and of the SDE samples to the data, the ODE–SDE W2² between the two sample
sets, and the data–data floor (two fresh data sets of the same size: the metric's own sampling
bias). Each is reported as the mean over repeats with its standard error, and the paired
difference `W2²(ODE) − W2²(SDE)` likewise. Also recorded: the final DSM loss, the Fokker–Planck
regulariser (natural, `σ²`-weighted and unweighted) and `E|ε_θ|²` on a fixed evaluation batch.

The paper's qualitative claims checked (reported per dataset, honestly, whichever way they go):
(1) without the regulariser the SDE samples are markedly closer to the data than the ODE
samples; (2) the ODE–SDE gap shrinks as `w_R` grows. `target_met` is both claims on every
dataset, with "markedly" meaning `W2²(ODE) ≥ target.markedly × W2²(SDE)` at `w_R = 0` with the
paired difference more than two standard errors above zero, and "shrinks" meaning the ODE–SDE
W2² at the largest `w_R` is below its value at `w_R = 0` by more than two standard errors.

Outputs in the run dir: `results.jsonl` (one row per dataset × weight; `--resume` skips done
rows and resumes an interrupted fit from its checkpoint), `results.csv`, `results.md`,
`samples-<dataset>-w<weight>.npz` (all repeats), `samples.png` (rows: `w_R`; columns: data /
ODE / SDE per dataset; the first repeat), `w2_vs_weight.png` (means ± 2 standard errors).
"""

import csv
import dataclasses
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from omegaconf import DictConfig

from ..config import (
    ConfigError,
    TrainConfig,
    at_least,
    choice,
    distinct_names,
    fraction,
    positive,
    section,
)
from ..data import TOY2D, toy2d
from ..generative import (
    VPSDE,
    dsm_loss,
    fokker_planck_residual,
    sample_predictor_corrector,
    sample_probability_flow,
    sample_reverse_sde,
)
from ..generative.fokker_planck import fokker_planck_loss, fokker_planck_weight
from ..models import ACTIVATIONS, MLPField
from ..plotting import Figure
from ..train import fit, make_optimizer
from ..train.checkpoint import atomic_write
from ._records import append_result, mean_se, start_results, w2_squared
from ._registry import register

# --- config -----------------------------------------------------------------------------------


def _weights(values) -> bool:
    return 0 < len(values) == len(set(values)) and min(values) >= 0


@dataclasses.dataclass
class GapDataConfig:
    datasets: list[str] = distinct_names(["checkerboard", "blobs", "circles"], TOY2D)


@dataclasses.dataclass
class GapSDEConfig:
    beta_min: float = positive(0.1)
    beta_max: float = positive(20.0)
    t_min: float = fraction(1e-3)  # samplers stop here; DSM draws t ~ U[t_min, 1]


@dataclasses.dataclass
class GapModelConfig:
    width: int = at_least(128, 1)
    depth: int = at_least(3, 1)
    # smooth: the regulariser differentiates the network three times
    activation: str = choice("silu", [a for a in ACTIVATIONS if a != "relu"])
    # what the MLP sees as time: t itself, or log σ(t) (resolves the small times)
    time_input: str = choice("t", ("t", "log_sigma"))


@dataclasses.dataclass
class GapRegulariserConfig:
    weights: list[float] = dataclasses.field(
        default_factory=lambda: [0.0, 0.1, 1.0, 10.0],
        metadata={"check": (_weights, "a non-empty list of distinct numbers >= 0")},
    )
    # natural: λ_R = (σ³/g²)² (O(1) at every t); sigma_power: λ_R = σ^weight_power
    weighting: str = choice("natural", ("natural", "sigma_power"))
    t_min: float = fraction(1e-3)  # the regulariser's times t ~ U[t_min, 1]
    weight_power: float = at_least(2.0, 0.0)  # the exponent of weighting=sigma_power
    batch_size: int = at_least(64, 1)  # points per step for the regulariser (the costly term)


@dataclasses.dataclass
class GapSamplingConfig:
    num_samples: int = at_least(2000, 2)  # per repeat (the W2² sample size)
    repeats: int = at_least(3, 1)  # independent sample / data sets, for standard errors
    ode_rtol: float = positive(1e-5)
    ode_atol: float = positive(1e-5)
    sde_steps: int = at_least(1000, 1)
    predictor_corrector: bool = False
    pc_steps: int = at_least(500, 1)
    pc_snr: float = positive(0.16)


@dataclasses.dataclass
class GapTargetConfig:
    markedly: float = positive(1.5)  # W2²(ODE) >= markedly × W2²(SDE) at w_R = 0


@dataclasses.dataclass
class OdeSdeGapConfig:
    experiment: str = "ode_sde_gap"
    seed: int = 0
    data: GapDataConfig = section(GapDataConfig)
    sde: GapSDEConfig = section(GapSDEConfig)
    model: GapModelConfig = section(GapModelConfig)
    regulariser: GapRegulariserConfig = section(GapRegulariserConfig)
    sampling: GapSamplingConfig = section(GapSamplingConfig)
    target: GapTargetConfig = section(GapTargetConfig)
    train: TrainConfig = section(
        TrainConfig, steps=3000, batch_size=256, lr=2e-3, schedule="cosine", chunk=500
    )


# --- model and losses -------------------------------------------------------------------------


class NoiseScore(eqx.Module):
    """`s(t, x) = −ε(t, x)/σ(t)`: the score from a noise predictor `ε` (an MLP of `(x, τ)`, with
    `τ = t` or `τ = log σ(t)` by `time_input`), so that the DSM residual `σ s + z = z − ε` is
    `O(1)` at every `t` (Ho et al. 2020)."""

    net: MLPField
    sde: VPSDE
    time_input: str = eqx.field(static=True, default="t")

    def eps(self, t: Array, x: Array) -> Array:
        """The noise predictor `ε(t, x)`."""
        tau = t if self.time_input == "t" else jnp.log(self.sde.std(t))
        return self.net(tau, x)

    def __call__(self, t: Array, x: Array, args=None) -> Array:
        return -self.eps(t, x) / self.sde.std(t)


def build_score(cfg: DictConfig, key: PRNGKeyArray) -> NoiseScore:
    """The score model an `ode_sde_gap` config describes."""
    m, s = cfg.model, cfg.sde
    return _init_score(m.width, m.depth, m.activation, m.time_input, s.beta_min, s.beta_max, key)


@eqx.filter_jit  # one compiled initialiser, not one small program per eager operation
def _init_score(width, depth, activation, time_input, beta_min, beta_max, key) -> NoiseScore:
    net = MLPField(dim=2, width=width, depth=depth, activation=activation, time=True, key=key)
    return NoiseScore(net, VPSDE(beta_min, beta_max), time_input)


_draw = eqx.filter_jit(toy2d)  # `name` and `n` static: one program per (dataset, size)


def _fp_weight(cfg: DictConfig, sde: VPSDE):
    """`λ_R(t)` of `regulariser.weighting`."""
    if cfg.regulariser.weighting == "natural":
        return fokker_planck_weight(sde)
    power = cfg.regulariser.weight_power
    return lambda t: sde.std(t) ** power


def _loss_fn(cfg: DictConfig, dataset: str, weight: float):
    """`DSM + w_R · FP` on fresh data; the FP term on the first `regulariser.batch_size` points
    (with `w_R = 0` it is not computed: plain DSM training; it is evaluated after training)."""
    r, s = cfg.regulariser, cfg.sde

    def loss(model: NoiseScore, batch, key):
        k_data, k_dsm, k_fp = jax.random.split(key, 3)
        x0 = toy2d(dataset, cfg.train.batch_size, key=k_data)
        dsm = jnp.mean(dsm_loss(model, model.sde, x0, key=k_dsm, t_min=s.t_min))
        if weight == 0:
            return dsm, {"dsm": dsm}
        fp = jnp.mean(fokker_planck_loss(
            model, model.sde, x0[: r.batch_size], key=k_fp, t_min=r.t_min,
            weight=_fp_weight(cfg, model.sde),
        ))  # fmt: skip
        return dsm + weight * fp, {"dsm": dsm, "fp": fp}

    return loss


@eqx.filter_jit
def _evaluate(model: NoiseScore, x0: Array, key: PRNGKeyArray, t_min: float, fp_t_min: float,
              power: float) -> dict:  # fmt: skip
    """DSM loss, `E|ε|²`, and the FP regulariser under each weighting, from one set of draws."""
    sde = model.sde
    k_dsm, k_t, k_x = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (x0.shape[0],), dtype=x0.dtype, minval=fp_t_min, maxval=1.0)
    xt, _ = sde.marginal_sample(t, x0, key=k_x)
    residual = jax.vmap(lambda t, x: fokker_planck_residual(model, sde, t, x))(t, xt)
    squared = jnp.sum(residual**2, axis=1)
    eps = jax.vmap(model.eps)(t, xt)
    return {
        "dsm": jnp.mean(dsm_loss(model, sde, x0, key=k_dsm, t_min=t_min)),
        "fp_natural": jnp.mean(jax.vmap(fokker_planck_weight(sde))(t) * squared),
        "fp_sigma_power": jnp.mean(sde.std(t) ** power * squared),
        "fp_unweighted": jnp.mean(squared),
        "eps_sq": jnp.mean(jnp.sum(eps**2, axis=1)),
    }


def _sample_ode(model, x1, t_min, rtol, atol):
    return sample_probability_flow(model, model.sde, x1, t_min=t_min, rtol=rtol, atol=atol)


def _sample_sde(model, x1, key, t_min, dt0):  # not jitted: sdeint needs a concrete grid
    return sample_reverse_sde(model, model.sde, x1, key=key, t_min=t_min, dt0=dt0)


@eqx.filter_jit
def _sample_pc(model, x1, key, t_min, dt0, snr):
    return sample_predictor_corrector(model, model.sde, x1, key=key, t_min=t_min, dt0=dt0, snr=snr)


# --- the experiment ---------------------------------------------------------------------------


def _tag(weight: float) -> str:
    return f"{weight:g}"


def _check(cfg: DictConfig) -> None:
    """What the schema cannot say: `β_min <= β_max`, and the regulariser's points are part of
    a fresh training batch of `train.batch_size`."""
    s, r, t = cfg.sde, cfg.regulariser, cfg.train
    if s.beta_max < s.beta_min:
        raise ConfigError(f"sde.beta_max={s.beta_max} must be >= sde.beta_min={s.beta_min}")
    if t.batch_size is None:
        raise ConfigError("train.batch_size must be a number: every step draws a fresh batch")
    if r.batch_size > t.batch_size:
        raise ConfigError(
            f"regulariser.batch_size={r.batch_size} must be <= train.batch_size={t.batch_size}"
        )


@register("ode_sde_gap", OdeSdeGapConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """W2² of probability-flow ODE vs reverse-SDE samples to the data, and between them, for
    VP score models trained with the Fokker–Planck regulariser at several weights."""
    t = cfg.train
    weights = sorted(float(w) for w in cfg.regulariser.weights)
    optimizer = make_optimizer(t.optimizer, t.lr, schedule=t.schedule, steps=t.steps)
    results_path, done = start_results(run_dir, ("dataset", "weight"), resume=resume)
    for i, dataset in enumerate(cfg.data.datasets):
        todo = [(j, w) for j, w in enumerate(weights) if (dataset, w) not in done]
        if not todo:
            continue
        data_key = jax.random.fold_in(jax.random.key(cfg.seed), i)
        sets = _evaluation_sets(cfg, dataset, data_key)
        for j, weight in todo:
            print(f"[ode_sde_gap] {dataset}, w_R = {weight:g}", flush=True)
            start = time.perf_counter()
            model_key, train_key = jax.random.split(jax.random.fold_in(data_key, 100 + j))
            result = fit(
                _loss_fn(cfg, dataset, weight), build_score(cfg, model_key), jnp.zeros((1,)),
                optimizer, steps=t.steps, batch_size=None, key=train_key, chunk=t.chunk,
                has_aux=True, run_dir=run_dir / "fits" / f"{dataset}-w{_tag(weight)}",
                checkpoint_every=t.checkpoint_every, resume=resume,
            )  # fmt: skip
            train_seconds = time.perf_counter() - start
            scores, samples = _evaluate_model(cfg, result.model, sets)
            row = {"dataset": dataset, "weight": weight, **scores}
            row |= {
                "final_loss": float(result.losses[-1]) if result.losses.size else None,
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - start,
                "repeats": row.pop("repeats"),
            }
            numbers = [f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)]
            print("[ode_sde_gap] " + ", ".join(numbers), flush=True)
            atomic_write(run_dir / f"samples-{dataset}-w{_tag(weight)}.npz",
                         lambda f, samples=samples: np.savez(f, **samples))  # fmt: skip
            done[(dataset, weight)] = row
            append_result(results_path, row)
    return _report(cfg, run_dir, weights, done)


def _evaluation_sets(cfg: DictConfig, dataset: str, data_key: PRNGKeyArray) -> dict:
    """One dataset's draws, the same for every weight: per repeat the data the samples are
    scored on (`references`, `(repeats, n, 2)`) and the data-vs-data `floors`; a fixed batch
    for the losses (`eval_batch`, `eval_key`); the prior draws `x1` and the samplers' key."""
    reps, n = cfg.sampling.repeats, cfg.sampling.num_samples
    k_ref, k_floor, k_eval, k_prior, k_noise = jax.random.split(data_key, 5)
    references = np.asarray(_draw(dataset, reps * n, key=k_ref)).reshape(reps, n, 2)
    floor_sets = np.asarray(_draw(dataset, reps * n, key=k_floor)).reshape(reps, n, 2)
    return {
        "references": references,
        "floors": [w2_squared(a, b) for a, b in zip(floor_sets, references, strict=True)],
        "eval_batch": _draw(dataset, 512, key=k_eval),
        "eval_key": k_eval,
        "x1": jax.random.normal(k_prior, (reps * n, 2)),  # the same prior draws for every model
        "noise_key": k_noise,
    }


def _evaluate_model(cfg: DictConfig, model: NoiseScore, sets: dict) -> tuple[dict, dict]:
    """Losses on the evaluation batch, and W2² (mean, standard error, per repeat) of each
    sampler to the data and of ODE to SDE. Returns `(scores, samples)`."""
    s, r, p = cfg.sde, cfg.regulariser, cfg.sampling
    x1, key, references = sets["x1"], sets["noise_key"], sets["references"]
    evaluation = _evaluate(model, sets["eval_batch"], sets["eval_key"], s.t_min, r.t_min,
                           r.weight_power)  # fmt: skip
    ode = _sample_ode(model, x1, s.t_min, p.ode_rtol, p.ode_atol)
    x_sde = _sample_sde(model, x1, key, s.t_min, (1.0 - s.t_min) / p.sde_steps).value
    samples = {"ode": np.asarray(ode.value), "sde": np.asarray(x_sde)}
    if p.predictor_corrector:
        x_pc = _sample_pc(model, x1, key, s.t_min, (1.0 - s.t_min) / p.pc_steps, p.pc_snr).value
        samples["pc"] = np.asarray(x_pc)
    by_repeat = {k: v.reshape(references.shape) for k, v in samples.items()}
    repeats = {f"w2_{k}": [w2_squared(x, y) for x, y in zip(v, references, strict=True)]
               for k, v in by_repeat.items()}  # fmt: skip
    repeats["w2_ode_sde"] = [
        w2_squared(x, y) for x, y in zip(by_repeat["ode"], by_repeat["sde"], strict=True)
    ]
    repeats["w2_floor"] = sets["floors"]
    repeats["ode_minus_sde"] = list(np.subtract(repeats["w2_ode"], repeats["w2_sde"]))
    scores = {}
    for name, values in repeats.items():
        stats = mean_se(values)
        scores[name], scores[f"{name}_se"] = stats["mean"], stats["se"]
    scores |= {
        "ode_nfe": int(ode.stats.num_fevals),
        **{k: float(v) for k, v in evaluation.items()},
        "repeats": {k: [float(x) for x in v] for k, v in repeats.items()},
    }
    return scores, samples | {"data": references[0]}  # the first data set: for the figure


def _report(cfg: DictConfig, run_dir: Path, weights: list[float], done: dict) -> dict:
    """Tables, figures, the paper's claims per dataset, and the summary."""
    p = cfg.sampling
    rows = [done[(ds, w)] for ds in cfg.data.datasets for w in weights]
    _write_table(run_dir, rows)
    _samples_figure(run_dir, cfg, weights)
    _w2_figure(run_dir, cfg, weights, done)
    claims = _claims(cfg, weights, done)
    table = _markdown(rows)
    (run_dir / "results.md").write_text(
        "# ODE–SDE gap (VP score models, DSM + w_R · FP)\n\nW2² by exact OT between sets of "
        f"{p.num_samples} samples; mean ± standard error over {p.repeats} independent sample "
        "and data sets; floor: two fresh data sets.\n\n" + table
    )
    return {
        "datasets": list(cfg.data.datasets),
        "weights": weights,
        "results": rows,
        "table_markdown": table,
        "claims": claims,
        "target": (
            f"(1) at w_R = 0, W2²(ODE) >= {cfg.target.markedly} x W2²(SDE) (difference > 2 s.e.)"
            " and (2) the ODE-SDE W2² at the largest w_R below its value at w_R = 0 by > 2 s.e.,"
            " on every dataset"
        ),
        "target_met": bool(
            all(c["sde_markedly_closer_at_0"] and c["gap_shrinks"] for c in claims.values())
        ),  # fmt: skip
        "steps": cfg.train.steps,
    }


def _se(row: dict, key: str) -> float:
    return row[f"{key}_se"] or 0.0


def _claims(cfg: DictConfig, weights: list[float], done: dict) -> dict:
    claims = {}
    for dataset in cfg.data.datasets:
        rows = [done[(dataset, w)] for w in weights]
        first, last = rows[0], rows[-1]
        gaps = [row["w2_ode_sde"] for row in rows]
        gap_drop = first["w2_ode_sde"] - last["w2_ode_sde"]
        gap_drop_se = np.hypot(_se(first, "w2_ode_sde"), _se(last, "w2_ode_sde"))
        claims[dataset] = {
            "ode_over_sde_at_0": first["w2_ode"] / first["w2_sde"],
            "ode_minus_sde_at_0": first["ode_minus_sde"],
            "ode_minus_sde_se_at_0": first["ode_minus_sde_se"],
            "sde_closer_at_0": bool(
                first["ode_minus_sde"] > 2 * _se(first, "ode_minus_sde")
            ),  # fmt: skip
            "sde_markedly_closer_at_0": bool(
                weights[0] == 0
                and first["w2_ode"] >= cfg.target.markedly * first["w2_sde"]
                and first["ode_minus_sde"] > 2 * _se(first, "ode_minus_sde")
            ),
            "gap_above_floor_at_0": bool(
                first["w2_ode_sde"] - first["w2_floor"]
                > 2 * np.hypot(_se(first, "w2_ode_sde"), _se(first, "w2_floor"))
            ),
            "gap_shrinks": bool(len(rows) > 1 and gap_drop > 2 * gap_drop_se),
            "gap_monotone": bool(all(b <= a for a, b in zip(gaps, gaps[1:], strict=False))),
            "ode_improves": bool(last["w2_ode"] < first["w2_ode"]),
            "sde_degrades": bool(last["w2_sde"] > first["w2_sde"]),
            "collapsed_weights": [
                w for w, row in zip(weights, rows, strict=True) if row["eps_sq"] < 0.05
            ],  # fmt: skip
        }
    return claims


# --- records and figures ----------------------------------------------------------------------

_METRICS = ("w2_ode", "w2_sde", "w2_pc", "w2_ode_sde", "w2_floor", "ode_minus_sde")
_COLUMNS = ("dataset", "weight", *(c for m in _METRICS for c in (m, f"{m}_se")), "ode_nfe",
            "dsm", "eps_sq", "fp_natural", "fp_sigma_power", "fp_unweighted",
            "train_seconds")  # fmt: skip


def _write_table(run_dir: Path, rows: list[dict]) -> None:
    columns = [c for c in _COLUMNS if any(c in row for row in rows)]
    with open(run_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _pm(row: dict, key: str) -> str:
    se = row.get(f"{key}_se")
    return f"{row[key]:.4f}" + ("" if se is None else f" ± {se:.4f}")


def _markdown(rows: list[dict]) -> str:
    pc = any("w2_pc" in row for row in rows)
    head = ["dataset", "w_R", "W2² ODE", "W2² SDE"] + (["W2² PC"] if pc else []) + [
        "ODE − SDE", "W2² ODE–SDE", "floor", "ODE NFE", "DSM", "E|ε|²", "FP (natural)",
        "FP (σ^p)", "FP (unweighted)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["dataset"], f"{row['weight']:g}", _pm(row, "w2_ode"), _pm(row, "w2_sde")]
        cells += [_pm(row, "w2_pc")] if pc else []
        cells += [_pm(row, "ode_minus_sde"), _pm(row, "w2_ode_sde"), _pm(row, "w2_floor"),
                  str(row["ode_nfe"]), f"{row['dsm']:.4f}", f"{row['eps_sq']:.3f}",
                  f"{row['fp_natural']:.3g}", f"{row['fp_sigma_power']:.3g}",
                  f"{row['fp_unweighted']:.3g}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _samples_figure(run_dir: Path, cfg: DictConfig, weights: list[float]) -> None:
    datasets = list(cfg.data.datasets)
    rows, cols = len(weights), 3 * len(datasets)
    fig = Figure(figsize=(1.7 * cols, 1.8 * rows + 0.4))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    n = cfg.sampling.num_samples
    for i, dataset in enumerate(datasets):
        for j, weight in enumerate(weights):
            with np.load(run_dir / f"samples-{dataset}-w{_tag(weight)}.npz") as f:
                panels = (("data", f["data"]), ("ODE", f["ode"][:n]), ("SDE", f["sde"][:n]))
            for k, (label, x) in enumerate(panels):
                ax = axes[j, 3 * i + k]
                ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.5, color=f"C{k}", rasterized=True)
                ax.set(xlim=(-5, 5), ylim=(-5, 5), xticks=[], yticks=[], aspect="equal")
                if j == 0:
                    ax.set_title(f"{dataset}: {label}", fontsize=8)
                if i == k == 0:
                    ax.set_ylabel(f"w_R = {weight:g}", fontsize=8)
    fig.suptitle("VP score models trained with DSM + w_R · FP: data / probability-flow ODE / "
                 "reverse SDE", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(run_dir / "samples.png", dpi=110)


def _w2_figure(run_dir: Path, cfg: DictConfig, weights: list[float], done: dict) -> None:
    datasets = list(cfg.data.datasets)
    fig = Figure(figsize=(4.2 * len(datasets), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    for ax, dataset in zip(axes, datasets, strict=True):
        rows = [done[(dataset, w)] for w in weights]
        for key, label, style in (("w2_ode", "ODE vs data", "C0o-"),
                                  ("w2_sde", "SDE vs data", "C1s-"),
                                  ("w2_pc", "PC vs data", "C3^-"),
                                  ("w2_ode_sde", "ODE vs SDE", "C2d--")):  # fmt: skip
            if key in rows[0]:
                ax.errorbar(weights, [row[key] for row in rows], fmt=style, label=label,
                            yerr=[2 * _se(row, key) for row in rows], capsize=2)  # fmt: skip
        ax.axhline(rows[0]["w2_floor"], color="0.5", ls=":", label="data vs data (floor)")
        linthresh = min([w for w in weights if w > 0] or [1.0])
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.3 * linthresh, 1.5 * max(max(weights), linthresh))
        ax.set_yscale("log")
        ax.set(xlabel="w_R", ylabel="W2²", title=dataset)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "w2_vs_weight.png", dpi=120)
