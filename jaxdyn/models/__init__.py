"""Equinox modules whose forward pass is a differential equation."""

from .cde import CDEField as CDEField
from .cde import NeuralCDE as NeuralCDE
from .deq import DEQ as DEQ
from .deq import TanhCell as TanhCell
from .fields import ACTIVATIONS as ACTIVATIONS
from .fields import FEATURES as FEATURES
from .fields import MLPField as MLPField
from .fields import SoftplusField as SoftplusField
from .fractional import FractionalOU as FractionalOU
from .fractional import MarkovFBM as MarkovFBM
from .fractional import markov_fbm_weights as markov_fbm_weights
from .fractional import sample_type2_fbm as sample_type2_fbm
from .fractional import type2_fbm_covariance as type2_fbm_covariance
from .fractional import type2_fbm_variance as type2_fbm_variance
from .gru import GRUDeltaT as GRUDeltaT
from .ode import NeuralODE as NeuralODE
from .sde import NeuralSDE as NeuralSDE
from .stable_sde import SDE_CLASSIFIERS as SDE_CLASSIFIERS
from .stable_sde import ControlledDrift as ControlledDrift
from .stable_sde import ControlledNeuralSDE as ControlledNeuralSDE
from .stable_sde import NeuralGSDE as NeuralGSDE
from .stable_sde import NeuralLNSDE as NeuralLNSDE
from .stable_sde import NeuralLSDE as NeuralLSDE
from .stable_sde import TimeDiffusion as TimeDiffusion
