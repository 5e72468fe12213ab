"""Rate-R² ceilings of the `langevin_flow` experiment's data (configs/langevin_flow.yaml), to
tell a structural cap from a modelling one (issue 14 §3).

    python benchmarks/langevin_flow_ceilings.py [--seeds 0 1 2] [--trials 20] [--split test]

Per seed and split (the same data sets and splits as the experiment; nothing is selected):

- `readout`: a Poisson GLM per neuron from the TRUE standardised Lorenz state (3 inputs and a
  bias, scikit-learn, no penalty), fitted on the train trials' spike counts of all neurons;
  the rate R² of all neurons against the true rates. This caps what a perfect latent with a
  learned exp-linear readout can reach with this many train trials.
- `ideal`: an ideal observer. The true Lorenz dynamics and true readout known (the readout
  read back exactly from the true rates: log rates are affine in the Lorenz state), each
  trial's state at the first bin is fitted by maximum likelihood of its HELD-IN counts only
  (what the models see; 64 starts drawn from train-trial states on the attractor, 400 Adam
  steps each, RK4 with 8 steps per bin), and all neurons' rates are read from that
  trajectory. A MAP estimate, so a lower bound on the Bayes-optimal rate R² from held-in
  spikes; on the first `--trials` trials of the split.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import OmegaConf
from sklearn.linear_model import PoissonRegressor

from jaxdyn.data import LORENZ_PARAMETERS
from jaxdyn.experiments.langevin_flow import make_dataset
from jaxdyn.metrics.regression import r2_score

jax.config.update("jax_enable_x64", True)

SUBSTEPS, STARTS, ITERATIONS = 8, 64, 400


def readout_ceiling(data: dict, split: str) -> float:
    """Rate R² of Poisson GLMs from the true standardised latent, fitted on the train trials."""
    flat = data["latents"].reshape(-1, 3)
    z = (data["latents"] - flat.mean(0)) / flat.std(0)
    train, scored = data["train"], data[split]
    pred = np.empty_like(data["rates"][scored])
    for n in range(data["spikes"].shape[2]):
        glm = PoissonRegressor(alpha=0.0, max_iter=1000).fit(
            z[train].reshape(-1, 3), data["spikes"][train][..., n].reshape(-1)
        )
        pred[..., n] = glm.predict(z[scored].reshape(-1, 3)).reshape(scored.size, -1)
    return float(r2_score(pred, data["rates"][scored]))


def ideal_observer(data: dict, split: str, trials: int, bin_time: float) -> float:
    """Rate R² of the maximum-likelihood trajectories of the true model from held-in counts."""
    latents, rates, spikes, heldin = data["latents"], data["rates"], data["spikes"], data["heldin"]
    design = np.concatenate([latents.reshape(-1, 3), np.ones((latents.size // 3, 1))], 1)
    coef = np.linalg.lstsq(design, np.log(rates.reshape(-1, rates.shape[-1])), rcond=None)[0]
    weights, bias = jnp.asarray(coef[:3]), jnp.asarray(coef[3])
    sigma, rho, beta = LORENZ_PARAMETERS
    dt = bin_time / SUBSTEPS

    def field(z):
        x, y, w = z[..., 0], z[..., 1], z[..., 2]
        return jnp.stack([sigma * (y - x), x * (rho - w) - y, x * y - beta * w], -1)

    def rk4(_, z):
        k1 = field(z)
        k2 = field(z + dt / 2 * k1)
        k3 = field(z + dt / 2 * k2)
        k4 = field(z + dt * k3)
        return z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def trajectory(z0):
        def step(z, _):
            z = jax.lax.fori_loop(0, SUBSTEPS, rk4, z)
            return z, z

        _, zs = jax.lax.scan(step, z0, None, length=latents.shape[1] - 1)
        return jnp.concatenate([z0[None], zs], 0)

    flat = latents.reshape(-1, 3)
    mean, std = jnp.asarray(flat.mean(0)), jnp.asarray(flat.std(0))

    def nll(u, counts):  # held-in neurons only
        log_rates = bias[:heldin] + trajectory(mean + std * u) @ weights[:, :heldin]
        return -jnp.sum(counts * log_rates - jnp.exp(log_rates))

    rng = np.random.default_rng(0)
    train = data["train"]
    starts = latents[train][
        rng.integers(0, train.size, STARTS), rng.integers(0, latents.shape[1], STARTS)
    ]
    optimizer = optax.adam(0.05)

    @jax.jit
    def fit(counts):
        def one(u):
            def body(carry, _):
                u, state = carry
                grad = jax.grad(nll)(u, counts)
                updates, state = optimizer.update(grad, state)
                return (optax.apply_updates(u, updates), state), None

            (u, _), _ = jax.lax.scan(body, (u, optimizer.init(u)), None, length=ITERATIONS)
            return u, nll(u, counts)

        us, values = jax.vmap(one)(jnp.asarray((starts - flat.mean(0)) / flat.std(0)))
        best = us[jnp.argmin(values)]
        return jnp.exp(bias + trajectory(mean + std * best) @ weights)

    scored = data[split][:trials]
    pred = np.stack([np.asarray(fit(jnp.asarray(spikes[i, :, :heldin]))) for i in scored])
    return float(r2_score(pred, rates[scored]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20, help="ideal observer: trials per seed")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    args = parser.parse_args()
    cfg = OmegaConf.load("configs/langevin_flow.yaml")
    for seed in args.seeds:
        start = time.process_time()
        data = make_dataset(cfg, seed)
        readout = readout_ceiling(data, args.split)
        ideal = ideal_observer(
            data, args.split, args.trials, cfg.data.bin_size * cfg.data.time_scale
        )
        print(f"seed {seed} ({args.split}): readout-from-true-latent rate R² {readout:.4f}; "
              f"ideal observer (first {args.trials} trials) {ideal:.4f}; "
              f"{time.process_time() - start:.0f} s CPU", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
