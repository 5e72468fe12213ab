"""The dynamics of learning: how networks train, treated as dynamical systems.

Neural tangent kernels: the empirical kernel of any Equinox model by three methods with
chunking over inputs and parameters (`empirical_ntk`; Jacot, Gabriel & Hongler 2018; Novak et
al. 2022), the infinite-width NNGP and NTK of a perceptron by their layer recursions
(`analytic_kernels`) and the network they belong to (`NTKMLP`, in the NTK parameterisation),
and the linearised training they predict (`kernel_flow`; Lee et al. 2019).

Grokking: the quadratic network `QuadraticNetwork` of Gromov 2023 / Kumar et al. 2024, its
modular-addition data (`modular_addition`), Gromov's analytic solution (`gromov_solution`),
and the Fourier spectrum of the first layer (`fourier_spectrum`) with its concentration per
neuron (`fourier_concentration`: inverse participation ratio, top-frequency fraction). The
XOR cluster data with label noise of Xu et al. 2024, on which a ReLU network first overfits
benignly then groks (`xor_clusters`), and its Bayes accuracy (`xor_bayes_accuracy`). The
three stages of Tian 2025's Li₂ framework (lazy, independent, interactive feature learning):
a hidden node's energy `E(w) = ½ ‖Ỹᵀσ(Xw)‖²`, whose gradient ascent is its independent
dynamics and whose local maxima are the emerging features (`li2_energy`), and the cosine
between each node's actual gradient and `∇E` (`li2_gradient_alignment`).

Lazy and rich training: the α-scaled centred model `AlphaScaled`, `f_α = α (f(w) − f(w₀))`,
trained with learning rate `alpha_learning_rate(η, α) = η/α²` (Chizat, Oyallon & Bach 2019):
large α is lazy (weights move `O(1/α)`, the kernel stays put), small α rich. Their measures,
jittable for `fit`'s `eval_fn`: the relative kernel and weight changes (`ntk_change`,
`weight_change`), the centred kernel–target alignment (`kernel_alignment`; Cortes et al.
2012), the entropy effective rank (`effective_rank`; Roy & Vetterli 2007) and the alignment
of first-layer features with a teacher direction (`feature_alignment`).

The curvature of a loss, measured without forming its Hessian: Hessian–vector products
(forward-over-reverse, Pearlmutter 1994) on any pytree of parameters; the extreme eigenvalues
by Lanczos with full reorthogonalisation and by power iteration; Hutchinson's estimates of
`tr(H)` and `tr(H²)` with standard errors; the spectral density by stochastic Lanczos
quadrature (Ghorbani, Krishnan & Xiao 2019).

Optimisers as optax `GradientTransformation`s (init/update pairs with their own state, to
chain with `optax.chain` and pass to `jaxdyn.fit`): stochastic gradient Langevin dynamics
(`sgld`; Welling & Teh 2011) and its RMSprop-preconditioned variant (`psgld`; Li et al. 2016),
which sample a posterior rather than minimise; and CLASSP (`classp`; Ludwig 2024), AdaGrad-like
suppression of much-adjusted weights with a gradient threshold, for continual learning.
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
from ._alpha import AlphaScaled as AlphaScaled
from ._alpha import alpha_learning_rate as alpha_learning_rate
from ._analytic import analytic_kernels as analytic_kernels
from ._classp import ClasspState as ClasspState
from ._classp import classp as classp
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
from ._grokking import fourier_concentration as fourier_concentration
from ._grokking import fourier_spectrum as fourier_spectrum
from ._grokking import gromov_solution as gromov_solution
from ._grokking import modular_addition as modular_addition
from ._lanczos import WHICH as WHICH
from ._lanczos import SpectralDensity as SpectralDensity
from ._lanczos import spectral_density as spectral_density
from ._lanczos import top_eigenpairs as top_eigenpairs
from ._li2 import li2_energy as li2_energy
from ._li2 import li2_gradient_alignment as li2_gradient_alignment
from ._linearized import KernelFlow as KernelFlow
from ._linearized import kernel_flow as kernel_flow
from ._ntk import NTK_METHODS as NTK_METHODS
from ._ntk import NTK_OUTPUTS as NTK_OUTPUTS
from ._ntk import empirical_ntk as empirical_ntk
from ._ntk_mlp import NTK_ACTIVATIONS as NTK_ACTIVATIONS
from ._ntk_mlp import NTKMLP as NTKMLP
from ._ntk_mlp import NTKLinear as NTKLinear
from ._regimes import effective_rank as effective_rank
from ._regimes import feature_alignment as feature_alignment
from ._regimes import kernel_alignment as kernel_alignment
from ._regimes import ntk_change as ntk_change
from ._regimes import weight_change as weight_change
from ._sgld import PSGLDState as PSGLDState
from ._sgld import SGLDState as SGLDState
from ._sgld import psgld as psgld
from ._sgld import sgld as sgld
from ._xor import xor_bayes_accuracy as xor_bayes_accuracy
from ._xor import xor_clusters as xor_clusters
