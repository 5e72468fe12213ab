"""Regularisers that make neural differential equations cheap to solve.

An adaptive solver already measures how hard each step is: its local error estimate decides
the step size, and its last stages give an estimate of the dominant eigenvalue (stiffness).
Penalising them trains a model that the solver can integrate in fewer steps:

- `error_penalty`, `stiffness_penalty`: summed over the accepted steps of the solve by a
  solver wrapper (`HeuristicsSolver`) that carries the sums in its state (ERNODE and SRNODE;
  Pal, Ma, Shah & Rackauckas 2021, "Opening the blackbox: accelerating neural differential
  equations by regularizing internal solver heuristics");
- `local_error_penalty`, `local_stiffness_penalty`: the same heuristics from one extra step
  at a sampled time, with no change to the solver (Pal, Edelman & Rackauckas 2023, "Locally
  regularized neural differential equations: some black boxes were meant to remain closed!");
- `taylor_penalty`: `∫ ‖d^K y/dt^K‖² dt` by Taylor mode (TayNODE; Kelly, Bettencourt,
  Johnson & Duvenaud 2020, "Learning differential equations that are easy to solve").

- `sde_error_penalty`: the error-estimate sum of an adaptive SDE solve (SPaRK), for neural
  SDEs.

Each returns `(solution, penalty)`; `Regularizer` and `regularized_loss` use them from a
`NeuralODE` (every kind) or a `NeuralSDE` (`error`).
"""

from ._heuristics import STABILITY_SIZES as STABILITY_SIZES
from ._heuristics import Heuristics as Heuristics
from ._heuristics import HeuristicsSolver as HeuristicsSolver
from ._heuristics import StepHeuristics as StepHeuristics
from ._heuristics import heuristics_solver as heuristics_solver
from ._heuristics import scaled_error as scaled_error
from ._heuristics import step_heuristics as step_heuristics
from ._heuristics import stiffness_estimate as stiffness_estimate
from ._loss import KINDS as KINDS
from ._loss import Kind as Kind
from ._loss import Regularizer as Regularizer
from ._loss import regularized_loss as regularized_loss
from ._penalties import Reduction as Reduction
from ._penalties import SolveOptions as SolveOptions
from ._penalties import error_penalty as error_penalty
from ._penalties import local_error_penalty as local_error_penalty
from ._penalties import local_stiffness_penalty as local_stiffness_penalty
from ._penalties import solve_options as solve_options
from ._penalties import solve_with_heuristics as solve_with_heuristics
from ._penalties import stiffness_penalty as stiffness_penalty
from ._sde import SDE_SOLVERS as SDE_SOLVERS
from ._sde import sde_error_penalty as sde_error_penalty
from ._taylor import taylor_derivatives as taylor_derivatives
from ._taylor import taylor_penalty as taylor_penalty
