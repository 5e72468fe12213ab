"""System identification: the equations or the linear structure behind data, differentiable.

Sparse regression of dynamics (SINDy, Brunton, Proctor & Kutz 2016; its weak form, Messenger &
Bortz 2021; PDE-FIND, Rudy et al. 2017) and linear models of delay embeddings (DMD, Hankel DMD,
HAVOK, Brunton et al. 2017), in JAX: `jit`, `vmap` and `grad` go through every piece, where
their anchors (pysindy, PyDMD) are NumPy and scikit-learn.
"""

# Koopman latent models (KoVAE, Naiman et al. 2024): issue 17 §3.
from .koopman import GaussianSequentialVAE as GaussianSequentialVAE
from .koopman import KoopmanLoss as KoopmanLoss
from .koopman import KoopmanVAE as KoopmanVAE
from .koopman import encoder_inputs as encoder_inputs
from .koopman import koopman_operator as koopman_operator
