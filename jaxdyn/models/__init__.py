"""Equinox modules whose forward pass is a differential equation."""

from .cde import CDEField as CDEField
from .cde import NeuralCDE as NeuralCDE
from .deq import DEQ as DEQ
from .deq import TanhCell as TanhCell
from .fields import ACTIVATIONS as ACTIVATIONS
from .fields import FEATURES as FEATURES
from .fields import MLPField as MLPField
from .ode import NeuralODE as NeuralODE
from .sde import NeuralSDE as NeuralSDE
