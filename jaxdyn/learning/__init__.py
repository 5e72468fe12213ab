"""The dynamics of learning: how networks train, treated as dynamical systems.

Neural tangent kernels: the empirical kernel of any Equinox model by three methods with
chunking over inputs and parameters (`empirical_ntk`; Jacot, Gabriel & Hongler 2018; Novak et
al. 2022), the infinite-width NNGP and NTK of a perceptron by their layer recursions
(`analytic_kernels`) and the network they belong to (`NTKMLP`, in the NTK parameterisation),
and the linearised training they predict (`kernel_flow`; Lee et al. 2019). In JAX: `jit`,
`vmap` and `grad` go through every piece.
"""

from ._analytic import analytic_kernels as analytic_kernels
from ._linearized import KernelFlow as KernelFlow
from ._linearized import kernel_flow as kernel_flow
from ._ntk import NTK_METHODS as NTK_METHODS
from ._ntk import NTK_OUTPUTS as NTK_OUTPUTS
from ._ntk import empirical_ntk as empirical_ntk
from ._ntk_mlp import NTK_ACTIVATIONS as NTK_ACTIVATIONS
from ._ntk_mlp import NTKMLP as NTKMLP
from ._ntk_mlp import NTKLinear as NTKLinear
