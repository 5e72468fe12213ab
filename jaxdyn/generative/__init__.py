"""Generative dynamics: stochastic interpolants, their regression losses, minibatch OT couplings,
samplers (transport ODE, SDE), exact likelihood, a Gaussian-mixture oracle (exact density,
score and velocity) for testing them, score-based diffusion (VP/VE/OU SDEs, denoising score
matching, probability-flow / reverse-SDE / predictor-corrector samplers), the score and
log-density Fokker-Planck residuals, and a conservative score model (`PotentialScore`).

Every field (velocity, score, denoiser) is `(t, x, args)` for one sample; losses and samplers
take `args=None` and pass it on; `key` is keyword-only; samplers and `log_likelihood` return an
`Endpoint` (`jaxdyn.solve`) and follow `on_failure` (`docs/api.md`). `GaussianMixture` and
`standard_normal` live in `jaxdyn.data` and are re-exported here."""

from ..data import GaussianMixture as GaussianMixture
from ..data import standard_normal as standard_normal
from .coupling import ot_coupling as ot_coupling
from .coupling import ot_plan as ot_plan
from .diffusion import dsm_loss as dsm_loss
from .diffusion import probability_flow as probability_flow
from .diffusion import sample_predictor_corrector as sample_predictor_corrector
from .diffusion import sample_probability_flow as sample_probability_flow
from .diffusion import sample_reverse_sde as sample_reverse_sde
from .diffusion_sde import OUSDE as OUSDE
from .diffusion_sde import VESDE as VESDE
from .diffusion_sde import VPSDE as VPSDE
from .diffusion_sde import DiffusionSDE as DiffusionSDE
from .diffusion_sde import diffused_mixture as diffused_mixture
from .fokker_planck import fokker_planck_loss as fokker_planck_loss
from .fokker_planck import fokker_planck_residual as fokker_planck_residual
from .fokker_planck import fokker_planck_weight as fokker_planck_weight
from .fokker_planck import log_density_residual as log_density_residual
from .interpolants import GAMMAS as GAMMAS
from .interpolants import EncoderDecoderInterpolant as EncoderDecoderInterpolant
from .interpolants import Interpolant as Interpolant
from .interpolants import LinearInterpolant as LinearInterpolant
from .interpolants import MirrorInterpolant as MirrorInterpolant
from .interpolants import OneSidedInterpolant as OneSidedInterpolant
from .interpolants import TrigonometricInterpolant as TrigonometricInterpolant
from .likelihood import DIVERGENCES as DIVERGENCES
from .likelihood import divergence as divergence
from .likelihood import log_likelihood as log_likelihood
from .losses import denoiser_loss as denoiser_loss
from .losses import flow_matching_loss as flow_matching_loss
from .losses import score_loss as score_loss
from .losses import velocity_loss as velocity_loss
from .oracle import InterpolantOracle as InterpolantOracle
from .potential import PotentialScore as PotentialScore
from .sampling import sample_ode as sample_ode
from .sampling import sample_sde as sample_sde
