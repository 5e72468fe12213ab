"""System identification: the equations or the linear structure behind data, differentiable.

Sparse regression of dynamics (SINDy, Brunton, Proctor & Kutz 2016; its weak form, Messenger &
Bortz 2021; PDE-FIND, Rudy et al. 2017) and linear models of delay embeddings (DMD, Hankel DMD,
HAVOK, Brunton et al. 2017), in JAX: `jit`, `vmap` and `grad` go through every piece, where
their anchors (pysindy, PyDMD) are NumPy and scikit-learn.
"""

# DMD, Hankel DMD and HAVOK (issue 17 §2)
from ._dmd import DMD as DMD
from ._dmd import Rank as Rank
from ._dmd import dmd as dmd
from ._dmd import hankel as hankel
from ._dmd import hankel_dmd as hankel_dmd
from ._dmd import optimal_hard_threshold as optimal_hard_threshold
from ._dmd import truncation_rank as truncation_rank
from ._havok import HAVOK as HAVOK
from ._havok import HAVOK_DERIVATIVES as HAVOK_DERIVATIVES
from ._havok import havok as havok
