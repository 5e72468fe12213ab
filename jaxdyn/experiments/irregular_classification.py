"""Irregular time-series classification with missing data: stable neural SDEs vs baselines.

The robustness experiment of Oh, Lim & Kim (2024), "Stable Neural Stochastic Differential
Equations in Analyzing Irregular Time Series Data", on one UEA set bundled with sktime
(BasicMotions by default): for each missing rate (0%, 30%, 50%, 70%) each series of the train
and test splits loses that fraction of its time steps (`drop_observations`, NaN-filled, the
protocol of Kidger et al. 2020); the continuous-time models read the backward-Hermite cubic
path of the remaining observations with time as a channel, GRU-Δt the remaining observations
with their time gaps. Six models (GRU-Δt, Neural CDE, Neural SDE, Neural LSDE, Neural LNSDE,
Neural GSDE) are trained with cross-entropy on the train split and scored by test accuracy,
over several seeds (each seed draws the dropped steps, the initial weights and the Brownian
paths). Target: the three stable classes lose at most `target_drop` accuracy points from 0%
to 50% missing.

Every training run has the same budget (`train`), hidden size and network sizes. SDE models
are solved by Euler–Maruyama on the sampling grid (`model.steps_per_interval` steps per
sampling interval), trained on one Brownian path per series and step, and tested on the
average of the class probabilities over `model.eval_samples` paths. The CDE uses Euler steps
on the same grid. The models' clock is `data.time_scale` times the loader's `[0, 1]` (the time
channel of the path stays in `[0, 1]`): with the drift bounded by 1, the horizon caps how far
the SDE state can move.

Training builds one optimiser object and one loss function per model for the whole
experiment and passes them to every `fit_from_config` call, so the jitted training chunk
compiles once per model instead of once for each of the (models × rates × seeds) runs. Each run's
`metrics.jsonl` and checkpoint are in `fits/<model>-missing<rate>-seed<seed>/`, and its test
accuracy is appended to `results.jsonl` as soon as it is known; `--resume` skips finished runs.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, choice, distinct_names, positive, section
from ..data import UEA_DATASETS, UEADataset, augment, drop_observations, hermite_coefficients, uea
from ..models.cde import NeuralCDE
from ..models.gru import GRUDeltaT
from ..models.stable_sde import SDE_CLASSIFIERS
from ..plotting import Figure
from ._records import append_result, start_results, summary_stats
from ._registry import register
from ._training import fit_from_config, optimizer_from_config

#: Model keys, in the order of the table, and their display names.
MODELS: dict[str, str] = {
    "gru_dt": "GRU-Δt",
    "neural_cde": "Neural CDE",
    "neural_sde": "Neural SDE",
    "lsde": "Neural LSDE",
    "lnsde": "Neural LNSDE",
    "gsde": "Neural GSDE",
}
STABLE = ("lsde", "lnsde", "gsde")


@dataclasses.dataclass
class IrregularDataConfig:
    name: str = choice("BasicMotions", tuple(UEA_DATASETS))
    stride: int = at_least(1, 1)  # keep every stride-th time step (1: the full series)
    missing_rates: list[float] = dataclasses.field(
        default_factory=lambda: [0.0, 0.3, 0.5, 0.7],
        metadata={
            "check": (
                lambda v: len(v) > 0 and all(0 <= r < 1 for r in v) and list(v) == sorted(set(v)),
                "an increasing list of distinct rates in [0, 1)",
            )
        },
    )
    # The models' clock: t = time_scale · (loader time in [0, 1]). The time channel of the
    # path stays in [0, 1].
    time_scale: float = positive(1.0)


@dataclasses.dataclass
class IrregularModelConfig:
    models: list[str] = distinct_names(MODELS, MODELS)
    hidden: int = at_least(32, 1)  # state size of every model
    width: int = at_least(32, 1)  # hidden layers of the drift / diffusion / CDE field
    depth: int = at_least(1, 0)
    steps_per_interval: int = at_least(1, 1)  # Euler steps per sampling interval
    eval_samples: int = at_least(4, 1)  # Brownian paths averaged at test time


@dataclasses.dataclass
class IrregularClassificationConfig:
    experiment: str = "irregular_classification"
    seed: int = 0
    num_seeds: int = at_least(3, 1)  # seeds seed, seed + 1, …
    target_drop: float = at_least(5.0, 0.0)  # accuracy points lost from 0% to 50% missing
    data: IrregularDataConfig = section(IrregularDataConfig)
    model: IrregularModelConfig = section(IrregularModelConfig)
    train: TrainConfig = section(TrainConfig)


# --- models, inputs, losses ----------------------------------------------------------------


def build_model(
    name: str, channels: int, classes: int, cfg: DictConfig, dt0: float, *, key: PRNGKeyArray
):
    """The model `name` for series with `channels` value channels (time is added as a path
    channel for the continuous-time models)."""
    m = cfg.model
    if name == "gru_dt":
        return GRUDeltaT(channels=channels, hidden=m.hidden, out=classes, key=key)
    sizes = dict(channels=channels + 1, hidden=m.hidden, out=classes, width=m.width,
                 depth=m.depth, dt0=dt0, key=key)  # fmt: skip
    if name == "neural_cde":
        return NeuralCDE(solver="euler", **sizes)
    return SDE_CLASSIFIERS[name](**sizes)


def _logits_fn(name: str, ts: np.ndarray):
    """`logits(model, inputs, key)` for a batch; `ts` (the models' grid) is closed over, as
    the SDE solves build their step grid from it at trace time."""
    ts_array = jnp.asarray(ts)

    def logits(model, inputs, key):
        if name == "gru_dt":
            return jax.vmap(lambda v: model(ts_array, v))(inputs)
        if name == "neural_cde":
            return jax.vmap(lambda c: model(ts_array, c))(inputs)
        keys = jax.random.split(key, inputs[0].shape[0])
        return jax.vmap(lambda c, k: model(ts_array, c, key=k))(inputs, keys)

    return logits


def _loss_fn(logits):
    def loss(model, batch, key):
        inputs, labels = batch
        log_p = jax.nn.log_softmax(logits(model, inputs, key))
        nll = -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))
        accuracy = jnp.mean(jnp.argmax(log_p, axis=1) == labels)
        return nll, {"train_accuracy": accuracy}

    return loss


def _accuracy_fn(logits, samples: int, stochastic: bool):
    @eqx.filter_jit
    def accuracy(model, inputs, labels, *, key):
        keys = jax.random.split(key, samples if stochastic else 1)
        probs = jnp.mean(jax.vmap(lambda k: jax.nn.softmax(logits(model, inputs, k)))(keys), 0)
        return jnp.mean(jnp.argmax(probs, axis=1) == labels)

    return accuracy


def irregular_inputs(
    data: UEADataset, rate: float, time_scale: float, *, key: PRNGKeyArray
) -> dict:
    """Drop a fraction `rate` of each series' time steps (train and test independently) and
    build both kinds of input: `values` (NaN-filled, for GRU-Δt) and the Hermite
    `coefficients` of `[t, values]` on the models' clock (for the CDE and SDEs)."""
    ts_model = data.ts * time_scale
    out = {}
    for split, x, k in (("train", data.x_train, 0), ("test", data.x_test, 1)):
        values = jnp.asarray(x)
        if rate > 0:
            values = drop_observations(values, rate, key=jax.random.fold_in(key, k))
        coefficients = hermite_coefficients(jnp.asarray(ts_model), augment(data.ts, values))
        out[split] = {"values": values, "coefficients": coefficients}
    return out


# --- records ---------------------------------------------------------------------------------


def _table(accuracy: dict, rates: list[float], drops: dict) -> str:
    header = ["model"] + [f"{round(100 * r)}% missing" for r in rates] + ["drop 0→50% (pts)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per_rate in accuracy.items():
        cells = [MODELS[name]]
        for r in rates:
            s = per_rate[f"{r:g}"]
            cells.append(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
        drop = drops.get(name)
        cells.append("—" if drop is None else f"{drop:+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(accuracy: dict, rates: list[float], path: Path, title: str) -> None:
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    x = 100 * np.asarray(rates)
    for i, (name, per_rate) in enumerate(accuracy.items()):
        mean = np.array([100 * per_rate[f"{r:g}"]["mean"] for r in rates])
        std = np.array([100 * per_rate[f"{r:g}"]["std"] for r in rates])
        style = "-" if name in STABLE else "--"
        ax.errorbar(x + (i - 2.5) * 0.6, mean, yerr=std, fmt="o" + style, capsize=3, ms=4,
                    lw=1.3, label=MODELS[name])  # fmt: skip
    ax.set(xlabel="missing observations (%)", ylabel="test accuracy (%)", title=title)
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- the experiment --------------------------------------------------------------------------


def _train_and_score(cfg, name, data, inputs, shared, run_dir, resume, *, key) -> dict:
    """Train model `name` on the train split of `inputs`; its test and train accuracy."""
    model_key, train_key, eval_key = jax.random.split(key, 3)
    field = "values" if name == "gru_dt" else "coefficients"
    model = build_model(name, data.channels, data.num_classes, cfg, shared["dt0"], key=model_key)
    train_data = (inputs["train"][field], jnp.asarray(data.y_train))
    result = fit_from_config(shared["losses"][name], model, train_data, cfg.train,
                             key=train_key, run_dir=run_dir, resume=resume, has_aux=True,
                             optimizer=shared["optimizer"])  # fmt: skip
    accuracy = shared["accuracy"][name]
    test = accuracy(result.model, inputs["test"][field], jnp.asarray(data.y_test), key=eval_key)
    train = accuracy(result.model, *train_data, key=eval_key)
    return {
        "test_accuracy": float(test),
        "train_accuracy": float(train),
        "final_loss": float(result.losses[-1]) if result.losses.size else None,
    }


@register("irregular_classification", IrregularClassificationConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """UEA classification at 0-70% missing: GRU-Δt, CDE, SDE, LSDE, LNSDE, GSDE (drop <= 5 pts)."""
    data = uea(cfg.data.name, stride=cfg.data.stride)
    rates = [float(r) for r in cfg.data.missing_rates]
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    names = list(cfg.model.models)
    ts_model = np.asarray(data.ts, dtype=np.float64) * cfg.data.time_scale
    # One optimiser, loss and evaluation function per model for the whole experiment, so
    # that `fit` compiles its training chunk once per model, not once per run.
    logits = {name: _logits_fn(name, ts_model.astype(data.ts.dtype)) for name in names}
    shared = {
        "dt0": float(ts_model[1] - ts_model[0]) / cfg.model.steps_per_interval,
        "optimizer": optimizer_from_config(cfg.train),
        "losses": {name: _loss_fn(logits[name]) for name in names},
        "accuracy": {name: _accuracy_fn(logits[name], cfg.model.eval_samples,
                                        name in SDE_CLASSIFIERS) for name in names},
    }  # fmt: skip

    results_path, done = start_results(run_dir, ("model", "rate", "seed"), resume=resume)
    for seed in seeds:
        seed_key = jax.random.key(seed)
        for rate in rates:
            todo = [name for name in names if (name, rate, seed) not in done]
            if todo:
                drop_key = jax.random.fold_in(seed_key, round(1000 * rate))
                inputs = irregular_inputs(data, rate, cfg.data.time_scale, key=drop_key)
            for name in todo:
                index = list(MODELS).index(name)
                key = jax.random.fold_in(jax.random.fold_in(seed_key, 7919 + index),
                                         round(1000 * rate))  # fmt: skip
                sub_dir = run_dir / "fits" / f"{name}-missing{round(100 * rate):02d}-seed{seed}"
                row = {"model": name, "rate": rate, "seed": seed, **_train_and_score(
                    cfg, name, data, inputs, shared, sub_dir, resume, key=key)}  # fmt: skip
                done[(name, rate, seed)] = row
                append_result(results_path, row)
    return _report(cfg, run_dir, data, names, rates, seeds, done)


def _report(cfg, run_dir, data, names, rates, seeds, done) -> dict:
    """Statistics over seeds, the accuracy drop from 0% to 50%, figure, table and summary."""
    accuracy = {
        name: {f"{r:g}": summary_stats([done[(name, r, s)]["test_accuracy"] for s in seeds])
               for r in rates}
        for name in names
    }  # fmt: skip
    train_accuracy = {
        name: {
            f"{r:g}": summary_stats([done[(name, r, s)]["train_accuracy"] for s in seeds])["mean"]
            for r in rates
        }
        for name in names
    }  # fmt: skip
    drops, paired = {}, {}
    if 0.0 in rates and 0.5 in rates:
        drops = {
            name: 100 * (accuracy[name]["0"]["mean"] - accuracy[name]["0.5"]["mean"])
            for name in names
        }
        # The drop seed by seed: its spread says how well the seeds resolve the target.
        paired = {
            name: summary_stats([100 * (done[(name, 0.0, s)]["test_accuracy"]
                                 - done[(name, 0.5, s)]["test_accuracy"]) for s in seeds])
            for name in names
        }  # fmt: skip
    stable = [name for name in names if name in STABLE]
    target_met = bool(drops) and bool(stable) and all(drops[n] <= cfg.target_drop for n in stable)

    runs = f"{len(seeds)} seed{'s' * (len(seeds) > 1)}"
    title = f"{cfg.data.name}: test accuracy vs missing rate ({runs}, mean ± std)"
    _figure(accuracy, rates, run_dir / "accuracy.png", title)
    table = _table(accuracy, rates, drops)
    (run_dir / "results.md").write_text(
        f"# {title}\n\nTest accuracy (%), mean ± sample std over seeds {seeds}; the last "
        "column is the mean accuracy at 0% minus that at 50% missing (points; negative: "
        "better with missing data).\n\n" + table
    )
    stable_drops = [drops[n] for n in stable if n in drops]
    return {
        "dataset": cfg.data.name,
        "series_length": int(data.ts.shape[0]),
        "seeds": seeds,
        "missing_rates": rates,
        "max_stable_drop_points": max(stable_drops) if stable_drops else None,
        "test_accuracy": accuracy,
        "train_accuracy_mean": train_accuracy,
        "accuracy_drop_0_to_50_points": drops,
        "accuracy_drop_0_to_50_per_seed": paired,
        "target": (
            f"stable classes ({', '.join(MODELS[n] for n in STABLE)}) lose <= "
            f"{cfg.target_drop} accuracy points from 0% to 50% missing"
        ),
        "target_met": target_met,
        "table_markdown": table,
    }
