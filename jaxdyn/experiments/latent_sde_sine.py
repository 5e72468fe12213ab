"""A latent SDE on an irregularly sampled sine (Li et al. 2020, §7.1; torchsde's
`examples/latent_sde.py`).

Data. `num_obs` observations `x_k = A sin(2π ν t_k) + ε_k`, `ε_k ~ N(0, noise_std²)`, at
sorted uniform random times `t_k` in `obs_range`; `num_validation` and `num_test` held-out
noiseless points `A sin(2π ν s_j)` at other uniform random times in `obs_range`.

Model. A `jaxdyn.models.LatentSDE` whose latent starts at `t0 = 0`, fitted to the one series
by maximising the ELBO estimated with `model.n_samples` posterior paths per step; the KL weight
rises linearly from `1/warmup` to 1 over `model.kl_warmup` steps (`kl_warmup`, read from a step
counter kept with the model). The default follows torchsde's `examples/latent_sde.py`
(`--data irregular_sine`) as closely as the model allows: a one-dimensional latent observed
directly (identity decoder) through a Laplace likelihood of scale 0.05; a fixed OU prior
`dz = θ(μ - z) dt + σ dW` with θ = 1, μ = 0 and `p(z0)` its stationary law `N(0, σ²/2θ)`
(σ = `diffusion_scale`: torchsde's 0.5, here 0.75, chosen on validation: see below); the
posterior `dz = f(sin t, cos t, z) dt + σ dW` sharing the fixed diffusion,
`f` a tanh MLP whose last layer starts at zero; the path KL integrated on `[0, horizon]`, past
the last observation; Euler–Maruyama with dt = 0.01; Adam, lr 1e-2 decayed by 0.999 per step;
KL warm-up over 100 steps. Differences: `q(z0)` comes from the (backwards-GRU) encoder rather
than being a free parameter (the same thing for one series), the drift network is smaller
(`width` 64, torchsde 200), and there are fewer steps and posterior samples per step (2000 x 64
against 5000 x 512), to finish in a few minutes on 2 CPU cores. The earlier setup (learned OU
prior and per-dimension diffusion, posterior drift with the encoder's context and t, linear
decoder, Gaussian likelihood) is selectable: `model.prior=ou model.diffusion=learned
model.diffusion_scale=1.0 model.time_input=t model.posterior_context=true
model.activation=softplus model.zero_init=false model.decoder=linear model.likelihood=normal
model.latent=2 ...` (see configs/latent_sde_sine.yaml).

Why σ. With torchsde's σ = 0.5 the band covered 0.853 ± 0.054 of the test points (0.827 of
the validation points), short of the 0.9 target. The cause is the prior, not the fit: the
exact posterior under the same OU prior with a Gaussian-likelihood surrogate (a Gaussian
process with covariance
`σ²/(2θ) e^{-θ|s-t|}`, given the observations with Gaussian noise of the Laplace likelihood's
variance 2 · 0.05²; `ou_posterior`) covers the same validation points 0.80 / 0.89 / 0.805 on
seeds 0–2, where the latent SDE's band covered 0.80 / 0.885 / 0.795: the variational
posterior reproduces the exact one, whose band is too narrow in the unobserved gaps because
σ = 0.5 makes the prior too smooth for `0.8 sin(2πt)` (that process's log marginal likelihood
of the 16 observations is highest near σ = 0.9–1.0 on each seed, 7–11 nats above σ = 0.5).
A closer fit (longer training, more posterior samples per step, torchsde's width or free
`q(z0)`) would only bring the band nearer to the exact posterior's. σ was therefore chosen
from {0.5, 0.625, 0.75, 1.0} as the one whose band's mean validation coverage over seeds 0–2
is closest to the nominal 0.95 (the sweep read validation points only; but the re-selection,
and its criterion, came after σ = 0.5's test miss was known). The band is of the
noiseless latent (the decoder mean), as the held-out points are the noiseless truth; a band
for new noisy observations would add the likelihood's noise. The exact posterior's coverage
(`exact_ou_posterior`) is reported beside the latent SDE's as the reference for the fit.

Evaluation. `eval_samples` posterior paths on `[0, horizon]`, decoded. The 95% band is the
pointwise 2.5%–97.5% quantile range of the decoded posterior paths (the decoder mean, without
the observation noise, which is `obs_std`). Target: the band covers at least
`target.coverage` of the test points (`num_test` noiseless points at uniform random times in
`obs_range`, from a random stream nothing else uses). Its coverage of the validation points
(drawn after the observations; the setup below was chosen looking at them) is reported beside
it. Also recorded: the band's mean width on
the observation range and the RMSE of the pointwise posterior median against the truth there.
The solves make a failed posterior path NaN: the summary counts them (`failed_paths`) and
every figure above is computed from the other paths.
"""

import dataclasses
from pathlib import Path
from statistics import NormalDist

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, PRNGKeyArray
from omegaconf import DictConfig

from ..config import at_least, positive, section
from ..plotting import Figure
from ._latent_sde import LatentSDEModelConfig, LatentSDETrainConfig, build_latent_sde, elbo_loss
from ._records import failed_rows, loss_figure
from ._registry import register
from ._training import fit_from_config


def _interval(values) -> bool:
    return len(values) == 2 and 0 <= values[0] < values[1]


@dataclasses.dataclass
class SineDataConfig:
    num_obs: int = at_least(16, 2)
    obs_range: list[float] = dataclasses.field(
        default_factory=lambda: [0.4, 1.6],
        metadata={"check": (_interval, "a list [low, high] with 0 <= low < high")},
    )
    amplitude: float = positive(0.8)
    frequency: float = positive(1.0)  # x = amplitude · sin(2π · frequency · t)
    noise_std: float = at_least(0.01, 0.0)
    horizon: float = positive(2.0)  # the posterior is shown on [0, horizon]
    # Held-out noiseless points in obs_range. The design was chosen looking at the first
    # set (drawn after the observations, from the seed's stream): it is the validation set;
    # the test set comes from a stream nothing else uses.
    num_validation: int = at_least(200, 1)
    num_test: int = at_least(200, 1)


@dataclasses.dataclass
class SineEvaluationConfig:
    eval_samples: int = at_least(512, 2)
    grid_points: int = at_least(201, 2)  # on [0, horizon], for the figure
    plot_paths: int = at_least(20, 0)


@dataclasses.dataclass
class SineTargetConfig:
    coverage: float = dataclasses.field(
        default=0.9, metadata={"check": (lambda v: 0 <= v <= 1, "in [0, 1]")}
    )


@dataclasses.dataclass
class LatentSDESineConfig:
    experiment: str = "latent_sde_sine"
    seed: int = 0
    data: SineDataConfig = section(SineDataConfig)
    model: LatentSDEModelConfig = section(
        LatentSDEModelConfig,
        latent=1,
        prior="ou_fixed",
        time_input="sincos",
        posterior_context=False,
        activation="tanh",
        zero_init=True,
        width=64,
        diffusion="constant",
        diffusion_scale=0.75,  # torchsde: 0.5; chosen on validation coverage
        ou_rate=1.0,
        decoder="identity",
        likelihood="laplace",
        obs_std=0.05,
        dt0=0.01,
        n_samples=64,
        kl_warmup=100,
        kl_to_horizon=True,
    )
    evaluation: SineEvaluationConfig = section(SineEvaluationConfig)
    target: SineTargetConfig = section(SineTargetConfig)
    train: LatentSDETrainConfig = section(
        LatentSDETrainConfig,
        steps=2000,
        batch_size=None,
        optimizer="adam",
        lr=1e-2,
        schedule="constant",
        chunk=250,
        lr_decay=0.999,
    )


def _sine(d: DictConfig, t: np.ndarray) -> np.ndarray:
    return d.amplitude * np.sin(2 * np.pi * d.frequency * t)


def sine_data(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The observation times, the noisy observations `(num_obs, 1)` and the held-out times
    `{"validation": …, "test": …}` (the test times from their own random stream)."""
    d = cfg.data
    low, high = d.obs_range
    if high > d.horizon:
        raise ValueError(f"data.obs_range {list(d.obs_range)} must lie in [0, {d.horizon}]")
    rng = np.random.default_rng(cfg.seed)
    obs_ts = np.sort(rng.uniform(low, high, d.num_obs)).astype(np.float32)
    if np.any(np.diff(obs_ts) <= 0):
        raise ValueError("two observation times coincide; change the seed")
    xs = (_sine(d, obs_ts) + d.noise_std * rng.standard_normal(d.num_obs)).astype(np.float32)
    validation_ts = np.sort(rng.uniform(low, high, d.num_validation)).astype(np.float32)
    test_rng = np.random.default_rng([cfg.seed, 14])  # used for nothing else
    test_ts = np.sort(test_rng.uniform(low, high, d.num_test)).astype(np.float32)
    return obs_ts, xs[:, None], {"validation": validation_ts, "test": test_ts}


def ou_posterior(
    obs_ts: Float[np.ndarray, " obs"],
    ys: Float[np.ndarray, " obs"],
    ts: Float[np.ndarray, " time"],
    *,
    sigma: float,
    theta: float,
    noise_var: float,
) -> tuple[Float[np.ndarray, " time"], Float[np.ndarray, " time"]]:
    """The exact posterior mean and standard deviation of `z(ts)` under the stationary OU
    prior `dz = -θ z dt + σ dW`, `z(0) ~ N(0, σ²/2θ)` (a Gaussian process with covariance
    `k(s, t) = σ²/(2θ) exp(-θ|s - t|)`), given `ys = z(obs_ts) + ε`, `ε ~ N(0, noise_var)`
    (Rasmussen & Williams 2006, eq. 2.25-2.26)."""
    obs, ts = np.asarray(obs_ts, float), np.asarray(ts, float)
    var0 = sigma**2 / (2 * theta)
    kernel = lambda a, b: var0 * np.exp(-theta * np.abs(a[:, None] - b[None, :]))  # noqa: E731
    chol = np.linalg.cholesky(kernel(obs, obs) + noise_var * np.eye(obs.shape[0]))
    cross = np.linalg.solve(chol, kernel(obs, ts))  # L^-1 K(obs, ts)
    mean = cross.T @ np.linalg.solve(chol, np.asarray(ys, float))
    var = np.maximum(var0 - np.sum(cross**2, axis=0), 0.0)
    return mean, np.sqrt(var)


def ou_reference(cfg: DictConfig, obs_ts, xs, heldout) -> dict | None:
    """The coverage of the exact posterior's central 95% band (mean ± 1.96 sd) when the
    likelihood is Gaussian with the model's likelihood variance (Laplace of scale b: 2b²):
    the band the latent SDE approximates, for the fixed-OU, constant-diffusion, identity-decoder
    model only (else None). It says how much of a coverage miss is the prior's."""
    m = cfg.model
    if (m.prior, m.diffusion, m.decoder, m.latent) != ("ou_fixed", "constant", "identity", 1):
        return None
    noise_var = 2 * m.obs_std**2 if m.likelihood == "laplace" else m.obs_std**2
    z = NormalDist().inv_cdf(0.975)
    out = {}
    for name, ts in (("coverage", heldout["test"]), ("validation_coverage", heldout["validation"])):
        mean, std = ou_posterior(obs_ts, xs[:, 0], ts, sigma=m.diffusion_scale, theta=m.ou_rate,
                                 noise_var=noise_var)  # fmt: skip
        out[name] = float(np.mean(np.abs(_sine(cfg.data, ts) - mean) <= z * std))
    return out


def posterior_band(cfg: DictConfig, model, obs_ts, xs, heldout, *, key: PRNGKeyArray) -> dict:
    """Decoded posterior paths on `[0, horizon]` (at the plot grid, the held-out and the
    observation times), the failed ones (NaN) left out, and the band's figures of merit: on
    the test times, and its coverage of the validation times."""
    d, e = cfg.data, cfg.evaluation
    grid = np.linspace(0.0, d.horizon, e.grid_points).astype(np.float32)
    test_ts = heldout["test"]
    times = np.union1d(np.union1d(grid, np.concatenate(list(heldout.values()))), obs_ts)
    sample = eqx.filter_jit(
        lambda model, key: model.decode(model.sample_posterior(
            times, jnp.asarray(xs), obs_ts, key=key, n_samples=e.eval_samples
        ))[..., 0]
    )  # fmt: skip
    paths = np.asarray(sample(model, key))  # (samples, time)
    failed = failed_rows(paths)
    if failed.all():
        raise RuntimeError(f"latent_sde_sine: all {failed.size} posterior paths failed (NaN)")
    paths = paths[~failed]
    lower, median, upper = np.quantile(paths, [0.025, 0.5, 0.975], axis=0)
    at_test, on_grid = np.searchsorted(times, test_ts), np.searchsorted(times, grid)
    in_range = (times >= d.obs_range[0]) & (times <= d.obs_range[1])

    def in_band(ts, values):
        """The fraction of `values` at times `ts` inside the band."""
        at = np.searchsorted(times, ts)
        return float(np.mean((lower[at] <= values) & (values <= upper[at])))

    validation_ts = heldout["validation"]
    return {
        "coverage": in_band(test_ts, _sine(d, test_ts)),
        "validation_coverage": in_band(validation_ts, _sine(d, validation_ts)),
        "band_mean_width": float(np.mean(upper[in_range] - lower[in_range])),
        "median_rmse": float(np.sqrt(np.mean((median[at_test] - _sine(d, test_ts)) ** 2))),
        "observed_in_band": in_band(obs_ts, xs[:, 0]),
        "failed_paths": int(failed.sum()),
        "figure": (grid, paths[:, on_grid], lower[on_grid], upper[on_grid]),
    }


@register("latent_sde_sine", LatentSDESineConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """A latent SDE on 16 irregular noisy observations of a sine: posterior band coverage."""
    d, m, e = cfg.data, cfg.model, cfg.evaluation
    obs_ts, xs, heldout = sine_data(cfg)
    model_key, train_key, eval_key = jax.random.split(jax.random.key(cfg.seed), 3)
    model = build_latent_sde(m, 1, key=model_key)
    t1 = d.horizon if m.kl_to_horizon else None

    def elbo(model, batch, weight, key):
        return model.elbo(obs_ts, batch[0], key=key, n_samples=m.n_samples, kl_weight=weight,
                          t0=0.0, t1=t1)  # fmt: skip

    result = fit_from_config(elbo_loss(elbo, m.kl_warmup), model, jnp.asarray(xs)[None],
                             cfg.train, key=train_key, run_dir=run_dir, resume=resume,
                             has_aux=True, with_step=True)  # fmt: skip
    band = posterior_band(cfg, result.model.model, obs_ts, xs, heldout, key=eval_key)

    grid, paths, lower, upper = band.pop("figure")
    _posterior_figure(run_dir, d, grid, paths, lower, upper, obs_ts, xs[:, 0], heldout["test"],
                      e.plot_paths, band["coverage"])  # fmt: skip
    rows = loss_figure(run_dir, "latent_sde_sine: -(log-likelihood - KL weight x KL)")
    final = rows[-1] if rows else {}
    return {
        "target": {"coverage": float(cfg.target.coverage)},
        "target_met": bool(band["coverage"] >= cfg.target.coverage),
        **band,
        "band": "pointwise 2.5%-97.5% quantiles of decoded posterior paths (no obs. noise)",
        "exact_ou_posterior": ou_reference(cfg, obs_ts, xs, heldout),
        "eval_samples": int(e.eval_samples),
        "final_elbo": _float(final.get("elbo")),
        "final_log_likelihood": _float(final.get("log_likelihood")),
        "final_kl_z0": _float(final.get("kl_z0")),
        "final_kl_path": _float(final.get("kl_path")),
        "num_obs": int(d.num_obs),
        "num_validation": int(d.num_validation),
        "num_test": int(d.num_test),
        "steps": result.step,
    }


def _float(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _posterior_figure(run_dir, d, grid, paths, lower, upper, obs_ts, xs, test_ts, n_paths,
                      coverage) -> None:  # fmt: skip
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    ax.axvspan(*d.obs_range, color="0.95", lw=0, label="observation range")
    ax.fill_between(grid, lower, upper, color="C0", alpha=0.25, lw=0,
                    label="95% band (2.5-97.5% quantiles)")  # fmt: skip
    for i in range(min(n_paths, paths.shape[0])):
        ax.plot(grid, paths[i], color="C0", lw=0.6, alpha=0.5,
                label="posterior samples" if i == 0 else None)  # fmt: skip
    fine = np.linspace(0, d.horizon, 400)
    ax.plot(fine, _sine(d, fine), "k--", lw=1.2, label="truth")
    ax.plot(test_ts, _sine(d, test_ts), "k.", ms=2, alpha=0.5, label="test points")
    ax.plot(obs_ts, xs, "o", color="C3", ms=5, label="observations")
    ax.set(xlabel="t", ylabel="x", title=f"latent SDE posterior: test coverage {coverage:.0%}")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(run_dir / "posterior.png", dpi=120)
