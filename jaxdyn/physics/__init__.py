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
"""

from ._closure import ClosedNonlinear as ClosedNonlinear
from ._closure import ConvClosure as ConvClosure
from ._closure import SmagorinskyClosure as SmagorinskyClosure
from ._closure import subgrid_term as subgrid_term
from ._etdrk import ETDRK4 as ETDRK4
from ._etdrk import etdrk4_coefficients as etdrk4_coefficients
from ._filter import coarse_grain as coarse_grain
from ._filter import lowpass as lowpass
from ._filter import refine as refine
from ._filter import resolved_modes as resolved_modes
from ._problems import Convection as Convection
from ._problems import VorticityConvection as VorticityConvection
from ._problems import burgers as burgers
from ._problems import korteweg_de_vries as korteweg_de_vries
from ._problems import kuramoto_sivashinsky as kuramoto_sivashinsky
from ._problems import navier_stokes_vorticity as navier_stokes_vorticity
from ._spectral import PeriodicGrid as PeriodicGrid
