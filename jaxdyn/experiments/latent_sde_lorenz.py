"""A latent SDE on a stochastic Lorenz attractor (Li et al. 2020, §7.2; torchsde's
`examples/latent_sde_lorenz.py`).

Data. Paths of the Itô SDE

    dx = σ (y - x) dt + α₁ x dW₁,
    dy = (x (ρ - z) - y) dt + α₂ y dW₂,
    dz = (x y - β z) dt + α₃ z dW₃,

(σ, ρ, β) = (10, 28, 8/3), multiplicative noise α = (0.1, 0.28, 0.3) as in torchsde's example,
from `x(0) ~ N(0, I)`, integrated by `sdeint` (Milstein, steps `sim_dt`) and saved at
`num_times` equally spaced times on `[0, horizon]`; each coordinate is standardised with the
training paths' mean and standard deviation, then observation noise `N(0, noise_std²)` is
added. `num_train` training paths and `num_test` held-out paths.

Model. A `jaxdyn.models.LatentSDE` with a 4-dimensional latent (learned MLP prior drift,
posterior drift with the backwards-GRU context, shared per-dimension diffusion, linear
decoder to the 3 coordinates), trained on minibatches of paths, one posterior path each, by
the ELBO with a linearly warmed-up KL weight.

Evaluation (held-out paths, `eval_samples` posterior paths each): the expected
log-likelihood `E_q[log p(x | z)]`, `KL(q(z0) ‖ p(z0))`, the path KL and the ELBO, per path
(sums over its `num_times × 3` observations) and per observation; the RMSE of the
posterior-mean reconstruction against the observations (standardised units). Target: that
RMSE at most `target.reconstruction_rmse`.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, positive
from ..models.latent_sde import LatentSDE
from ..plotting import Figure, loss_curve
from ..solve import sdeint
from ..train import kl_warmup, read_metrics
from ._registry import register
from .latent_sde_sine import LatentSDEModelConfig, build_latent_sde, fit_with_kl_warmup


def _triple(values) -> bool:
    return len(values) == 3 and all(v >= 0 for v in values)


@dataclasses.dataclass
class LorenzDataConfig:
    num_train: int = at_least(256, 1)
    num_test: int = at_least(32, 1)
    num_times: int = at_least(51, 2)
    horizon: float = positive(1.0)
    sigma: float = positive(10.0)
    rho: float = positive(28.0)
    beta: float = positive(8.0 / 3.0)
    alpha: list[float] = dataclasses.field(
        default_factory=lambda: [0.1, 0.28, 0.3],
        metadata={"check": (_triple, "a list of three values >= 0")},
    )
    x0_std: float = positive(1.0)
    sim_dt: float = positive(0.002)
    noise_std: float = at_least(0.01, 0.0)


@dataclasses.dataclass
class LorenzEvaluationConfig:
    eval_samples: int = at_least(16, 2)
    plot_series: int = at_least(3, 1)
    plot_paths: int = at_least(16, 1)


@dataclasses.dataclass
class LorenzTargetConfig:
    reconstruction_rmse: float = positive(0.1)


@dataclasses.dataclass
class LatentSDELorenzConfig:
    experiment: str = "latent_sde_lorenz"
    seed: int = 0
    data: LorenzDataConfig = dataclasses.field(default_factory=LorenzDataConfig)
    model: LatentSDEModelConfig = dataclasses.field(
        default_factory=lambda: LatentSDEModelConfig(
            latent_size=4,
            context_size=16,
            hidden_size=32,
            width=64,
            depth=2,
            prior="mlp",
            time_input="none",
            obs_std=0.01,
            dt0=0.02,
            n_samples=1,
            kl_warmup=300,
        )  # fmt: skip
    )
    evaluation: LorenzEvaluationConfig = dataclasses.field(default_factory=LorenzEvaluationConfig)
    target: LorenzTargetConfig = dataclasses.field(default_factory=LorenzTargetConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            steps=1500, batch_size=32, optimizer="adam", lr=3e-3, schedule="cosine", chunk=250
        )  # fmt: skip
    )


class _LorenzDrift(eqx.Module):
    sigma: float
    rho: float
    beta: float

    def __call__(self, t, u, args):
        x, y, z = u[0], u[1], u[2]
        return jnp.stack([self.sigma * (y - x), x * (self.rho - z) - y, x * y - self.beta * z])


class _Multiplicative(eqx.Module):
    alpha: tuple[float, float, float]

    def __call__(self, t, u, args):
        return jnp.asarray(self.alpha, u.dtype) * u


def lorenz_paths(d: DictConfig, ts: np.ndarray, key) -> jax.Array:
    """`num_train + num_test` stochastic Lorenz paths at `ts`, shape `(paths, time, 3)`."""
    x0_key, path_key = jax.random.split(key)
    count = d.num_train + d.num_test
    x0 = d.x0_std * jax.random.normal(x0_key, (count, 3), jnp.float32)
    drift = _LorenzDrift(d.sigma, d.rho, d.beta)
    diffusion = _Multiplicative(tuple(float(a) for a in d.alpha))
    solve = eqx.filter_jit(
        lambda x0, key: (
            sdeint(
                drift, diffusion, x0, ts, key=key, solver="milstein", dt0=d.sim_dt, batch="vmap"
            ).ys
        )  # fmt: skip
    )
    return solve(x0, path_key)


@register("latent_sde_lorenz", LatentSDELorenzConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """A latent SDE (latent dimension 4) on a stochastic Lorenz attractor: held-out ELBO terms."""
    d, m, e = cfg.data, cfg.model, cfg.evaluation
    ts = np.linspace(0.0, d.horizon, d.num_times).astype(np.float32)
    data_key, noise_key, model_key, train_key, eval_key = jax.random.split(
        jax.random.key(cfg.seed), 5
    )
    paths = np.asarray(lorenz_paths(d, ts, data_key))
    if not np.all(np.isfinite(paths)):
        raise ValueError("the simulated Lorenz paths diverged: reduce data.sim_dt")
    train = paths[: d.num_train]  # standardised by the training paths' statistics
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
    noise = d.noise_std * np.asarray(jax.random.normal(noise_key, paths.shape, jnp.float32))
    xs = ((paths - mean) / std + noise).astype(np.float32)
    train_xs, test_xs = jnp.asarray(xs[: d.num_train]), jnp.asarray(xs[d.num_train :])
    model = build_latent_sde(m, 3, model_key)

    def loss_fn(model: LatentSDE, step, batch, key):
        weight = kl_warmup(step, m.kl_warmup)
        keys = jax.random.split(key, batch.shape[0])
        out = jax.vmap(
            lambda x, k: model.elbo(ts, x, key=k, n_samples=m.n_samples, kl_weight=weight)
        )(batch, keys)
        out = jax.tree.map(jnp.mean, out)
        metrics = {"elbo": out.log_likelihood - out.kl_z0 - out.kl_path, "kl_weight": weight,
                   "log_likelihood": out.log_likelihood, "kl_path": out.kl_path,
                   "kl_z0": out.kl_z0}  # fmt: skip
        return -out.value, metrics

    result = fit_with_kl_warmup(loss_fn, model, train_xs, cfg.train, key=train_key,
                                run_dir=run_dir, resume=resume)  # fmt: skip
    model = result.model.model

    # Held-out paths: ELBO terms (one key per path) and posterior reconstructions.
    test_keys = jax.random.split(eval_key, d.num_test)

    @eqx.filter_jit
    def evaluate(model, xs, keys):
        terms = jax.vmap(lambda x, k: model.elbo(ts, x, key=k, n_samples=e.eval_samples))(xs, keys)
        recon = jax.vmap(
            lambda x, k: model.decode(
                model.sample_posterior(ts, x, ts, key=k, n_samples=e.eval_samples)
            )
        )(xs, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
        return terms, recon

    terms, recon = evaluate(model, test_xs, test_keys)
    terms = {k: float(np.mean(v)) for k, v in terms._asdict().items()}
    recon = np.asarray(recon)  # (test, samples, time, 3)
    rmse = float(np.sqrt(np.mean((recon.mean(axis=1) - np.asarray(test_xs)) ** 2)))
    prior = eqx.filter_jit(
        lambda model, key: model.decode(model.sample_prior(ts, key=key, n_samples=e.plot_paths))
    )(model, jax.random.fold_in(eval_key, 2))
    per_obs = d.num_times * 3

    _reconstruction_figure(run_dir, ts, np.asarray(test_xs), recon, e.plot_series)
    _lorenz_3d_figure(run_dir, np.asarray(test_xs), recon, np.asarray(prior), e.plot_paths)
    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        title = "latent_sde_lorenz: -(log-likelihood - KL weight x KL), per path"
        loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "loss.png", title=title)
    return {
        "target": {"reconstruction_rmse": float(cfg.target.reconstruction_rmse)},
        "target_met": bool(rmse <= cfg.target.reconstruction_rmse),
        "test_reconstruction_rmse": rmse,
        "test_log_likelihood": terms["log_likelihood"],
        "test_kl_z0": terms["kl_z0"],
        "test_kl_path": terms["kl_path"],
        "test_elbo": terms["log_likelihood"] - terms["kl_z0"] - terms["kl_path"],
        "test_log_likelihood_per_observation": terms["log_likelihood"] / per_obs,
        "test_elbo_per_observation": (terms["log_likelihood"] - terms["kl_z0"] - terms["kl_path"])
        / per_obs,  # fmt: skip
        "per_path": f"sums over {d.num_times} times x 3 coordinates (standardised units)",
        "num_train": int(d.num_train),
        "num_test": int(d.num_test),
        "steps": result.step,
    }


def _reconstruction_figure(run_dir, ts, xs, recon, n_series) -> None:
    n_series = min(n_series, xs.shape[0])
    fig = Figure(figsize=(10, 2.4 * n_series))
    axes = np.atleast_2d(fig.subplots(n_series, 3, sharex=True))
    lower, upper = np.quantile(recon, [0.025, 0.975], axis=1)
    for i in range(n_series):
        for j, name in enumerate("xyz"):
            ax = axes[i, j]
            ax.fill_between(ts, lower[i, :, j], upper[i, :, j], color="C0", alpha=0.3, lw=0,
                            label="posterior 95%")  # fmt: skip
            ax.plot(ts, recon[i, :, :, j].mean(axis=0), "C0-", lw=1.2, label="posterior mean")
            ax.plot(ts, xs[i, :, j], "k.", ms=3, label="data")
            ax.set(ylabel=f"test path {i}" if j == 0 else None)
            if i == 0:
                ax.set_title(f"coordinate {name}")
            if i == n_series - 1:
                ax.set_xlabel("t")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("latent SDE reconstructions of held-out Lorenz paths (standardised)")
    fig.tight_layout()
    fig.savefig(run_dir / "reconstructions.png", dpi=110)


def _lorenz_3d_figure(run_dir, xs, recon, prior, n_paths) -> None:
    fig = Figure(figsize=(14, 4.8))
    panels = (
        ("held-out data", xs[:n_paths]),
        ("posterior samples (one per path)", recon[:n_paths, 0]),
        ("prior samples", prior[:n_paths]),
    )
    for k, (title, paths) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1, projection="3d")
        for i, path in enumerate(paths):
            ax.plot(path[:, 0], path[:, 1], path[:, 2], lw=0.8, color=f"C{i % 10}")
            ax.scatter(path[0, 0], path[0, 1], path[0, 2], marker="x", s=12, color=f"C{i % 10}")
        ax.set(title=title, xlabel="x", ylabel="y", zlabel="z")
    fig.tight_layout()
    fig.savefig(run_dir / "lorenz_3d.png", dpi=110)
