"""Physics-informed learning and differentiable solvers.

A pseudo-spectral ETDRK4 solver (Cox & Matthews 2002, with Kassam & Trefethen's 2005
contour-integral coefficients) for semilinear PDEs `u_t = L u + N(u)` on periodic grids in 1-D
and 2-D, with 2/3 dealiasing: Burgers, Kuramoto–Sivashinsky, Korteweg–de Vries and 2-D
Navier–Stokes (vorticity) ready-made, any other from a linear symbol and a nonlinear term.
`jit`, `vmap` over initial conditions and `grad` (with respect to initial conditions and the
parameters of either term) go through every step.

Closures for coarse solvers (1-D): the sharp spectral filter (`lowpass`, `coarse_grain`,
`refine`, `resolved_modes`), the subgrid term `τ = F̄ N(u) − N(F̄ u)` a coarse grid misses
(`subgrid_term`), and closures `C(ū)` added to a nonlinear term (`ClosedNonlinear`):
Smagorinsky's eddy viscosity (`SmagorinskyClosure`) and a learned periodic conv net in flux
form (`ConvClosure`), whose parameters `jax.grad` reaches through `ETDRK4.rollout` (training
through the solver, as Maddu, Weady & Shelley 2024 train closures of an active-fluid model).

Physics-informed neural networks (Raissi et al. 2019): `derivatives` and `pde_residual` of a
scalar network `u(t, x)` by `jax.jacfwd`/`jax.hessian` vmapped over collocation points; exact
periodic embeddings (`PeriodicEmbedding`) and random Fourier features (`FourierFeatures`);
causal weights over time chunks (`chunk_losses`, `causal_weights`, `anneal_causal_epsilon`;
Wang, Sankaran & Perdikaris 2022); loss balancing by gradient norms (`GradNormState`,
`gradient_norms`, `grad_norm_weights`, `update_grad_norm_weights`; Wang et al. 2023);
random weight factorisation of dense layers (`FactorizedLinear`, `factorize_mlp`; Wang, Wang,
Wang & Perdikaris 2022).
"""

from ._balancing import GradNormState as GradNormState
from ._balancing import grad_norm_weights as grad_norm_weights
from ._balancing import gradient_norms as gradient_norms
from ._balancing import update_grad_norm_weights as update_grad_norm_weights
from ._causal import anneal_causal_epsilon as anneal_causal_epsilon
from ._causal import causal_weights as causal_weights
from ._causal import chunk_losses as chunk_losses
from ._closure import ClosedNonlinear as ClosedNonlinear
from ._closure import ConvClosure as ConvClosure
from ._closure import SmagorinskyClosure as SmagorinskyClosure
from ._closure import subgrid_term as subgrid_term
from ._embeddings import FourierFeatures as FourierFeatures
from ._embeddings import PeriodicEmbedding as PeriodicEmbedding
from ._etdrk import ETDRK4 as ETDRK4
from ._etdrk import etdrk4_coefficients as etdrk4_coefficients
from ._factorized import FactorizedLinear as FactorizedLinear
from ._factorized import factorize_mlp as factorize_mlp
from ._filter import coarse_grain as coarse_grain
from ._filter import lowpass as lowpass
from ._filter import refine as refine
from ._filter import resolved_modes as resolved_modes
from ._pinn import Derivatives as Derivatives
from ._pinn import derivatives as derivatives
from ._pinn import pde_residual as pde_residual
from ._problems import Convection as Convection
from ._problems import VorticityConvection as VorticityConvection
from ._problems import burgers as burgers
from ._problems import korteweg_de_vries as korteweg_de_vries
from ._problems import kuramoto_sivashinsky as kuramoto_sivashinsky
from ._problems import navier_stokes_vorticity as navier_stokes_vorticity
from ._spectral import PeriodicGrid as PeriodicGrid
