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
RMSE at most `target.reconstruction_rmse`. The solves make a failed posterior path NaN: a
held-out path with a failed sample is counted (`failed_test_paths`) and left out of every
figure above.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, positive, section
from ..models.latent_sde import LatentSDE
from ..plotting import Figure
from ..solve import sdeint
from ._latent_sde import LatentSDEModelConfig, build_latent_sde, elbo_loss
from ._records import failed_rows, loss_figure
from ._registry import register
from ._training import fit_from_config


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
    data: LorenzDataConfig = section(LorenzDataConfig)
    model: LatentSDEModelConfig = section(
        LatentSDEModelConfig,
        latent=4,
        context=16,
        hidden=32,
        width=64,
        depth=2,
        prior="mlp",
        time_input="none",
        obs_std=0.01,
        dt0=0.02,
        n_samples=1,
        kl_warmup=300,
    )
    evaluation: LorenzEvaluationConfig = section(LorenzEvaluationConfig)
    target: LorenzTargetConfig = section(LorenzTargetConfig)
    train: TrainConfig = section(TrainConfig, steps=1500, lr=3e-3, schedule="cosine", chunk=250)


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


def lorenz_paths(d: DictConfig, ts: np.ndarray, *, key: PRNGKeyArray) -> jax.Array:
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


def observe(paths: np.ndarray, num_train: int, noise_std: float, *, key: PRNGKeyArray):
    """The paths standardised by the training paths' (the first `num_train`) mean and standard
    deviation per coordinate, plus observation noise `N(0, noise_std²)` drawn from `key`."""
    train = paths[:num_train]
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
    noise = noise_std * np.asarray(jax.random.normal(key, paths.shape, jnp.float32))
    return ((paths - mean) / std + noise).astype(np.float32)


def evaluate(
    cfg: DictConfig, model: LatentSDE, ts, test_xs, *, key: PRNGKeyArray
) -> tuple[dict, int, np.ndarray]:
    """Held-out ELBO terms per path (one key each) and posterior reconstructions `(test,
    samples, time, 3)`; a held-out path with a failed (NaN) solve is counted and left out."""
    e = cfg.evaluation

    @eqx.filter_jit
    def terms_and_recon(model, xs, keys):
        terms = jax.vmap(lambda x, k: model.elbo(ts, x, key=k, n_samples=e.eval_samples))(xs, keys)
        recon = jax.vmap(
            lambda x, k: model.decode(
                model.sample_posterior(ts, x, ts, key=k, n_samples=e.eval_samples)
            )
        )(xs, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
        return terms, recon

    terms, recon = terms_and_recon(model, test_xs, jax.random.split(key, test_xs.shape[0]))
    terms = {k: np.asarray(v) for k, v in terms._asdict().items() if k != "value"}
    recon = np.asarray(recon)
    failed = failed_rows(recon) | failed_rows(np.stack(list(terms.values()), axis=1))
    if failed.all():
        raise RuntimeError(f"latent_sde_lorenz: every held-out path ({failed.size}) failed")
    ok = ~failed
    rmse = float(np.sqrt(np.mean((recon[ok].mean(axis=1) - np.asarray(test_xs)[ok]) ** 2)))
    terms = {k: float(np.mean(v[ok])) for k, v in terms.items()}
    terms["elbo"] = terms["log_likelihood"] - terms["kl_z0"] - terms["kl_path"]
    return {"reconstruction_rmse": rmse, **terms}, int(failed.sum()), recon


@register("latent_sde_lorenz", LatentSDELorenzConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """A latent SDE (latent dimension 4) on a stochastic Lorenz attractor: held-out ELBO terms."""
    d, m, e = cfg.data, cfg.model, cfg.evaluation
    ts = np.linspace(0.0, d.horizon, d.num_times).astype(np.float32)
    keys = jax.random.split(jax.random.key(cfg.seed), 5)
    data_key, noise_key, model_key, train_key, eval_key = keys
    paths = np.asarray(lorenz_paths(d, ts, key=data_key))
    if not np.all(np.isfinite(paths)):
        raise ValueError("the simulated Lorenz paths diverged: reduce data.sim_dt")
    xs = observe(paths, d.num_train, d.noise_std, key=noise_key)
    train_xs, test_xs = jnp.asarray(xs[: d.num_train]), jnp.asarray(xs[d.num_train :])
    model = build_latent_sde(m, 3, key=model_key)

    def elbo(model, batch, weight, key):
        keys = jax.random.split(key, batch.shape[0])
        out = jax.vmap(
            lambda x, k: model.elbo(ts, x, key=k, n_samples=m.n_samples, kl_weight=weight)
        )(batch, keys)
        return jax.tree.map(jnp.mean, out)

    result = fit_from_config(elbo_loss(elbo, m.kl_warmup), model, train_xs, cfg.train,
                             key=train_key, run_dir=run_dir, resume=resume, has_aux=True,
                             with_step=True)  # fmt: skip
    model = result.model.model
    test, failed, recon = evaluate(cfg, model, ts, test_xs, key=eval_key)
    prior = eqx.filter_jit(
        lambda model, key: model.decode(model.sample_prior(ts, key=key, n_samples=e.plot_paths))
    )(model, jax.random.fold_in(eval_key, 2))

    _reconstruction_figure(run_dir, ts, np.asarray(test_xs), recon, e.plot_series)
    _lorenz_3d_figure(run_dir, np.asarray(test_xs), recon, np.asarray(prior), e.plot_paths)
    loss_figure(run_dir, "latent_sde_lorenz: -(log-likelihood - KL weight x KL), per path")
    per_obs = d.num_times * 3
    return {
        "target": {"reconstruction_rmse": float(cfg.target.reconstruction_rmse)},
        "target_met": bool(test["reconstruction_rmse"] <= cfg.target.reconstruction_rmse),
        **{f"test_{k}": v for k, v in test.items()},
        "failed_test_paths": failed,
        "test_log_likelihood_per_observation": test["log_likelihood"] / per_obs,
        "test_elbo_per_observation": test["elbo"] / per_obs,
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
