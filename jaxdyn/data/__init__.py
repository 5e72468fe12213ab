"""Data: synthetic dynamical systems and trajectory utilities."""

from .digits import digits as digits
from .systems import SPIRAL_MATRIX as SPIRAL_MATRIX
from .systems import spiral as spiral
from .systems import spiral_field as spiral_field
from .windows import windows as windows
