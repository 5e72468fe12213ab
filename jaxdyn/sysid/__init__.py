"""System identification: the equations or the linear structure behind data, differentiable.

Sparse regression of dynamics (SINDy, Brunton, Proctor & Kutz 2016; its weak form, Messenger &
Bortz 2021; PDE-FIND, Rudy et al. 2017), linear models of delay embeddings (DMD, Hankel DMD,
HAVOK, Brunton et al. 2017) and Koopman latent models (KoVAE, Naiman et al. 2024), in JAX:
`jit`, `vmap` and `grad` go through every piece (sampling times, grids and ranks are concrete:
close over them), where their anchors (pysindy, PyDMD) are NumPy and scikit-learn.
"""

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
from .derivatives import finite_difference as finite_difference
from .derivatives import savgol_smooth as savgol_smooth
from .derivatives import smoothed_finite_difference as smoothed_finite_difference
from .derivatives import spectral_derivative as spectral_derivative
from .koopman import GaussianSequentialVAE as GaussianSequentialVAE
from .koopman import KoopmanLoss as KoopmanLoss
from .koopman import KoopmanVAE as KoopmanVAE
from .koopman import encoder_inputs as encoder_inputs
from .koopman import koopman_operator as koopman_operator
from .libraries import ConcatLibrary as ConcatLibrary
from .libraries import CustomLibrary as CustomLibrary
from .libraries import FourierLibrary as FourierLibrary
from .libraries import Library as Library
from .libraries import PolynomialLibrary as PolynomialLibrary
from .libraries import TensorLibrary as TensorLibrary
from .pde import PDEModel as PDEModel
from .pde import fit_pde_find as fit_pde_find
from .pde import pde_features as pde_features
from .pde import weak_pde_form as weak_pde_form
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
from .ude import UniversalField as UniversalField
from .weak import bump_functions as bump_functions
from .weak import fit_weak_sindy as fit_weak_sindy
from .weak import trapezoid_weights as trapezoid_weights
from .weak import weak_form as weak_form
