"""Data: synthetic dynamical systems, trajectory and irregular-time-series utilities."""

from .digits import digits as digits
from .irregular import HermiteCoefficients as HermiteCoefficients
from .irregular import augment as augment
from .irregular import cubic_path as cubic_path
from .irregular import drop_observations as drop_observations
from .irregular import fill_forward as fill_forward
from .irregular import hermite_coefficients as hermite_coefficients
from .irregular import observation_counts as observation_counts
from .irregular import observation_mask as observation_mask
from .spikes import LORENZ_PARAMETERS as LORENZ_PARAMETERS
from .spikes import HeldoutSplit as HeldoutSplit
from .spikes import SpikeData as SpikeData
from .spikes import heldout_split as heldout_split
from .spikes import lorenz_field as lorenz_field
from .spikes import lorenz_spikes as lorenz_spikes
from .stochastic import double_well_diffusion as double_well_diffusion
from .stochastic import double_well_drift as double_well_drift
from .stochastic import double_well_paths as double_well_paths
from .systems import SPIRAL_MATRIX as SPIRAL_MATRIX
from .systems import spiral as spiral
from .systems import spiral_field as spiral_field
from .uea import UEA_DATASETS as UEA_DATASETS
from .uea import UEADataset as UEADataset
from .uea import uea as uea
from .windows import windows as windows
