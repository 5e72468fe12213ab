"""Generative dynamics: stochastic interpolants, their regression losses, minibatch OT couplings,
samplers (transport ODE, SDE), exact likelihood, and a Gaussian-mixture oracle (exact density,
score and velocity) for testing them."""

from .coupling import ot_coupling as ot_coupling
from .coupling import ot_plan as ot_plan
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
from .mixture import GaussianMixture as GaussianMixture
from .mixture import InterpolantOracle as InterpolantOracle
from .mixture import standard_normal as standard_normal
from .sampling import sample_ode as sample_ode
from .sampling import sample_sde as sample_sde
