"""jaxdyn: a JAX toolkit for modelling and studying dynamics.

Public API (re-exports only):

- `odeint`, `sdeint`, `cdeint`, `Solution`, `Endpoint`, `Stats`, `RESULTS`, `SOLVERS`,
  `ADJOINTS` — solving ODEs, SDEs and CDEs (`jaxdyn.solve`).
- `MLPField`, `NeuralODE`, `NeuralSDE`, `NeuralCDE` — models (`jaxdyn.models`).
- `fit`, `make_step`, `FitResult`, `TrainingDivergedError` — training (`jaxdyn.train`).
- Subpackages: `solve`, `implicit`, `train`, `data`, `models`, `generative`, `metrics`.
- `ConfigError`, `load_config` — typed configs (`jaxdyn.config`).
"""

from . import data as data
from . import generative as generative
from . import implicit as implicit
from . import metrics as metrics
from . import models as models
from . import solve as solve
from . import train as train
from .config import ConfigError as ConfigError
from .config import load_config as load_config
from .models import MLPField as MLPField
from .models import NeuralCDE as NeuralCDE
from .models import NeuralODE as NeuralODE
from .models import NeuralSDE as NeuralSDE
from .solve import ADJOINTS as ADJOINTS
from .solve import RESULTS as RESULTS
from .solve import SOLVERS as SOLVERS
from .solve import Endpoint as Endpoint
from .solve import Solution as Solution
from .solve import Stats as Stats
from .solve import cdeint as cdeint
from .solve import odeint as odeint
from .solve import sdeint as sdeint
from .train import FitResult as FitResult
from .train import TrainingDivergedError as TrainingDivergedError
from .train import fit as fit
from .train import make_step as make_step

__version__ = "0.1.0"
