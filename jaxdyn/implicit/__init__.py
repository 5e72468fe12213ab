"""Implicit differentiation: solutions of root, fixed-point, argmin and steady-state problems,
hypergradients and influence functions, differentiated by the implicit function theorem
(Blondel et al. 2022; Koh & Liang 2017)."""

from .._jaxopt import LINEAR_SOLVERS as LINEAR_SOLVERS
from ._argmin import ARGMIN_SOLVERS as ARGMIN_SOLVERS
from ._argmin import PROJECTIONS as PROJECTIONS
from ._argmin import PROXES as PROXES
from ._argmin import argmin as argmin
from ._fixed_point import FIXED_POINT_SOLVERS as FIXED_POINT_SOLVERS
from ._fixed_point import fixed_point as fixed_point
from ._hypergrad import InnerProblem as InnerProblem
from ._hypergrad import Neumann as Neumann
from ._hypergrad import Truncated as Truncated
from ._hypergrad import hypergradient as hypergradient
from ._hypergrad import neumann_solve as neumann_solve
from ._influence import EXACT_MAX_PARAMS as EXACT_MAX_PARAMS
from ._influence import INFLUENCE_SOLVERS as INFLUENCE_SOLVERS
from ._influence import ekfac_influence as ekfac_influence
from ._influence import influence as influence
from ._influence import leave_one_out_change as leave_one_out_change
from ._info import SolveInfo as SolveInfo
from ._linear import LinearSolve as LinearSolve
from ._root import ROOT_SOLVERS as ROOT_SOLVERS
from ._root import root as root
from ._steady_state import steady_state as steady_state
