"""Solving differential equations: a thin, typed layer over Diffrax.

- `odeint`: ordinary differential equations `dy = f(t, y) dt`.
- `Solution`, `Stats`, `RESULTS`: what a solve returns.
- `SOLVERS`, `ADJOINTS`: the solver and adjoint names `odeint` accepts.
"""

from ._common import ADJOINTS as ADJOINTS
from ._common import RESULTS as RESULTS
from ._common import SOLVERS as SOLVERS
from ._common import Batch as Batch
from ._common import OnFailure as OnFailure
from ._common import Solution as Solution
from ._common import Stats as Stats
from ._common import apply_failure_policy as apply_failure_policy
from ._common import resolve_solver as resolve_solver
from ._common import stepsize_controller as stepsize_controller
from ._ode import odeint as odeint
