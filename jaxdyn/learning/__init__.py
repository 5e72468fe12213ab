"""The dynamics of learning: how networks train, treated as dynamical systems.

Neural tangent kernels: the empirical kernel of any Equinox model by three methods with
chunking over inputs and parameters (`empirical_ntk`; Jacot, Gabriel & Hongler 2018; Novak et
al. 2022), the infinite-width NNGP and NTK of a perceptron by their layer recursions
(`analytic_kernels`) and the network they belong to (`NTKMLP`, in the NTK parameterisation),
and the linearised training they predict (`kernel_flow`; Lee et al. 2019).

Grokking: the quadratic network `QuadraticNetwork` of Gromov 2023 / Kumar et al. 2024 and
its modular-addition data (`modular_addition`).

The curvature of a loss, measured without forming its Hessian: Hessian–vector products
(forward-over-reverse, Pearlmutter 1994) on any pytree of parameters; the extreme eigenvalues
by Lanczos with full reorthogonalisation and by power iteration; Hutchinson's estimates of
`tr(H)` and `tr(H²)` with standard errors; the spectral density by stochastic Lanczos
quadrature (Ghorbani, Krishnan & Xiao 2019).

Exact learning dynamics of linear models: the training and test error of a linear student
under gradient flow on a noisy linear teacher, through the spectrum of the input covariance
(`linear_learning_curves`) and its Marchenko–Pastur limit (`marchenko_pastur_density`,
`marchenko_pastur_quadrature`; Advani & Saxe 2017).

Momentum as dynamics: Nesterov's accelerated gradient and Polyak's heavy ball
(`nesterov_iterates`, `heavy_ball_iterates`) and the ODEs they discretise, solved by
`jaxdyn.odeint` (`nesterov_flow`: `Ẍ + (3/t)Ẋ + ∇f = 0`, Su, Boyd & Candès 2016;
`heavy_ball_flow`: `Ẍ + aẊ + ∇f = 0`).

Every function is jittable and the random ones take an explicit `key`, so kernels and
curvature can be tracked during training, e.g. the sharpness `λ_max` every
`chunk · eval_every` steps of `jaxdyn.fit` through its `eval_fn`:

    def eval_fn(model, key):
        operator = hessian_operator(lambda m: loss(m, x, y), model)
        return {"sharpness": top_eigenpairs(operator, 1, key=key).values[0]}
"""

from ._acceleration import heavy_ball_flow as heavy_ball_flow
from ._acceleration import heavy_ball_iterates as heavy_ball_iterates
from ._acceleration import nesterov_flow as nesterov_flow
from ._acceleration import nesterov_iterates as nesterov_iterates
from ._analytic import analytic_kernels as analytic_kernels
from ._curvature import Eigenpairs as Eigenpairs
from ._curvature import HessianOperator as HessianOperator
from ._curvature import Operator as Operator
from ._curvature import TraceEstimate as TraceEstimate
from ._curvature import hessian_operator as hessian_operator
from ._curvature import hutchinson_trace as hutchinson_trace
from ._curvature import hvp as hvp
from ._curvature import power_iteration as power_iteration
from ._generalization import LearningCurves as LearningCurves
from ._generalization import linear_learning_curves as linear_learning_curves
from ._generalization import marchenko_pastur_density as marchenko_pastur_density
from ._generalization import marchenko_pastur_quadrature as marchenko_pastur_quadrature
from ._grokking import QuadraticNetwork as QuadraticNetwork
from ._grokking import modular_addition as modular_addition
from ._lanczos import WHICH as WHICH
from ._lanczos import SpectralDensity as SpectralDensity
from ._lanczos import spectral_density as spectral_density
from ._lanczos import top_eigenpairs as top_eigenpairs
from ._linearized import KernelFlow as KernelFlow
from ._linearized import kernel_flow as kernel_flow
from ._ntk import NTK_METHODS as NTK_METHODS
from ._ntk import NTK_OUTPUTS as NTK_OUTPUTS
from ._ntk import empirical_ntk as empirical_ntk
from ._ntk_mlp import NTK_ACTIVATIONS as NTK_ACTIVATIONS
from ._ntk_mlp import NTKMLP as NTKMLP
from ._ntk_mlp import NTKLinear as NTKLinear
