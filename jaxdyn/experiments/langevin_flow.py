"""LangevinFlow on Lorenz-driven spiking data against a GRU sequential VAE and the spike
smoothing + Poisson GLM baseline, in the Neural Latents Benchmark's co-smoothing setting.

Data (`jaxdyn.data.spikes.lorenz_spikes`): a Lorenz attractor drives the log rates of
`num_neurons` Poisson neurons through a random linear readout, 10-ms bins, 1-s trials. Split
(`heldout_split`, Pei et al. 2021): 20% held-out neurons, 20% test trials. Train trials show
all neurons; for the test trials the models see only the held-in neurons (the encoders'
input, always held-in only) and predict the rates of all neurons.

Models:
- `langevin_flow`: `jaxdyn.models.LangevinFlow` (Song et al. 2025): bidirectional-GRU encoder,
  latent underdamped Langevin SDE in a ring of coupled oscillators driven by inferred
  inputs (Euler–Maruyama on the bin grid by `sdeint`), one-layer transformer decoder.
- `seq_vae`: `jaxdyn.models.SequentialVAE`, LFADS-like (no controller).
- `smoothing_glm`: `jaxdyn.models.smoothing_glm_baseline` (NLB's smoothing baseline; no
  training loop: the GLMs are fitted by scikit-learn).

The two VAEs minimise, per train trial, `−log p(all neurons' counts | latent sample) + β KL`
(normalised per bin and neuron), with the KL weight `β = min(1, (step + 1) / kl_warmup)`
(`jaxdyn.train.kl_warmup`). `fit`'s loss sees `(model, batch, key)` only, so the step is a
counter carried with the model (`jaxdyn.train.StepCounted`), advanced by 1 per step by the
optimiser (`counting_steps`): it is checkpointed with the parameters, so a resumed run
continues the warm-up.
Gradients are clipped to global norm `clip_norm`.

Evaluation on the test trials, with rates averaged over `eval_samples` posterior samples
(initial state, inputs and Brownian path): co-bps of the held-out neurons
(`jaxdyn.metrics.co_bps`), rate R² against the true expected counts of all neurons
(`r2_score`, averaged over neurons), and latent R²: the latent trajectories (posterior
means; LangevinFlow's positions `x`, the VAE's factors, the GLM's log-smoothed held-in
counts) mapped affinely onto the true Lorenz state, the map fitted on the train trials
(`linear_r2`). The co-bps of the true rates (`oracle_co_bps`) is the ceiling.

Seeds: seed `s` draws its own data set, split, initialisation and training noise, so the
spread includes the data's. Each (model, seed) trains in `fits/<model>-seed<s>/`
(checkpoint, metrics.jsonl); its metrics go to `results.jsonl` when known and the first
seed's predictions to `predictions-<model>.npz` (for the figures); `--resume` skips
finished runs and resumes an interrupted one from its checkpoint.
"""

import dataclasses
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, choice, distinct_names, positive
from ..data.spikes import heldout_split, lorenz_spikes
from ..metrics.regression import linear_r2, r2_score
from ..metrics.spikes import co_bps
from ..models.langevin_flow import LangevinFlow
from ..models.seq_vae import SequentialVAE, poisson_log_likelihood
from ..models.spike_glm import gaussian_smooth, smoothing_glm_baseline
from ..plotting import Figure
from ..train import StepCounted, counting_steps, fit, kl_warmup, make_optimizer
from ..train.checkpoint import atomic_write
from ._records import append_result, read_results, summary_stats
from ._registry import register

#: Model keys, in the order of the table, and their display names.
MODELS: dict[str, str] = {
    "langevin_flow": "LangevinFlow",
    "seq_vae": "GRU sequential VAE",
    "smoothing_glm": "smoothing + GLM",
}
TRAINED = ("langevin_flow", "seq_vae")


def _fraction(default: float):
    return dataclasses.field(
        default=default, metadata={"check": (lambda v: 0 < v < 1, "in (0, 1)")}
    )


def _rate_range(values) -> bool:
    return len(values) == 2 and 0 < values[0] <= values[1]


@dataclasses.dataclass
class LorenzSpikesConfig:
    num_trials: int = at_least(300, 4)
    num_neurons: int = at_least(50, 2)
    num_bins: int = at_least(100, 8)
    bin_size: float = positive(0.01)  # seconds
    time_scale: float = positive(1.0)  # Lorenz time units per second
    gain: float = positive(0.5)
    base_rate_range: list[float] = dataclasses.field(
        default_factory=lambda: [8.0, 14.0],
        metadata={"check": (_rate_range, "[low, high] Hz with 0 < low <= high")},
    )
    heldout_neurons: float = _fraction(0.2)
    test_trials: float = _fraction(0.2)


@dataclasses.dataclass
class LangevinFlowConfig:
    units: int = at_least(16, 1)
    inputs: int = at_least(4, 1)
    encoder_size: int = at_least(64, 1)
    decoder_width: int = at_least(32, 1)
    heads: int = at_least(2, 1)
    dt: float = positive(0.1)  # latent time per bin
    substeps: int = at_least(1, 1)  # Euler–Maruyama steps per bin
    input_prior_scale: float = positive(1.0)
    damping: float = positive(0.5)  # initial γ
    noise: float = positive(0.1)  # initial σ


@dataclasses.dataclass
class SeqVAEConfig:
    encoder_size: int = at_least(64, 1)
    generator_size: int = at_least(64, 1)
    factor_size: int = at_least(8, 1)


@dataclasses.dataclass
class SmoothingGLMConfig:
    kernel_sd_bins: float = positive(4.0)
    alpha: float = at_least(0.3, 0.0)
    # held-in rates: NLB's smoothed counts, or a GLM per held-in neuron (denoised)
    heldin: str = choice("glm", ("smoothed", "glm"))


@dataclasses.dataclass
class ModelsConfig:
    models: list[str] = distinct_names(MODELS, MODELS)
    langevin_flow: LangevinFlowConfig = dataclasses.field(default_factory=LangevinFlowConfig)
    seq_vae: SeqVAEConfig = dataclasses.field(default_factory=SeqVAEConfig)
    smoothing_glm: SmoothingGLMConfig = dataclasses.field(default_factory=SmoothingGLMConfig)
    kl_warmup: int = at_least(300, 0)  # steps of linear KL warm-up (0: none)
    clip_norm: float = positive(10.0)
    eval_samples: int = at_least(16, 1)


@dataclasses.dataclass
class LangevinFlowTargetConfig:
    rate_r2: float = 0.9  # LangevinFlow's rate R²; and its co-bps above both baselines'


@dataclasses.dataclass
class LangevinFlowExperimentConfig:
    experiment: str = "langevin_flow"
    seed: int = 0
    num_seeds: int = at_least(3, 1)  # seeds seed, seed + 1, …
    data: LorenzSpikesConfig = dataclasses.field(default_factory=LorenzSpikesConfig)
    model: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    target: LangevinFlowTargetConfig = dataclasses.field(default_factory=LangevinFlowTargetConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            steps=1500, batch_size=32, optimizer="adam", lr=5e-3, schedule="cosine", chunk=100
        )  # fmt: skip
    )


# --- data -------------------------------------------------------------------------------------


def make_dataset(cfg: DictConfig, seed: int) -> dict:
    """Seed `seed`'s data set and split, with neurons reordered held-in first (so the models'
    input is the first `heldin` columns whatever the split)."""
    d = cfg.data
    data_key, split_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
    data = lorenz_spikes(
        key=data_key, num_trials=d.num_trials, num_neurons=d.num_neurons, num_bins=d.num_bins,
        bin_size=d.bin_size, time_scale=d.time_scale, gain=d.gain,
        base_rate_range=tuple(d.base_rate_range),
    )  # fmt: skip
    split = heldout_split(
        d.num_trials, d.num_neurons, key=split_key, neuron_fraction=d.heldout_neurons,
        trial_fraction=d.test_trials,
    )  # fmt: skip
    order = np.concatenate([np.asarray(split.heldin_neurons), np.asarray(split.heldout_neurons)])
    return {
        "spikes": np.asarray(data.spikes)[..., order],
        "rates": np.asarray(data.rates)[..., order],
        "latents": np.asarray(data.latents),
        "heldin": int(split.heldin_neurons.shape[0]),
        "train": np.asarray(split.train_trials),
        "test": np.asarray(split.test_trials),
        "neurons": order,
    }


# --- training ---------------------------------------------------------------------------------


def build_model(name: str, cfg: DictConfig, heldin: int, neurons: int, key):
    if name == "langevin_flow":
        m = cfg.model.langevin_flow
        return LangevinFlow(
            heldin, neurons, units=m.units, inputs=m.inputs, encoder_size=m.encoder_size,
            decoder_width=m.decoder_width, heads=m.heads, dt=m.dt, substeps=m.substeps,
            input_prior_scale=m.input_prior_scale, damping=m.damping, noise=m.noise, key=key,
        )  # fmt: skip
    m = cfg.model.seq_vae
    return SequentialVAE(
        heldin, neurons, encoder_size=m.encoder_size, generator_size=m.generator_size,
        factor_size=m.factor_size, key=key,
    )  # fmt: skip


def _with_bias(model, log_mean_counts):
    """Start the readout's bias at each neuron's log mean count (the null model)."""
    where = (lambda m: m.decoder.readout.bias) if isinstance(model, LangevinFlow) else (
        lambda m: m.readout.bias)  # fmt: skip
    return eqx.tree_at(where, model, jnp.asarray(log_mean_counts, where(model).dtype))


def _loss_fn(heldin: int, warmup: int):
    """Negative ELBO per bin and neuron of a batch of train trials `(batch, bins, neurons)`;
    `counted` is a `StepCounted` model (the KL warm-up reads the step)."""

    def loss(counted, batch, key):
        model = counted.model
        keys = jax.random.split(key, batch.shape[0])
        out = jax.vmap(model)(batch[..., :heldin], keys)
        per_trial = batch.shape[1] * batch.shape[2]
        nll = -poisson_log_likelihood(out.log_rates, batch) / (batch.shape[0] * per_trial)
        kl = jnp.mean(out.kl) / per_trial
        beta = kl_warmup(jax.lax.stop_gradient(counted.step), warmup)
        return nll + beta * kl, {"nll": nll, "kl": kl, "beta": beta}

    return loss


def _predict_fn(samples: int):
    """Posterior-mean rates (expected counts) and latents of trials `(trials, bins, heldin)`,
    averaged over `samples` samples each; trials in batches of 16 (memory)."""

    @eqx.filter_jit
    def predict(model, spikes, key):
        keys = jax.random.split(key, spikes.shape[0])

        def one(inputs):
            s, k = inputs
            out = jax.vmap(lambda k_: model(s, k_))(jax.random.split(k, samples))
            return jnp.mean(jnp.exp(out.log_rates), 0), jnp.mean(out.latents, 0)

        return jax.lax.map(one, (spikes, keys), batch_size=16)

    return predict


# --- records ----------------------------------------------------------------------------------


METRICS = ("co_bps", "rate_r2", "latent_r2")


def _table(stats: dict, oracle: dict) -> str:
    lines = ["| model | co-bps | rate R² | latent R² | train time (s) |", "|---|---|---|---|---|"]
    for name, s in stats.items():
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in METRICS]
        cells.append(f"{s['seconds']['mean']:.0f}")
        lines.append(f"| {MODELS[name]} | " + " | ".join(cells) + " |")
    lines.append(
        f"| true rates (ceiling) | {oracle['mean']:.3f} ± {oracle['std']:.3f} | 1 | — | — |"
    )
    return "\n".join(lines) + "\n"


# --- the experiment ---------------------------------------------------------------------------


@register("langevin_flow", LangevinFlowExperimentConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """LangevinFlow vs GRU sequential VAE vs smoothing+GLM on Lorenz spikes (co-bps, R²)."""
    names = list(cfg.model.models)
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    m = cfg.model.langevin_flow
    if m.decoder_width % m.heads:
        raise ValueError(
            f"model.langevin_flow.decoder_width={m.decoder_width} must be divisible by "
            f"model.langevin_flow.heads={m.heads}"
        )
    window = int(6 * cfg.model.smoothing_glm.kernel_sd_bins)
    if "smoothing_glm" in names and window > cfg.data.num_bins:
        raise ValueError(
            f"model.smoothing_glm.kernel_sd_bins={cfg.model.smoothing_glm.kernel_sd_bins} gives "
            f"a {window}-bin window, longer than a trial (data.num_bins={cfg.data.num_bins})"
        )
    t = cfg.train
    if t.batch_size is not None and t.batch_size > cfg.data.num_trials - round(
        cfg.data.test_trials * cfg.data.num_trials
    ):
        raise ValueError(f"train.batch_size={t.batch_size} exceeds the number of train trials")
    # One optimiser, loss and predictor for the whole run: `fit` compiles once per model.
    optimizer = counting_steps(optax.chain(
        optax.clip_by_global_norm(cfg.model.clip_norm),
        make_optimizer(t.optimizer, t.lr, schedule=t.schedule, steps=t.steps),
    ))  # fmt: skip
    predict = _predict_fn(cfg.model.eval_samples)
    losses = {}

    results_path = run_dir / "results.jsonl"
    done = read_results(results_path, ("model", "seed")) if resume else {}
    if not resume:
        results_path.write_text("")
    oracle, figures = {}, {}
    for seed in seeds:
        data = make_dataset(cfg, seed)
        heldin, neurons = data["heldin"], data["spikes"].shape[2]
        train, test = data["train"], data["test"]
        spikes, rates = data["spikes"], data["rates"]
        oracle[seed] = float(co_bps(rates[test][..., heldin:], spikes[test][..., heldin:]))
        for name in names:
            if (name, seed) in done:
                continue
            key = jax.random.fold_in(jax.random.key(seed), 1 + list(MODELS).index(name))
            model_key, train_key, eval_key = jax.random.split(key, 3)
            start = time.perf_counter()
            print(f"[langevin_flow] seed {seed}: {MODELS[name]}", flush=True)
            if name == "smoothing_glm":
                g = cfg.model.smoothing_glm
                glm = smoothing_glm_baseline(
                    spikes[train][..., :heldin], spikes[train][..., heldin:],
                    spikes[test][..., :heldin], kernel_sd_bins=g.kernel_sd_bins, alpha=g.alpha,
                    heldin=g.heldin,
                )  # fmt: skip
                pred = np.concatenate([np.asarray(glm.heldin_rates),
                                       np.asarray(glm.heldout_rates)], axis=-1)  # fmt: skip
                smooth = gaussian_smooth(spikes[..., :heldin], g.kernel_sd_bins)
                latents = np.log(np.asarray(smooth) + 1e-4)  # the GLM's inputs
                final_loss = None
            else:
                if name not in losses:
                    losses[name] = _loss_fn(heldin, cfg.model.kl_warmup)
                model = build_model(name, cfg, heldin, neurons, model_key)
                mean_counts = spikes[train].mean(axis=(0, 1))
                model = _with_bias(model, np.log(np.maximum(mean_counts, 1e-3)))
                result = fit(
                    losses[name], StepCounted(model), jnp.asarray(spikes[train]), optimizer,
                    steps=t.steps,
                    batch_size=t.batch_size, key=train_key, chunk=t.chunk, has_aux=True,
                    run_dir=run_dir / "fits" / f"{name}-seed{seed}",
                    checkpoint_every=t.checkpoint_every, resume=resume,
                )  # fmt: skip
                final_loss = float(result.losses[-1]) if result.losses.size else None
                heldin_spikes = jnp.asarray(spikes[..., :heldin])
                pred_all, latents = predict(result.model.model, heldin_spikes, eval_key)
                pred, latents = np.asarray(pred_all)[test], np.asarray(latents)
            row = {
                "model": name,
                "seed": seed,
                "co_bps": float(co_bps(pred[..., heldin:], spikes[test][..., heldin:])),
                "rate_r2": float(r2_score(pred, rates[test])),
                "latent_r2": float(linear_r2(latents, data["latents"], fit_on=train)),
                "seconds": time.perf_counter() - start,
                "final_loss": final_loss,
            }
            print(f"[langevin_flow] seed {seed}: {MODELS[name]}: " + ", ".join(
                f"{k} {row[k]:.3f}" for k in (*METRICS, "seconds")), flush=True)  # fmt: skip
            if seed == seeds[0]:  # saved (atomically) before the row marks the model done
                arrays = {"rates": pred.astype(np.float32), "latents": _linear_map(
                    latents, data["latents"], train)[test].astype(np.float32)}  # fmt: skip
                atomic_write(run_dir / f"predictions-{name}.npz",
                             lambda f, arrays=arrays: np.savez(f, **arrays))  # fmt: skip
            done[(name, seed)] = row
            append_result(results_path, row)
        if seed == seeds[0]:
            figures = {"data": data}

    stats = {
        name: {k: summary_stats([done[(name, s)][k] for s in seeds]) for k in (*METRICS, "seconds")}
        for name in names
    }
    oracle_stats = summary_stats([oracle[s] for s in seeds])
    predictions = {}
    for name in names:
        path = run_dir / f"predictions-{name}.npz"
        if path.is_file():
            with np.load(path) as f:
                predictions[name] = {"rates": f["rates"], "latents": f["latents"]}
    data = figures.get("data") or make_dataset(cfg, seeds[0])
    _rates_figure(run_dir / "rates.png", data, predictions, cfg.data.bin_size)
    _latents_figure(run_dir / "latents.png", data, predictions)

    lf = stats.get("langevin_flow")
    baselines = [stats[n]["co_bps"]["mean"] for n in names if n != "langevin_flow"]
    target_met = bool(
        lf is not None
        and len(baselines) == len(names) - 1 == 2
        and lf["rate_r2"]["mean"] >= cfg.target.rate_r2
        and all(lf["co_bps"]["mean"] > b for b in baselines)
    )
    table = _table(stats, oracle_stats)
    title = (f"Lorenz spikes ({cfg.data.num_neurons} neurons, {cfg.data.num_trials} trials): "
             f"{len(seeds)} seed{'s' * (len(seeds) > 1)}, mean ± sample std")  # fmt: skip
    (run_dir / "results.md").write_text(
        f"# {title}\n\nco-bps: held-out neurons of the test trials; rate R²: all neurons of "
        "the test trials against the true rates; latent R²: affine map of the latents onto "
        "the Lorenz state fitted on the train trials, scored on the test trials.\n\n" + table
    )
    return {
        "seeds": seeds,
        "models": names,
        "metrics": stats,
        "oracle_co_bps": oracle_stats,
        "table_markdown": table,
        "target": (
            f"LangevinFlow rate R² >= {cfg.target.rate_r2} and its co-bps above both baselines' "
            "(means over seeds)"
        ),
        "target_met": target_met,
        "steps": t.steps,
    }


def _linear_map(latents, truth, fit_on) -> np.ndarray:
    """The affine least-squares map of `latents` onto `truth` fitted on trials `fit_on`,
    applied to all trials (for the figure; `linear_r2` computes the score)."""
    x = latents[fit_on].reshape(-1, latents.shape[-1])
    design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    weights = np.linalg.lstsq(design, truth[fit_on].reshape(-1, truth.shape[-1]), rcond=None)[0]
    return latents @ weights[:-1] + weights[-1]


# --- figures ----------------------------------------------------------------------------------


def _rates_figure(path: Path, data: dict, predictions: dict, bin_size: float) -> None:
    heldin, neurons = data["heldin"], data["spikes"].shape[2]
    shown = [0, 1, heldin, min(heldin + 1, neurons - 1)]  # two held-in, two held-out
    trial = 0  # the first test trial
    test = data["test"][trial]
    ms = 1000 * np.arange(data["spikes"].shape[1]) * bin_size
    fig = Figure(figsize=(11, 6))
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, n in zip(axes, shown, strict=True):
        ax.plot(ms, data["rates"][test, :, n], "k-", lw=2, label="true")
        spikes = data["spikes"][test, :, n]
        ax.plot(ms[spikes > 0], 0 * ms[spikes > 0], "|", color="0.5", ms=8, label="spikes")
        for i, (name, p) in enumerate(predictions.items()):
            ax.plot(ms, p["rates"][trial, :, n], f"C{i}-", lw=1.3, label=MODELS[name])
        kind = "held-in" if n < heldin else "held-out"
        ax.set(title=f"neuron {data['neurons'][n]} ({kind})", ylabel="expected count / bin")
    axes[-1].set_xlabel("time (ms)")
    axes[-2].set_xlabel("time (ms)")
    axes[0].legend(fontsize=8)
    fig.suptitle("rates on a test trial (models see held-in neurons only)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _latents_figure(path: Path, data: dict, predictions: dict) -> None:
    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(3, 2, sharex=True)
    truth = data["latents"][data["test"]]
    for col, trial in enumerate((0, 1)):
        for row, label in enumerate("xyz"):
            ax = axes[row, col]
            ax.plot(truth[trial, :, row], "k-", lw=2, label="Lorenz")
            for i, (name, p) in enumerate(predictions.items()):
                ax.plot(p["latents"][trial, :, row], f"C{i}-", lw=1.2, label=MODELS[name])
            ax.set_ylabel(label)
        axes[0, col].set_title(f"test trial {trial}: latents after the linear map")
        axes[-1, col].set_xlabel("bin")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
