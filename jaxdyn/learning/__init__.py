"""The dynamics of learning: the curvature of a loss, measured without forming its Hessian.

Hessian–vector products (forward-over-reverse, Pearlmutter 1994) on any pytree of parameters;
the extreme eigenvalues by Lanczos with full reorthogonalisation and by power iteration;
Hutchinson's estimates of `tr(H)` and `tr(H²)` with standard errors; the spectral density by
stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019). Every function is jittable and
takes an explicit `key`, so curvature can be tracked during training, e.g. the sharpness
`λ_max` every `chunk · eval_every` steps of `jaxdyn.fit` through its `eval_fn`:

    def eval_fn(model, key):
        operator = hessian_operator(lambda m: loss(m, x, y), model)
        return {"sharpness": top_eigenpairs(operator, 1, key=key).values[0]}
"""

from ._curvature import Eigenpairs as Eigenpairs
from ._curvature import HessianOperator as HessianOperator
from ._curvature import Operator as Operator
from ._curvature import TraceEstimate as TraceEstimate
from ._curvature import hessian_operator as hessian_operator
from ._curvature import hutchinson_trace as hutchinson_trace
from ._curvature import hvp as hvp
from ._curvature import power_iteration as power_iteration
from ._lanczos import WHICH as WHICH
from ._lanczos import SpectralDensity as SpectralDensity
from ._lanczos import spectral_density as spectral_density
from ._lanczos import top_eigenpairs as top_eigenpairs
