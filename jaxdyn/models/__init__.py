"""Equinox modules whose forward pass is a differential equation."""

from .fields import ACTIVATIONS as ACTIVATIONS
from .fields import FEATURES as FEATURES
from .fields import MLPField as MLPField
from .ode import NeuralODE as NeuralODE
