"""What the latent-SDE experiments share: the `model` config section of a `LatentSDE`, the
training section with an exponential learning-rate decay, the model a section describes, and
the ELBO loss with a linear KL warm-up (for `fit_from_config(..., with_step=True)`)."""

import dataclasses

import equinox as eqx
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, choice, positive
from ..models.latent_sde import (
    ACTIVATIONS,
    DECODERS,
    DIFFUSIONS,
    ELBO,
    LIKELIHOODS,
    PRIORS,
    TIME_INPUTS,
    LatentSDE,
)
from ..solve import SDE_SOLVERS
from ..train import kl_warmup

__all__ = ["LatentSDEModelConfig", "LatentSDETrainConfig", "build_latent_sde", "elbo_loss"]


@dataclasses.dataclass
class LatentSDEModelConfig:
    """A `LatentSDE` and its ELBO (see `LatentSDE`); the defaults are generic (learned prior
    and diffusion, context, linear decoder); each experiment sets its own."""

    latent: int = at_least(2, 1)
    context: int = at_least(8, 1)
    hidden: int = at_least(16, 1)  # the encoder GRU's state
    width: int = at_least(32, 1)
    depth: int = at_least(2, 0)
    prior: str = choice("ou", PRIORS)
    time_input: str = choice("t", TIME_INPUTS)  # the posterior drift's time features
    posterior_context: bool = True  # the posterior drift sees the encoder's context
    activation: str = choice("softplus", tuple(ACTIVATIONS))  # of the drift networks
    zero_init: bool = False  # the posterior drift's last layer starts at zero
    diffusion: str = choice("learned", DIFFUSIONS)
    diffusion_scale: float = positive(1.0)  # the learned diffusion's bound, or the constant
    ou_rate: float = positive(1.0)  # the OU prior's rate (its start when learned)
    decoder: str = choice("linear", DECODERS)
    likelihood: str = choice("normal", LIKELIHOODS)
    obs_std: float = positive(0.05)  # the likelihood's scale (torchsde: 0.05)
    dt0: float = positive(0.02)
    solver: str = choice("euler", SDE_SOLVERS)
    n_samples: int = at_least(32, 1)  # posterior paths per ELBO estimate
    kl_warmup: int = at_least(500, 0)  # steps of linear KL-weight warm-up
    kl_to_horizon: bool = False  # integrate the path KL to the horizon, past the data


@dataclasses.dataclass
class LatentSDETrainConfig(TrainConfig):
    """`TrainConfig` plus `lr_decay`: when set, the learning rate is `lr · lr_decay^step`
    (torchsde's `ExponentialLR`), replacing `schedule`."""

    lr_decay: float | None = dataclasses.field(
        default=None, metadata={"check": (lambda v: 0 < v <= 1, "in (0, 1]")}
    )


def build_latent_sde(m: DictConfig, channels: int, *, key: PRNGKeyArray) -> LatentSDE:
    """The `LatentSDE` a `model` config section describes, for data with `channels`
    channels. Its solves make a failed path NaN (`on_failure="nan"`): training stops on a
    NaN loss, and evaluations count failed paths and report the metrics of the rest."""

    @eqx.filter_jit  # one compilation for the initialisation (eagerly, one per operation)
    def init(key):
        return LatentSDE(
            channels=channels, latent=m.latent, context=m.context, hidden=m.hidden,
            width=m.width, depth=m.depth, prior=m.prior, time_input=m.time_input,
            posterior_context=m.posterior_context, activation=m.activation,
            zero_init=m.zero_init, diffusion=m.diffusion, diffusion_scale=m.diffusion_scale,
            ou_rate=m.ou_rate, decoder=m.decoder, likelihood=m.likelihood, obs_std=m.obs_std,
            dt0=m.dt0, solver=m.solver, on_failure="nan", key=key,
        )  # fmt: skip

    return init(key)


def elbo_loss(elbo_fn, warmup: int):
    """`loss(model, step, batch, key) -> (-ELBO with the KL weight of step, metrics)` for
    `fit_from_config(..., with_step=True)`, where `elbo_fn(model, batch, kl_weight, key)`
    returns the `ELBO` (averaged over the batch) and the KL weight rises linearly over
    `warmup` steps (`kl_warmup`)."""

    def loss(model: LatentSDE, step, batch, key):
        weight = kl_warmup(step, warmup)
        out: ELBO = elbo_fn(model, batch, weight, key)
        metrics = {"elbo": out.log_likelihood - out.kl_z0 - out.kl_path, "kl_weight": weight,
                   "log_likelihood": out.log_likelihood, "kl_path": out.kl_path,
                   "kl_z0": out.kl_z0}  # fmt: skip
        return -out.value, metrics

    return loss
