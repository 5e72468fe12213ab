"""Jittable training: `fit`, `make_step`, minibatches (`fit_batch`), atomic checkpoints, the
metrics log, data parallelism over devices and processes (`data_mesh`,
`initialize_distributed`), SDE transition likelihoods, the KL warm-up and coordinated
dropout (`coordinated_dropout`, `gradient_masked`)."""

from .batches import SAMPLINGS as SAMPLINGS
from .batches import fit_batch as fit_batch
from .batches import index_shuffle as index_shuffle
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import save_checkpoint as save_checkpoint
from .dropout import coordinated_dropout as coordinated_dropout
from .dropout import gradient_masked as gradient_masked
from .loop import FitResult as FitResult
from .loop import TrainingDivergedError as TrainingDivergedError
from .loop import fit as fit
from .loop import make_step as make_step
from .metrics import read_metrics as read_metrics
from .optim import OPTIMIZERS as OPTIMIZERS
from .optim import make_optimizer as make_optimizer
from .parallel import PARALLEL as PARALLEL
from .parallel import data_mesh as data_mesh
from .parallel import initialize_distributed as initialize_distributed
from .parallel import is_primary as is_primary
from .transition import TRANSITION_DENSITIES as TRANSITION_DENSITIES
from .transition import euler_maruyama_log_density as euler_maruyama_log_density
from .transition import local_linear_log_density as local_linear_log_density
from .transition import transition_nll as transition_nll
from .warmup import StepCounted as StepCounted
from .warmup import counting_steps as counting_steps
from .warmup import kl_warmup as kl_warmup
