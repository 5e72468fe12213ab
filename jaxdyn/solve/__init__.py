"""Solving differential equations: a thin, typed layer over Diffrax.

- `odeint`: ordinary differential equations `dy = f(t, y) dt`.
- `sdeint`: stochastic differential equations `dy = f(t, y) dt + g(t, y) dW` (Itô or
  Stratonovich), on a `GridBrownianPath` or a `VirtualBrownianPath`; `convert_drift`.
- `cdeint`: controlled differential equations `dy = f(t, y) dX(t)` (neural CDEs).
- `Solution`, `Stats`, `RESULTS`: what a solve returns; `Endpoint`: what samplers and
  likelihoods built on a solve return (the value at its end).
- `SOLVERS`, `ADJOINTS`, `SDE_SOLVERS`, `NOISES`: the names the solves accept.
"""

from .._solvers import ADJOINTS as ADJOINTS
from .._solvers import SOLVERS as SOLVERS
from ._brownian import GridBrownianPath as GridBrownianPath
from ._brownian import VirtualBrownianPath as VirtualBrownianPath
from ._cde import cdeint as cdeint
from ._common import RESULTS as RESULTS
from ._common import Batch as Batch
from ._common import Endpoint as Endpoint
from ._common import OnFailure as OnFailure
from ._common import Solution as Solution
from ._common import Stats as Stats
from ._ode import odeint as odeint
from ._sde import NOISES as NOISES
from ._sde import SDE_SOLVERS as SDE_SOLVERS
from ._sde import Calculus as Calculus
from ._sde import Noise as Noise
from ._sde import convert_drift as convert_drift
from ._sde import sdeint as sdeint
