"""System identification: the equations or the linear structure behind data, differentiable.

Sparse regression of dynamics (SINDy, Brunton, Proctor & Kutz 2016; its weak form, Messenger &
Bortz 2021; PDE-FIND, Rudy et al. 2017) and linear models of delay embeddings (DMD, Hankel DMD,
HAVOK, Brunton et al. 2017), in JAX: `jit`, `vmap` and `grad` go through every piece, where
their anchors (pysindy, PyDMD) are NumPy and scikit-learn.
"""

from .derivatives import finite_difference as finite_difference
from .derivatives import savgol_smooth as savgol_smooth
from .derivatives import smoothed_finite_difference as smoothed_finite_difference
from .derivatives import spectral_derivative as spectral_derivative
from .libraries import ConcatLibrary as ConcatLibrary
from .libraries import CustomLibrary as CustomLibrary
from .libraries import FourierLibrary as FourierLibrary
from .libraries import Library as Library
from .libraries import PolynomialLibrary as PolynomialLibrary
from .libraries import TensorLibrary as TensorLibrary
from .sindy import SINDy as SINDy
from .sindy import SINDyEnsemble as SINDyEnsemble
from .sindy import ensemble_sindy as ensemble_sindy
from .sindy import fit_sindy as fit_sindy
from .sindy import format_equations as format_equations
from .sindy import regression_data as regression_data
from .sparse import SR3 as SR3
from .sparse import STLSQ as STLSQ
from .sparse import SparseFit as SparseFit
from .sparse import masked_ridge as masked_ridge

# Universal differential equations (issue 17, section 4)
from .ude import UniversalField as UniversalField
from .weak import fit_weak_sindy as fit_weak_sindy
from .weak import test_functions as test_functions
from .weak import trapezoid_weights as trapezoid_weights
from .weak import weak_form as weak_form
