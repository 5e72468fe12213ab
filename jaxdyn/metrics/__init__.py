"""Metrics for comparing models, samples and data: TimeGAN's discriminative and predictive
scores, R², bits per spike, Wasserstein distances, and the improved precision and recall of
generated samples (Kynkäänniemi et al. 2019)."""

from .generation import discriminative_score as discriminative_score
from .generation import predictive_score as predictive_score
from .manifold import precision_recall as precision_recall
from .regression import linear_r2 as linear_r2
from .regression import r2_score as r2_score
from .spikes import bits_per_spike as bits_per_spike
from .spikes import co_bps as co_bps
from .wasserstein import grid_histogram as grid_histogram
from .wasserstein import histogram_wasserstein2_squared as histogram_wasserstein2_squared
from .wasserstein import wasserstein2_squared as wasserstein2_squared
from .wasserstein import wasserstein_1d as wasserstein_1d
