"""LangevinFlow on Lorenz-driven spiking data against a GRU sequential VAE and the spike
smoothing + Poisson GLM baseline, in the Neural Latents Benchmark's co-smoothing setting.

Data (`jaxdyn.data.lorenz_spikes`): a Lorenz attractor drives the log rates of
`num_neurons` Poisson neurons through a random linear readout, 10-ms bins, 1-s trials. Split
(`heldout_split`, Pei et al. 2021): 20% held-out neurons, 20% test trials. Train trials show
all neurons; for the test trials the models see only the held-in neurons (the encoders'
input, always held-in only) and predict the rates of all neurons.

Models:
- `langevin_flow`: `jaxdyn.models.LangevinFlow` (Song et al. 2025): bidirectional-GRU encoder,
  latent underdamped Langevin SDE in a ring of coupled oscillators driven by inferred
  inputs (Euler–Maruyama on the bin grid by `sdeint`), one-layer transformer decoder.
  Two choices of the reference implementation (the authors' PyTorch `LangevinAutoencoder`)
  are options here: its decoder reads `[x_t, v_t, e_t]`, position, velocity and encoder
  state (`decoder_reads: state`; `position` reads `x_t` alone), and it trains with
  coordinated dropout of the encoder's input (`coordinated_dropout`, the drop rate; its
  training script drops 30%; `jaxdyn.train.coordinated_dropout`). Other differences are not
  adopted: its encoder is a forward GRU and the initial state comes from its first step; its
  latent step is a symplectic Euler step of 0.01 with velocity noise `v ← (1 − γ)v + √(2γ) ε`
  and no inferred inputs; its potential is a quadratic form with a learned 3-tap
  convolution coupling neighbours; its decoder layer is post-norm with feed-forward 512 and
  dropout 0.2; it trains with Adam 1e-3, weight decay 1e-4 and the KL weight (to 0.1) both
  ramped over 500 epochs, plateau LR decay, gradient clipping at 1 and early stopping on the
  validation loss. Of its training settings the config takes, chosen on validation, AdamW
  with weight decay 1e-4 (not ramped) and the final KL weight 0.1 (`model.kl_weight`).
- `seq_vae`: `jaxdyn.models.SequentialVAE`, LFADS-like (no controller).
- `smoothing_glm`: `jaxdyn.baselines.smoothing_glm_baseline` (NLB's smoothing baseline; no
  training loop: the GLMs are fitted by scikit-learn).

The two VAEs minimise, per train trial, `−log p(all neurons' counts | latent sample) + β KL`
(normalised per bin and neuron), with the KL weight `β = kl_weight · min(1, (step + 1) /
kl_warmup)` (`jaxdyn.train.kl_warmup`; the reference ramps it to 0.1); with
`coordinated_dropout > 0` LangevinFlow's encoder sees the held-in counts with entries dropped,
and the held-in entries it saw give no gradient (their likelihood still counts in the reported
loss). `fit`'s loss sees `(model, batch, key)` only,
so the step is a counter carried with the model (`jaxdyn.train.StepCounted`), advanced by 1
per step by the optimiser (`counting_steps`): it is checkpointed with the parameters, so a
resumed run continues the warm-up. Gradients are clipped to global norm `clip_norm`.

Evaluation on the test trials, with rates averaged over `eval_samples` posterior samples
(initial state, inputs and Brownian path): co-bps of the held-out neurons
(`jaxdyn.metrics.co_bps`), rate R² against the true expected counts of all neurons
(`r2_score`, averaged over neurons), and latent R²: the latent trajectories (posterior
means; LangevinFlow's positions `x`, the VAE's factors, the GLM's log-smoothed held-in
counts) mapped affinely onto the true Lorenz state, the map fitted on the train trials
(`linear_r2`). Each VAE's reported step is the best of its evaluations on the validation
trials (`train.best_metric`: co-bps of the held-out neurons, or `rate_r2`, the rate R² of all
neurons against the simulated true rates of the validation trials, which the simulator knows;
both are logged). The co-bps of the true rates (`oracle_co_bps`) is the ceiling.
LangevinFlow's latent solves make a failed sample NaN (`on_failure="nan"`): a failed sample
stops training (NaN loss); at evaluation each trial's rates and latents average its successful
samples, and every row reports `failed_samples` (a trial with none successful stops the run).

Seeds: seed `s` draws its own data set, split, initialisation and training noise, so the
spread includes the data's. Each (model, seed) trains in `fits/<model>-seed<s>/`
(checkpoint, metrics.jsonl); its metrics go to `results.jsonl` when known and the first
seed's predictions to `predictions-<model>.npz` (for the figures); `--resume` skips
finished runs and resumes an interrupted one from its checkpoint.
"""

import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from omegaconf import DictConfig

from ..baselines import gaussian_smooth, smoothing_glm_baseline
from ..config import (
    ConfigError,
    TrainConfig,
    at_least,
    choice,
    distinct_names,
    fraction,
    positive,
    positive_list,
    section,
)
from ..data import heldout_split, lorenz_spikes
from ..metrics.regression import linear_r2, r2_score
from ..metrics.spikes import co_bps
from ..models.langevin_flow import DECODER_READS, LangevinFlow
from ..models.seq_vae import SequentialVAE, poisson_log_likelihood
from ..plotting import Figure
from ..train import coordinated_dropout, gradient_masked, kl_warmup
from ..train.checkpoint import atomic_write
from ._records import append_result, start_results, summary_stats
from ._registry import register
from ._training import fit_from_config, optimizer_from_config

#: Model keys, in the order of the table, and their display names.
MODELS: dict[str, str] = {
    "langevin_flow": "LangevinFlow",
    "seq_vae": "GRU sequential VAE",
    "smoothing_glm": "smoothing + GLM",
}
TRAINED = ("langevin_flow", "seq_vae")


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
    heldout_neurons: float = fraction(0.2)
    test_trials: float = fraction(0.2)
    validation_trials: float = fraction(0.2)  # of all trials, taken from the train trials


@dataclasses.dataclass
class LangevinFlowConfig:
    units: int = at_least(16, 1)
    inputs: int = at_least(4, 1)
    encoder_hidden: int = at_least(64, 1)
    decoder_width: int = at_least(32, 1)
    heads: int = at_least(2, 1)
    # what the decoder reads per bin: [x, v, encoder features] (the reference's) or x
    decoder_reads: str = choice("position", DECODER_READS)
    # coordinated dropout of the held-in input in training (0: none)
    coordinated_dropout: float = fraction(0.0, allow_zero=True)
    dt: float = positive(0.1)  # latent time per bin
    substeps: int = at_least(1, 1)  # Euler–Maruyama steps per bin
    input_prior_scale: float = positive(1.0)
    damping: float = positive(0.5)  # initial γ
    noise: float = positive(0.1)  # initial σ


@dataclasses.dataclass
class SeqVAEConfig:
    encoder_hidden: int = at_least(64, 1)
    generator_hidden: int = at_least(64, 1)
    latent: int = at_least(8, 1)


@dataclasses.dataclass
class SmoothingGLMConfig:
    # Candidate widths of the smoothing kernel (bins); the one with the best validation
    # co-bps is used.
    kernel_sd_bins: list[float] = positive_list([2.0, 3.0, 4.0, 6.0], "widths (bins)")
    alpha: float = at_least(0.3, 0.0)
    # held-in rates: NLB's smoothed counts, or a GLM per held-in neuron (denoised)
    heldin: str = choice("glm", ("smoothed", "glm"))


@dataclasses.dataclass
class ModelsConfig:
    models: list[str] = distinct_names(MODELS, MODELS)
    langevin_flow: LangevinFlowConfig = section(LangevinFlowConfig)
    seq_vae: SeqVAEConfig = section(SeqVAEConfig)
    smoothing_glm: SmoothingGLMConfig = section(SmoothingGLMConfig)
    kl_warmup: int = at_least(300, 0)  # steps of linear KL warm-up (0: none)
    kl_weight: float = positive(1.0)  # the KL weight after the warm-up (the reference's: 0.1)
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
    data: LorenzSpikesConfig = section(LorenzSpikesConfig)
    model: ModelsConfig = section(ModelsConfig)
    target: LangevinFlowTargetConfig = section(LangevinFlowTargetConfig)
    train: TrainConfig = section(TrainConfig, steps=1500, lr=5e-3, schedule="cosine")


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
    # Validation trials: a random part of the train trials, by a key no model uses (the
    # models' keys are `fold_in(key(seed), 1 + model index)`).
    num_validation = round(d.validation_trials * d.num_trials)
    validation_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), 1)
    pick = np.asarray(jax.random.permutation(validation_key, split.train_trials.shape[0]))
    train_trials = np.asarray(split.train_trials)
    return {
        "spikes": np.asarray(data.spikes)[..., order],
        "rates": np.asarray(data.rates)[..., order],
        "latents": np.asarray(data.latents),
        "heldin": int(split.heldin_neurons.shape[0]),
        "train": np.sort(train_trials[pick[num_validation:]]),
        "validation": np.sort(train_trials[pick[:num_validation]]),
        "test": np.asarray(split.test_trials),
        "neurons": order,
    }


# --- training ---------------------------------------------------------------------------------


def build_model(name: str, cfg: DictConfig, heldin: int, neurons: int, *, key: PRNGKeyArray):
    """The VAE `name` for `heldin` input neurons and `neurons` predicted ones; LangevinFlow's
    latent solves make a failed sample NaN, to be counted."""

    @eqx.filter_jit  # one compilation for the initialisation (eagerly, one per operation)
    def init(key):
        if name == "langevin_flow":
            m = cfg.model.langevin_flow
            return LangevinFlow(
                in_neurons=heldin, out_neurons=neurons, units=m.units, inputs=m.inputs,
                encoder_hidden=m.encoder_hidden, decoder_width=m.decoder_width, heads=m.heads,
                decoder_reads=m.decoder_reads, dt=m.dt, substeps=m.substeps,
                input_prior_scale=m.input_prior_scale, damping=m.damping, noise=m.noise,
                on_failure="nan", key=key,
            )  # fmt: skip
        m = cfg.model.seq_vae
        return SequentialVAE(
            in_neurons=heldin, out_neurons=neurons, encoder_hidden=m.encoder_hidden,
            generator_hidden=m.generator_hidden, latent=m.latent, key=key,
        )  # fmt: skip

    return init(key)


def _with_bias(model, log_mean_counts):
    """Start the readout's bias at each neuron's log mean count (the null model)."""
    where = (lambda m: m.decoder.readout.bias) if isinstance(model, LangevinFlow) else (
        lambda m: m.readout.bias)  # fmt: skip
    return eqx.tree_at(where, model, jnp.asarray(log_mean_counts, where(model).dtype))


def _loss_fn(heldin: int, warmup: int, dropout: float = 0.0, kl_weight: float = 1.0):
    """Negative ELBO per bin and neuron of a batch of train trials `(batch, bins, neurons)`,
    with the KL weight of the step, `kl_weight · kl_warmup(step, warmup)` (for
    `fit_from_config(..., with_step=True)`). With
    coordinated dropout (`dropout > 0`, `jaxdyn.train.coordinated_dropout`) the encoder sees
    the held-in counts with entries dropped, and the likelihood of the held-in entries it saw
    (unless passed) is counted in the value but gives no gradient; held-out neurons always
    give theirs."""

    def loss(model, step, batch, key):
        inputs, trained = batch[..., :heldin], None
        if dropout > 0:  # (without dropout, the training keys are as before)
            key, dropout_key = jax.random.split(key)
            inputs, trained = coordinated_dropout(inputs, dropout, key=dropout_key)
            held_out = jnp.ones((*batch.shape[:2], batch.shape[2] - heldin), bool)
            trained = jnp.concatenate([trained, held_out], axis=-1)
        keys = jax.random.split(key, batch.shape[0])
        out = jax.vmap(lambda s, k: model(s, key=k))(inputs, keys)
        per_trial = batch.shape[1] * batch.shape[2]
        log_likelihood = poisson_log_likelihood(out.log_rates, batch, reduce=False)
        if trained is not None:
            log_likelihood = gradient_masked(log_likelihood, trained)
        nll = -jnp.sum(log_likelihood) / (batch.shape[0] * per_trial)
        kl = jnp.mean(out.kl) / per_trial
        beta = kl_weight * kl_warmup(step, warmup)
        return nll + beta * kl, {"nll": nll, "kl": kl, "beta": beta}

    return loss


def _predict_fn(samples: int):
    """Posterior-mean rates (expected counts) and latents of trials `(trials, bins, heldin)`,
    averaged over each trial's successful samples of `samples` (a failed one is NaN), and
    the number of failed samples per trial; trials in batches of 16 (memory)."""

    @eqx.filter_jit
    def predict(model, spikes, *, key):
        keys = jax.random.split(key, spikes.shape[0])

        def one(inputs):
            s, k = inputs
            out = jax.vmap(lambda k_: model(s, key=k_))(jax.random.split(k, samples))
            ok = jnp.all(jnp.isfinite(out.log_rates), axis=(1, 2)) & jnp.all(
                jnp.isfinite(out.latents), axis=(1, 2)
            )
            count = jnp.sum(ok)

            def mean(x):
                return jnp.sum(jnp.where(ok[:, None, None], x, 0.0), 0) / count

            return mean(jnp.exp(out.log_rates)), mean(out.latents), samples - count

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


def _check(cfg: DictConfig) -> None:
    m, g, d, t = cfg.model.langevin_flow, cfg.model.smoothing_glm, cfg.data, cfg.train
    if t.best_metric in ("validation.co_bps", "validation.rate_r2") and t.mode != "max":
        raise ConfigError(
            f"bad value for config key 'train.mode' ({t.mode!r}): train.best_metric="
            f"{t.best_metric} is better when higher, so train.mode must be 'max'"
        )
    if m.decoder_width % m.heads:
        raise ConfigError(
            f"model.langevin_flow.decoder_width={m.decoder_width} must be divisible by "
            f"model.langevin_flow.heads={m.heads}"
        )
    window = int(6 * max(g.kernel_sd_bins))
    if "smoothing_glm" in cfg.model.models and window > d.num_bins:
        raise ConfigError(
            f"model.smoothing_glm.kernel_sd_bins={list(g.kernel_sd_bins)} gives a {window}-bin "
            f"window, longer than a trial (data.num_bins={d.num_bins})"
        )
    held_back = round(d.test_trials * d.num_trials) + round(d.validation_trials * d.num_trials)
    train_trials = d.num_trials - held_back
    if train_trials < 1 or round(d.validation_trials * d.num_trials) < 1:
        raise ConfigError(
            f"data.test_trials={d.test_trials} and data.validation_trials="
            f"{d.validation_trials} of data.num_trials={d.num_trials} leave no train or no "
            "validation trial"
        )
    if t.batch_size is not None and t.batch_size > train_trials:
        raise ConfigError(f"train.batch_size={t.batch_size} exceeds the number of train trials")


def _glm_predictions(cfg: DictConfig, data: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """The smoothing baseline's rates of all neurons on the test trials, its latents (the
    GLM's inputs: log-smoothed held-in counts) on all trials, and the kernel width chosen by
    validation co-bps (GLMs fitted on the train trials for each candidate)."""
    g, heldin, spikes = cfg.model.smoothing_glm, data["heldin"], data["spikes"]
    train, validation, test = data["train"], data["validation"], data["test"]
    held_out = np.concatenate([validation, test])  # one fit serves both
    fits = {}
    for width in g.kernel_sd_bins:
        glm = smoothing_glm_baseline(
            spikes[train][..., :heldin], spikes[train][..., heldin:],
            spikes[held_out][..., :heldin], kernel_sd_bins=width, alpha=g.alpha,
            heldin=g.heldin,
        )  # fmt: skip
        pred = np.concatenate([np.asarray(glm.heldin_rates), np.asarray(glm.heldout_rates)], -1)
        on_validation = pred[: validation.size, :, heldin:]
        score = float(co_bps(on_validation, spikes[validation][..., heldin:]))
        fits[float(width)] = (score, pred[validation.size :])
    width = max(fits, key=lambda w: fits[w][0])
    smooth = gaussian_smooth(spikes[..., :heldin], width)
    selection = {"validation_co_bps": fits[width][0], "kernel_sd_bins": width}
    return fits[width][1], np.log(np.asarray(smooth) + 1e-4), selection


class _Validation(eqx.Module):
    """`fit`'s evaluation on the validation trials: `co_bps` of a VAE's held-out-neuron
    predictions, and `rate_r2` of all neurons' predicted rates against the simulated true
    rates (known for every trial of the simulation; scored as the test trials' rate R²).
    NaN, never the best, if every sample of a trial failed."""

    spikes: Array
    rates: Array
    heldin: int = eqx.field(static=True)
    predict: Callable = eqx.field(static=True)

    def __call__(self, model, key):
        rates, _, _ = self.predict(model, self.spikes[..., : self.heldin], key=key)
        return {
            "co_bps": co_bps(rates[..., self.heldin :], self.spikes[..., self.heldin :]),
            "rate_r2": r2_score(rates, self.rates),
        }


def _trained_predictions(cfg, name, data, seed, run_dir, resume, shared, *, key) -> tuple:
    """Train the VAE `name` on the train trials (the step reported: the best
    `train.best_metric` on the validation trials, their rate R² in the config); its rates on
    the test trials and latents on all trials (posterior means), the number of failed samples,
    the final loss and the selection."""
    model_key, train_key, eval_key = jax.random.split(key, 3)
    spikes, heldin, train = data["spikes"], data["heldin"], data["train"]
    model = build_model(name, cfg, heldin, spikes.shape[2], key=model_key)
    model = _with_bias(model, np.log(np.maximum(spikes[train].mean(axis=(0, 1)), 1e-3)))
    if name not in shared["losses"]:
        dropout = cfg.model.langevin_flow.coordinated_dropout if name == "langevin_flow" else 0.0
        shared["losses"][name] = _loss_fn(heldin, cfg.model.kl_warmup, dropout,
                                          cfg.model.kl_weight)  # fmt: skip
    validation = _Validation(jnp.asarray(spikes[data["validation"]]),
                             jnp.asarray(data["rates"][data["validation"]]), heldin,
                             shared["predict"])  # fmt: skip
    result = fit_from_config(
        shared["losses"][name], model, jnp.asarray(spikes[train]), cfg.train, key=train_key,
        run_dir=run_dir / "fits" / f"{name}-seed{seed}", resume=resume,
        has_aux=True, optimizer=shared["optimizer"], with_step=True, eval_fn=validation,
    )  # fmt: skip
    reported = result.model if result.best_model is None else result.best_model
    pred, latents, failed = map(np.asarray, shared["predict"](
        reported.model, jnp.asarray(spikes[..., :heldin]), key=eval_key))  # fmt: skip
    lost = int(np.sum(failed == cfg.model.eval_samples))
    if lost:
        raise RuntimeError(
            f"langevin_flow: every posterior sample of {lost} trials failed for {MODELS[name]} "
            f"(seed {seed}): the latent solve left the finite numbers"
        )
    final_loss = float(result.losses[-1]) if result.losses.size else None
    # the validation metrics at the reported step (all of them when this call evaluated it)
    at_best = {cfg.train.best_metric: result.best_value}
    at_best.update(next((e for e in result.evaluations if e["step"] == result.best_step), {}))
    selection = {"validation_co_bps": at_best.get("validation.co_bps"),
                 "validation_rate_r2": at_best.get("validation.rate_r2"),
                 "best_step": result.best_step}  # fmt: skip
    return pred[data["test"]], latents, int(failed.sum()), final_loss, selection


def _evaluate(cfg, name, data, seed, run_dir, resume, shared) -> tuple[dict, Array, Array]:
    """One (model, seed) row: co-bps, rate and latent R², failed samples, time, final loss."""
    key = jax.random.fold_in(jax.random.key(seed), 1 + list(MODELS).index(name))
    start = time.perf_counter()
    print(f"[langevin_flow] seed {seed}: {MODELS[name]}", flush=True)
    if name == "smoothing_glm":
        (pred, latents, selection), failed, final_loss = _glm_predictions(cfg, data), 0, None
    else:
        pred, latents, failed, final_loss, selection = _trained_predictions(
            cfg, name, data, seed, run_dir, resume, shared, key=key
        )
    heldin, test, spikes = data["heldin"], data["test"], data["spikes"]
    row = {
        "model": name,
        "seed": seed,
        "co_bps": float(co_bps(pred[..., heldin:], spikes[test][..., heldin:])),
        "rate_r2": float(r2_score(pred, data["rates"][test])),
        "latent_r2": float(linear_r2(latents, data["latents"], fit_on=data["train"])),
        "failed_samples": failed,
        "seconds": time.perf_counter() - start,
        "final_loss": final_loss,
        **selection,
    }
    print(f"[langevin_flow] seed {seed}: {MODELS[name]}: " + ", ".join(
        f"{k} {row[k]:.3f}" for k in (*METRICS, "seconds")), flush=True)  # fmt: skip
    return row, pred, latents


@register("langevin_flow", LangevinFlowExperimentConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """LangevinFlow vs GRU sequential VAE vs smoothing+GLM on Lorenz spikes (co-bps, R²)."""
    names = list(cfg.model.models)
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    # One optimiser, loss and predictor for the whole run: `fit` compiles once per model.
    shared = {
        "optimizer": optimizer_from_config(cfg.train, clip_norm=cfg.model.clip_norm,
                                           count_steps=True),
        "predict": _predict_fn(cfg.model.eval_samples),
        "losses": {},
    }  # fmt: skip
    results_path, done = start_results(run_dir, ("model", "seed"), resume=resume)
    oracle, first = {}, None
    for seed in seeds:
        data = make_dataset(cfg, seed)
        heldin, test, spikes = data["heldin"], data["test"], data["spikes"]
        oracle[seed] = float(co_bps(data["rates"][test][..., heldin:], spikes[test][..., heldin:]))
        for name in (n for n in names if (n, seed) not in done):
            row, pred, latents = _evaluate(cfg, name, data, seed, run_dir, resume, shared)
            if seed == seeds[0]:  # saved (atomically) before the row marks the model done
                arrays = {"rates": pred.astype(np.float32), "latents": _linear_map(
                    latents, data["latents"], data["train"])[test].astype(np.float32)}  # fmt: skip
                atomic_write(run_dir / f"predictions-{name}.npz",
                             lambda f, arrays=arrays: np.savez(f, **arrays))  # fmt: skip
            done[(name, seed)] = row
            append_result(results_path, row)
        first = data if seed == seeds[0] else first
    return _report(cfg, run_dir, names, seeds, done, oracle, first)


def _report(cfg, run_dir, names, seeds, done, oracle, data) -> dict:
    """Statistics over seeds, the figures, `results.md` and the summary."""
    keys = (*METRICS, "seconds", "failed_samples")
    stats = {
        name: {k: summary_stats([done[(name, s)].get(k, 0) for s in seeds]) for k in keys}
        for name in names
    }
    for name, key in itertools.product(names, ("validation_co_bps", "validation_rate_r2")):
        values = [done[(name, s)].get(key) for s in seeds]  # where every seed has one
        if all(v is not None for v in values):
            stats[name][key] = summary_stats(values)
    oracle_stats = summary_stats([oracle[s] for s in seeds])
    predictions = {}
    for name in names:
        path = run_dir / f"predictions-{name}.npz"
        if path.is_file():
            with np.load(path) as f:
                predictions[name] = {"rates": f["rates"], "latents": f["latents"]}
    data = data or make_dataset(cfg, seeds[0])
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
    headline = {k: None if lf is None else lf[k]["mean"] for k in METRICS}
    return {
        "seeds": seeds,
        "models": names,
        **{f"langevin_flow_{k}": v for k, v in headline.items()},
        "langevin_flow_failed_samples": None
        if lf is None
        else int(sum(lf["failed_samples"]["runs"])),  # fmt: skip
        "metrics": stats,
        "oracle_co_bps": oracle_stats,
        "table_markdown": table,
        "target": (
            f"LangevinFlow rate R² >= {cfg.target.rate_r2} and its co-bps above both baselines' "
            "(means over seeds)"
        ),
        "target_met": target_met,
        "steps": cfg.train.steps,
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
