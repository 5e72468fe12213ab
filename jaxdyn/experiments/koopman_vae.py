"""KoVAE against a GRU sequential VAE on the small benchmarks of Naiman et al. (2024):
generation quality by TimeGAN's scores, and the latent eigenvalues against the true
frequencies.

Data (each seed draws its own; split at random into train, validation and test series):
- `sines` (TimeGAN's, Yoon et al. 2019): `channels` independent channels per series,
  `x_c(t) = (sin(f_c t + φ_c) + 1) / 2`, `t = 0 … length−1`, `f_c ~ U(0, max_frequency)`,
  `φ_c ~ U(0, max_phase)`: true frequencies fill the band `[0, max_frequency]` rad per step.
- `pendulum`: the damped pendulum `θ'' = −ω₀² sin θ − 2ζω₀ θ'` solved by `jaxdyn.odeint`
  (Tsit5) from `θ = a cos ψ`, `θ' = −a ω₀ sin ψ` (`a ~ U(amplitude)`, `ψ ~ U(0, 2π)`),
  sampled every `dt`; channels `(θ, θ'/ω₀)` mapped to `[0, 1]` by `(v / (1.05 a_max) + 1) / 2`.
  Its small-amplitude modes are `λ = exp((−ζω₀ ± iω_d) dt)`, `ω_d = ω₀ √(1 − ζ²)`; at amplitude
  `a` the frequency drops by about `a²/16`, so the true band is `[ω_d (1 − a_max²/16), ω_d]`.

With `data.missing_rate > 0` the train and validation series lose that fraction of their
time steps (`jaxdyn.data.drop_observations`) and both models read them irregularly
(`encoder_inputs`); the test series stay complete (regular generation from irregular data,
the paper's irregular setting).

Models (`jaxdyn.sysid`): `kovae`, `KoopmanVAE` with the paper's sizes (its KL against the
prior's conditionals along the posterior sample, `kl_against`); `gru_vae`,
`GaussianSequentialVAE` (negative ELBO with a learned noise scale). Each is trained on the
train series; `fit` evaluates its loss on the validation series every `eval_every` chunks and
keeps the step with the best validation loss (`train.best_metric`).

Weights chosen on validation data (per dataset and seed): each model is trained once per point
of its grid (`kl_weights` × `prediction_weights` for KoVAE, `kl_weights` for the GRU VAE), and
the point whose samples score the lowest discriminative score against the *validation* series
(`selection.discriminative_steps`) is the one scored on test. Validation loss alone cannot
choose between weights (they change the loss itself) and does not see a collapsed prior; the
discriminative score does (samples of little diversity are told apart). The weights travel in
the training data (one per series, all equal), so a grid shares one compiled training step.

Scores on the test series, once per (dataset, model, seed): the discriminative and
predictive scores (`jaxdyn.metrics`, TimeGAN's protocol) of as many generated series as
there are test series. The row `real` scores train series in place of generated ones: the
floor a perfect generator would reach with these sample sizes. Eigenvalues (KoVAE): of the
operator fitted to `evaluation.eigen_samples` prior samples (what generates), and of the one
fitted to the posterior means of the test series; frequencies `|arg λ| / dt`. `diversity`
(`diversity`): the samples' spread across series over the test series' (near 0: collapsed).

Seeds `seed … seed + num_seeds − 1`; one row per finished (dataset, model, seed) in
`results.jsonl` (`--resume` skips them). A difference between the models smaller than the
larger of their two standard deviations over seeds is reported as no difference.
"""

import dataclasses
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

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
from ..data import drop_observations
from ..metrics import discriminative_score, predictive_score
from ..plotting import Figure
from ..solve import odeint
from ..sysid import GaussianSequentialVAE, KoopmanVAE, koopman_operator
from ._records import append_result, start_results, summary_stats
from ._registry import register
from ._training import fit_from_config, optimizer_from_config

DATASETS = ("sines", "pendulum")
#: Model keys and display names; `real` is the floor (train series scored as if generated).
MODELS: dict[str, str] = {"kovae": "KoVAE", "gru_vae": "GRU VAE", "real": "real (floor)"}
TRAINED = ("kovae", "gru_vae")
SCORES = ("discriminative", "predictive")
#: What a trained model's row takes from its chosen grid point.
CHOSEN = ("kl_weight", "prediction_weight", "validation_loss", "best_step",
          "validation_discriminative")  # fmt: skip


def _range(values) -> bool:
    return len(values) == 2 and 0 < values[0] <= values[1]


@dataclasses.dataclass
class SinesConfig:
    channels: int = at_least(5, 2)
    length: int = at_least(24, 3)
    max_frequency: float = positive(0.1)  # rad per step
    max_phase: float = positive(0.1)


@dataclasses.dataclass
class PendulumConfig:
    length: int = at_least(24, 3)
    dt: float = positive(0.1)
    natural_frequency: float = positive(3.0)  # ω₀, rad per time unit
    damping_ratio: float = fraction(0.1, allow_zero=True)  # ζ
    amplitude: list[float] = dataclasses.field(
        default_factory=lambda: [0.3, 1.0],
        metadata={"check": (_range, "[low, high] radians with 0 < low <= high")},
    )


@dataclasses.dataclass
class DataConfig:
    datasets: list[str] = distinct_names(DATASETS, DATASETS)
    num_series: int = at_least(1500, 10)
    validation_fraction: float = fraction(0.2)
    test_fraction: float = fraction(0.2)
    missing_rate: float = fraction(0.0, allow_zero=True)  # of train/validation time steps
    sines: SinesConfig = section(SinesConfig)
    pendulum: PendulumConfig = section(PendulumConfig)


@dataclasses.dataclass
class KoVAEConfig:
    latent: int = at_least(16, 1)
    hidden: int = at_least(20, 1)
    kl_weights: list[float] = positive_list([0.007], "KL weights")  # a grid (selection)
    prediction_weights: list[float] = positive_list([1.0], "prediction weights")
    kl_against: str = choice("posterior", ("posterior", "independent"))
    bidirectional: bool = False  # posterior reads the whole series (the reference code's)
    max_radius: float | None = None  # bound on the operator's eigenvalues (null: none)


@dataclasses.dataclass
class GRUVAEConfig:
    hidden: int = at_least(20, 1)
    kl_weights: list[float] = positive_list([1.0], "KL weights")  # a grid (selection)


@dataclasses.dataclass
class SelectionConfig:
    discriminative_steps: int = at_least(2000, 1)  # of the validation score choosing weights


@dataclasses.dataclass
class ModelsConfig:
    models: list[str] = distinct_names(TRAINED, TRAINED)
    kovae: KoVAEConfig = section(KoVAEConfig)
    gru_vae: GRUVAEConfig = section(GRUVAEConfig)


@dataclasses.dataclass
class EvaluationConfig:
    discriminative_steps: int = at_least(2000, 1)
    predictive_steps: int = at_least(5000, 1)
    batch_size: int = at_least(128, 1)
    eigen_samples: int = at_least(256, 1)
    plot_series: int = at_least(6, 1)


@dataclasses.dataclass
class KoopmanVAEExperimentConfig:
    experiment: str = "koopman_vae"
    seed: int = 0
    num_seeds: int = at_least(3, 1)
    figures: bool = True
    data: DataConfig = section(DataConfig)
    model: ModelsConfig = section(ModelsConfig)
    evaluation: EvaluationConfig = section(EvaluationConfig)
    selection: SelectionConfig = section(SelectionConfig)
    train: TrainConfig = section(TrainConfig, steps=1500, batch_size=64, lr=2e-3,
                                 schedule="cosine", chunk=250,
                                 best_metric="validation.loss")  # fmt: skip


# --- data -------------------------------------------------------------------------------------


def sines(cfg: DictConfig, n: int, *, key) -> np.ndarray:
    """`n` series of TimeGAN's sines `(n, length, channels)` in `[0, 1]`."""
    s = cfg.data.sines
    kf, kp = jax.random.split(key)
    freq = np.asarray(jax.random.uniform(kf, (n, 1, s.channels), maxval=s.max_frequency))
    phase = np.asarray(jax.random.uniform(kp, (n, 1, s.channels), maxval=s.max_phase))
    t = np.arange(s.length)[None, :, None]
    return (np.sin(freq * t + phase) + 1.0) / 2.0


class _Pendulum(eqx.Module):
    omega: float
    zeta: float

    def __call__(self, t, y, args):
        theta, velocity = y[..., 0], y[..., 1]
        acc = -(self.omega**2) * jnp.sin(theta) - 2 * self.zeta * self.omega * velocity
        return jnp.stack([velocity, acc], -1)


def pendulum(cfg: DictConfig, n: int, *, key) -> np.ndarray:
    """`n` damped-pendulum series `(n, length, 2)` of `(θ, θ'/ω₀)` mapped to `[0, 1]`."""
    p = cfg.data.pendulum
    ka, kp = jax.random.split(key)
    low, high = p.amplitude
    amplitude = jax.random.uniform(ka, (n,), minval=low, maxval=high)
    phase = jax.random.uniform(kp, (n,), maxval=2 * np.pi)
    omega = p.natural_frequency
    y0 = jnp.stack([amplitude * jnp.cos(phase), -amplitude * omega * jnp.sin(phase)], -1)
    ts = p.dt * jnp.arange(p.length, dtype=y0.dtype)
    ys = odeint(_Pendulum(omega, p.damping_ratio), y0, ts, rtol=1e-7, atol=1e-7, batch="joint")
    ys = np.asarray(ys.ys)  # (n, length, 2)
    values = np.stack([ys[..., 0], ys[..., 1] / omega], -1)
    return (values / (1.05 * high) + 1.0) / 2.0


def true_modes(cfg: DictConfig, dataset: str) -> dict:
    """The true frequency band `[low, high]` (rad per time unit), the step `dt` and, for the
    pendulum, its small-amplitude frequency `ω_d` and decay per step `|λ|`."""
    if dataset == "sines":
        return {"dt": 1.0, "band": [0.0, cfg.data.sines.max_frequency]}
    p = cfg.data.pendulum
    omega_d = p.natural_frequency * np.sqrt(1 - p.damping_ratio**2)
    low = omega_d * (1 - max(p.amplitude) ** 2 / 16)
    modulus = np.exp(-p.damping_ratio * p.natural_frequency * p.dt)
    return {"dt": p.dt, "band": [low, omega_d], "frequency": omega_d, "modulus": modulus}


def make_dataset(cfg: DictConfig, dataset: str, seed: int) -> dict:
    """Seed `seed`'s series of `dataset`, split into train/validation/test (index arrays),
    and the model inputs of train and validation (with missing steps as NaN when asked)."""
    d = cfg.data
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), DATASETS.index(dataset))
    data_key, split_key, drop_key = jax.random.split(key, 3)
    values = (sines if dataset == "sines" else pendulum)(cfg, d.num_series, key=data_key)
    order = np.asarray(jax.random.permutation(split_key, d.num_series))
    n_test, n_val = (
        round(d.test_fraction * d.num_series),
        round(d.validation_fraction * d.num_series),
    )
    split = {"test": order[:n_test], "validation": order[n_test : n_test + n_val],
             "train": order[n_test + n_val :]}  # fmt: skip
    inputs = values
    if d.missing_rate > 0:
        inputs = np.asarray(drop_observations(values, d.missing_rate, key=drop_key))
    return {"values": values.astype(np.float32), "inputs": inputs.astype(np.float32), **split}


# --- models -----------------------------------------------------------------------------------


def build_model(cfg: DictConfig, name: str, channels: int, *, key):
    """The model `name` for series of `channels`."""
    irregular = cfg.data.missing_rate > 0
    if name == "kovae":
        m = cfg.model.kovae
        return KoopmanVAE(channels=channels, latent=m.latent, hidden=m.hidden, irregular=irregular,
                          max_radius=m.max_radius, bidirectional=m.bidirectional,
                          key=key)  # fmt: skip
    m = cfg.model.gru_vae
    return GaussianSequentialVAE(channels=channels, hidden=m.hidden, irregular=irregular, key=key)


class _Loss(eqx.Module):
    """A model's loss on a batch `{"values", "weights"}`, with its terms as metrics. The
    weights `(kl_weight, prediction_weight)` are read from the batch (every row holds the
    same), so every point of a weight grid, and every seed, share one compiled step per model
    kind and shape; `kl_against` is KoVAE's (`None` for the GRU VAE)."""

    kl_against: str | None = eqx.field(static=True)

    def __call__(self, model, batch, key):
        kl_weight, prediction_weight = batch["weights"][0, 0], batch["weights"][0, 1]
        if self.kl_against is None:
            out = model.loss(batch["values"], key=key, kl_weight=kl_weight)
        else:
            out = model.loss(batch["values"], key=key, kl_weight=kl_weight,
                             prediction_weight=prediction_weight,
                             kl_against=self.kl_against)  # fmt: skip
        return out.total, {"reconstruction": out.reconstruction, "kl": out.kl,
                           "prediction": out.prediction}  # fmt: skip


def _with_weights(values, weights: tuple[float, float]) -> dict:
    """`{"values", "weights"}`: the series and the loss weights repeated once per series."""
    values = jnp.asarray(values)
    return {"values": values,
            "weights": jnp.broadcast_to(jnp.asarray(weights, values.dtype),
                                        (values.shape[0], 2))}  # fmt: skip


class _ValidationLoss(eqx.Module):
    """`{"loss"}`: the model's loss on the validation series (`fit`'s evaluation)."""

    data: dict
    loss: _Loss

    def __call__(self, model, key):
        return {"loss": self.loss(model, self.data, key)[0]}


def _loss(cfg: DictConfig, name: str) -> _Loss:
    return _Loss(cfg.model.kovae.kl_against if name == "kovae" else None)


def weight_grid(cfg: DictConfig, name: str) -> list[tuple[float, float]]:
    """The `(kl_weight, prediction_weight)` points tried for model `name` (the GRU VAE's
    prediction weight is 0: it has no such term)."""
    if name == "kovae":
        m = cfg.model.kovae
        return [(float(b), float(g)) for b in m.kl_weights for g in m.prediction_weights]
    return [(float(b), 0.0) for b in cfg.model.gru_vae.kl_weights]


def _eigen_report(eigenvalues: np.ndarray, modes: dict) -> dict:
    """Frequencies `|arg λ| / dt` of the eigenvalues against the true band and frequency.
    `in_band_fraction` counts the oscillating (complex) eigenvalues only: a real eigenvalue has
    frequency 0, inside the sines' band `[0, max]` whatever it is (a collapsed mode near 0 or
    1), so it says nothing about the frequencies learnt; 0 when there is no complex one."""
    dt, (low, high) = modes["dt"], modes["band"]
    freq = np.abs(np.angle(eigenvalues)) / dt
    modulus = np.abs(eigenvalues)
    complex_ = np.abs(eigenvalues.imag) > 1e-6
    report = {
        "spectral_radius": float(modulus.max()),
        "in_band_fraction": float(np.mean(((freq >= low) & (freq <= high))[complex_]))
        if complex_.any()
        else 0.0,
        "leading_pair_frequency": float(freq[complex_][np.argmax(modulus[complex_])])
        if complex_.any()
        else None,
    }
    if "frequency" in modes:
        nearest = int(np.argmin(np.abs(freq - modes["frequency"])))
        report["nearest_frequency"] = float(freq[nearest])
        report["nearest_relative_error"] = float(
            abs(freq[nearest] - modes["frequency"]) / modes["frequency"]
        )
        report["nearest_modulus"] = float(modulus[nearest])
    return report


def _evaluate(cfg, dataset, name, data, seed, run_dir, resume, shared) -> dict:
    """One (dataset, model, seed) row."""
    start = time.perf_counter()
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1 + DATASETS.index(dataset)),
                             list(MODELS).index(name))  # fmt: skip
    model_key, train_key, sample_key, score_key, eigen_key = jax.random.split(key, 5)
    values, test = data["values"], data["test"]
    real = values[test]
    row = {"dataset": dataset, "model": name, "seed": seed}
    if name == "real":
        synthetic = values[data["train"][: len(test)]]
        if len(synthetic) < len(test):
            raise ConfigError("data.num_series leaves fewer train than test series")
    else:
        models, grid = _select(cfg, dataset, name, data, seed, run_dir, resume, shared,
                               model_key, train_key)  # fmt: skip
        chosen = min(grid, key=lambda r: r["validation_discriminative"])  # first of a tie
        model = models[chosen["index"]]
        row.update({k: chosen[k] for k in CHOSEN})
        row["grid"] = grid
        synthetic = np.asarray(eqx.filter_jit(model.sample)(len(test), values.shape[1],
                                                            key=sample_key))  # fmt: skip
        if name == "kovae":
            row.update(_kovae_spectrum(cfg, dataset, model, real, eigen_key))
    e = cfg.evaluation
    row["diversity"] = diversity(synthetic, real)
    kd, kp = jax.random.split(score_key)
    row["discriminative"] = discriminative_score(real, synthetic, key=kd,
                                                 steps=e.discriminative_steps,
                                                 batch_size=e.batch_size)  # fmt: skip
    row["predictive"] = predictive_score(real, synthetic, key=kp, steps=e.predictive_steps,
                                         batch_size=e.batch_size)  # fmt: skip
    if seed == cfg.seed:
        row["samples"] = synthetic[: e.plot_series].round(4).tolist()
    row["seconds"] = time.perf_counter() - start
    print(f"[koopman_vae] {dataset} seed {seed} {MODELS[name]}: discriminative "
          f"{row['discriminative']:.3f}, predictive {row['predictive']:.4f} "
          f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    return row


def _select(cfg, dataset, name, data, seed, run_dir, resume, shared, model_key, train_key):
    """Train model `name` at every point of its weight grid (the same initialisation and
    training noise for each) and score each on the validation series: the trained models and
    one row per point (weights, validation loss and best step, validation discriminative
    score). Nothing here reads the test series."""
    values = data["values"]
    inputs, validation = data["inputs"][data["train"]], data["inputs"][data["validation"]]
    real_validation = values[data["validation"]]
    loss = shared.setdefault(name, _loss(cfg, name))
    key = jax.random.fold_in(train_key, 1)
    sample_key, score_key = jax.random.split(key)
    models, rows = [], []
    for index, weights in enumerate(weight_grid(cfg, name)):
        tag = f"kl{weights[0]:g}" + (f"-pred{weights[1]:g}" if name == "kovae" else "")
        result = fit_from_config(
            loss, build_model(cfg, name, values.shape[-1], key=model_key),
            _with_weights(inputs, weights), cfg.train, key=train_key,
            run_dir=run_dir / "fits" / f"{dataset}-{name}-seed{seed}-{tag}", resume=resume,
            has_aux=True, optimizer=shared["optimizer"],
            eval_fn=_ValidationLoss(_with_weights(validation, weights), loss),
        )  # fmt: skip
        model = result.model if result.best_model is None else result.best_model
        synthetic = np.asarray(eqx.filter_jit(model.sample)(len(real_validation), values.shape[1],
                                                            key=sample_key))  # fmt: skip
        score = discriminative_score(real_validation, synthetic, key=score_key,
                                     steps=cfg.selection.discriminative_steps,
                                     batch_size=cfg.evaluation.batch_size)  # fmt: skip
        models.append(model)
        rows.append({"index": index, "kl_weight": weights[0], "prediction_weight": weights[1],
                     "validation_loss": result.best_value, "best_step": result.best_step,
                     "validation_discriminative": score})  # fmt: skip
        print(f"[koopman_vae] {dataset} seed {seed} {MODELS[name]} {tag}: validation "
              f"discriminative {score:.3f}", flush=True)  # fmt: skip
    return models, rows


def diversity(synthetic: np.ndarray, real: np.ndarray) -> float:
    """The spread of the samples over that of the real series: the standard deviation across
    series, averaged over steps and channels, of `synthetic` over that of `real` (1: as
    diverse; near 0: nearly identical samples, a collapsed prior)."""
    return float(np.mean(np.std(synthetic, axis=0)) / np.mean(np.std(real, axis=0)))


def _kovae_spectrum(cfg, dataset, model: KoopmanVAE, real, key) -> dict:
    """The eigenvalues of KoVAE's operator on prior samples and on the test posterior means,
    their report against the true modes, and the prior's linear residual."""
    length = real.shape[1]
    prior_key, residual_key = jax.random.split(key)
    a_prior = eqx.filter_jit(model.operator)(key=prior_key,
                                             num_samples=cfg.evaluation.eigen_samples,
                                             length=length)  # fmt: skip
    means = eqx.filter_jit(jax.vmap(lambda v: model.encode(v)[0]))(jnp.asarray(real))
    a_post = koopman_operator(means)
    z = eqx.filter_jit(jax.vmap(lambda k: model.prior(length, key=k)[0]))(
        jax.random.split(residual_key, cfg.evaluation.eigen_samples))  # fmt: skip
    z = np.asarray(z, dtype=np.float64)
    residual = z[:, 1:] - z[:, :-1] @ np.asarray(a_prior, dtype=np.float64).T
    modes = true_modes(cfg, dataset)
    out = {"prior_linear_residual": float(np.sum(residual**2) / np.sum(z[:, 1:] ** 2))}
    for where, a in (("prior", a_prior), ("posterior", a_post)):
        eig = np.linalg.eigvals(np.asarray(a, dtype=np.float64))
        out[f"{where}_eigenvalues"] = [[float(v.real), float(v.imag)] for v in eig]
        out.update({f"{where}_{k}": v for k, v in _eigen_report(eig, modes).items()})
    return out


# --- the experiment ---------------------------------------------------------------------------


def _check(cfg: DictConfig) -> None:
    d = cfg.data
    n_test = round(d.test_fraction * d.num_series)
    n_val = round(d.validation_fraction * d.num_series)
    n_train = d.num_series - n_test - n_val
    if min(n_test, n_val) < 2 or n_train < n_test:
        raise ConfigError(
            f"data.test_fraction={d.test_fraction} and data.validation_fraction="
            f"{d.validation_fraction} of data.num_series={d.num_series} must leave at least 2 "
            "test and 2 validation series and no fewer train than test series (the 'real' "
            "floor scores as many train series as test series)"
        )
    if cfg.train.batch_size is not None and cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {n_train} train "
                          "series")  # fmt: skip


@register("koopman_vae", KoopmanVAEExperimentConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """KoVAE vs a GRU VAE on sines and a damped pendulum (TimeGAN scores, latent spectra)."""
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    names = [*cfg.model.models, "real"]
    shared = {"optimizer": optimizer_from_config(cfg.train)}
    results_path, done = start_results(run_dir, ("dataset", "model", "seed"), resume=resume)
    for dataset in cfg.data.datasets:
        for seed in seeds:
            data = None
            for name in (n for n in names if (dataset, n, seed) not in done):
                data = data or make_dataset(cfg, dataset, seed)
                row = _evaluate(cfg, dataset, name, data, seed, run_dir, resume, shared)
                done[(dataset, name, seed)] = row
                append_result(results_path, row)
    return _report(cfg, run_dir, names, seeds, done)


def _verdict(a: dict, b: dict) -> str:
    """`lower`/`higher`/`no difference` of `a` against `b` (means), where a difference no
    larger than the larger standard deviation over seeds is no difference."""
    diff, spread = a["mean"] - b["mean"], max(a["std"], b["std"])
    if abs(diff) <= spread:
        return "no difference"
    return "lower" if diff < 0 else "higher"


EIGEN_FIGURES = ("prior_spectral_radius", "prior_in_band_fraction", "prior_leading_pair_frequency",
                 "prior_nearest_frequency", "prior_nearest_relative_error", "prior_nearest_modulus",
                 "posterior_in_band_fraction", "posterior_nearest_frequency",
                 "posterior_nearest_relative_error", "prior_linear_residual")  # fmt: skip


def _report(cfg, run_dir, names, seeds, done) -> dict:
    results, comparison, spectra, selected = {}, {}, {}, {}
    for dataset in cfg.data.datasets:
        rows = {n: [done[(dataset, n, s)] for s in seeds] for n in names}
        results[dataset] = {
            n: {k: summary_stats([r[k] for r in rows[n]]) for k in (*SCORES, "diversity")}
            for n in names
        }
        selected[dataset] = {
            n: {"kl_weight": [r["kl_weight"] for r in rows[n]],
                "prediction_weight": [r["prediction_weight"] for r in rows[n]],
                "validation_discriminative": summary_stats(
                    [r["validation_discriminative"] for r in rows[n]])}
            for n in names if n != "real"
        }  # fmt: skip
        if "kovae" in names and "gru_vae" in names:
            comparison[dataset] = {k: "KoVAE " + _verdict(results[dataset]["kovae"][k],
                                                          results[dataset]["gru_vae"][k])
                                   for k in SCORES}  # fmt: skip
        if "kovae" in names:
            kovae = rows["kovae"]
            spectra[dataset] = {
                k: summary_stats([r[k] for r in kovae])
                for k in EIGEN_FIGURES
                if all(r.get(k) is not None for r in kovae)
            }
            spectra[dataset]["truth"] = true_modes(cfg, dataset)
    if "kovae" in names and "gru_vae" in names:
        target_met = all(
            results[d]["kovae"]["discriminative"]["mean"]
            <= results[d]["gru_vae"]["discriminative"]["mean"]
            + max(
                results[d]["kovae"]["discriminative"]["std"],
                results[d]["gru_vae"]["discriminative"]["std"],
            )  # fmt: skip
            for d in cfg.data.datasets
        )
    else:
        target_met = False
    table = _table(results, names)
    (run_dir / "results.md").write_text(
        f"# KoVAE vs GRU VAE: {len(seeds)} seed(s), mean ± sample std over seeds\n\n"
        "Discriminative score |acc − 0.5| and predictive score (MAE, train on synthetic, test "
        "on real) on the test series; 'real' scores train series (the floor).\n\n" + table
    )
    if cfg.figures:
        _samples_figure(run_dir / "samples.png", cfg, names, done)
        _eigen_figure(run_dir / "eigenvalues.png", cfg, names, done)
    return {
        "seeds": seeds,
        "models": names,
        "results": results,
        "comparison": comparison,
        "spectra": spectra,
        "selected": selected,
        "table_markdown": table,
        "target": (
            "KoVAE's discriminative score no higher than the GRU VAE's plus the larger standard "
            "deviation over seeds, on every data set"
        ),
        "target_met": bool(target_met),
        "steps": cfg.train.steps,
    }


def _table(results: dict, names) -> str:
    lines = ["| data | model | discriminative | predictive |", "|---|---|---|---|"]
    for dataset, by_model in results.items():
        for n in names:
            d, p = by_model[n]["discriminative"], by_model[n]["predictive"]
            lines.append(f"| {dataset} | {MODELS[n]} | {d['mean']:.3f} ± {d['std']:.3f} | "
                         f"{p['mean']:.4f} ± {p['std']:.4f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# --- figures ----------------------------------------------------------------------------------


def _samples_figure(path: Path, cfg, names, done) -> None:
    datasets = list(cfg.data.datasets)
    fig = Figure(figsize=(4 * len(names), 2.8 * len(datasets)))
    axes = np.asarray(fig.subplots(len(datasets), len(names), squeeze=False))
    for i, dataset in enumerate(datasets):
        real = make_dataset(cfg, dataset, cfg.seed)
        real = real["values"][real["test"][: cfg.evaluation.plot_series]]
        for j, n in enumerate(names):
            ax = axes[i, j]
            series = real if n == "real" else np.asarray(done[(dataset, n, cfg.seed)]["samples"])
            for k, s in enumerate(series):
                ax.plot(s[:, 0], f"C{k % 10}-", lw=1)
            ax.set(title=f"{dataset}: {'real test' if n == 'real' else MODELS[n]}", ylim=(0, 1))
        axes[i, 0].set_ylabel("channel 0")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _eigen_figure(path: Path, cfg, names, done) -> None:
    datasets = [d for d in cfg.data.datasets if "kovae" in names]
    if not datasets:
        return
    fig = Figure(figsize=(4.5 * len(datasets), 4.5))
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    for ax, dataset in zip(axes, datasets, strict=True):
        row, modes = done[(dataset, "kovae", cfg.seed)], true_modes(cfg, dataset)
        ax.plot(circle.real, circle.imag, "k-", lw=0.8)
        for sign in (1, -1):
            for f in modes["band"]:
                angle = sign * f * modes["dt"]
                ax.plot([0, np.cos(angle)], [0, np.sin(angle)], "C2--", lw=0.8)
        if "frequency" in modes:
            lam = modes["modulus"] * np.exp(
                1j * modes["frequency"] * modes["dt"] * np.array([1, -1])
            )
            ax.plot(lam.real, lam.imag, "k*", ms=12, label="true (small amplitude)")
        for where, style in (("prior", "C0o"), ("posterior", "C1x")):
            eig = np.asarray(row[f"{where}_eigenvalues"])
            ax.plot(eig[:, 0], eig[:, 1], style, label=f"KoVAE {where}")
        ax.set(title=f"{dataset}: eigenvalues (true band dashed)", aspect="equal",
               xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xlabel="Re λ", ylabel="Im λ")  # fmt: skip
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
