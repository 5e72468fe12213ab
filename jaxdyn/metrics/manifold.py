"""Improved precision and recall of generated samples (Kynkäänniemi, Karras, Laine, Lehtinen &
Aila 2019, "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS).

Each set's manifold is estimated as the union of balls around its points, each ball reaching
the point's `k`-th nearest neighbour in the same set (the point itself not counted):

    manifold(Φ) = ⋃_{φ ∈ Φ} B(φ, ‖φ − NN_k(φ, Φ)‖),

    precision = |{g ∈ G : g ∈ manifold(R)}| / |G|,    recall = |{r ∈ R : r ∈ manifold(G)}| / |R|,

for real points `R` and generated points `G` (a point on a ball's boundary counts as inside).
Precision is the fraction of samples that look like real data (quality); recall the fraction of
real data that the samples cover (diversity: a generator that collapses onto a few modes keeps
its precision and loses recall). The paper uses `k = 3` in a feature space; distances here are
Euclidean in whatever space the points are given.
"""

import numpy as np
from jaxtyping import ArrayLike, Float

from .._checks import check_count

__all__ = ["precision_recall"]


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`‖a_i − b_j‖²` from the differences, in row blocks of ~4M entries: the expansion
    `‖a‖² − 2a·b + ‖b‖²` loses every digit for near-duplicate points (its rounding, ~1e-16 of
    the norms, swamps a squared distance below it)."""
    rows = max(1, 4_000_000 // max(1, b.size))
    return np.concatenate(
        [np.sum((a[i : i + rows, None, :] - b[None]) ** 2, -1) for i in range(0, len(a), rows)]
    )


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each point to its `k`-th nearest neighbour among the others."""
    d2 = _squared_distances(points, points)
    np.fill_diagonal(d2, np.inf)
    return np.partition(d2, k - 1, axis=1)[:, k - 1]


def _inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return np.any(_squared_distances(queries, centres) <= radii[None, :], axis=1)


def precision_recall(
    real: Float[ArrayLike, "n dim"], generated: Float[ArrayLike, "m dim"], *, k: int = 3
) -> tuple[float, float]:
    """`(precision, recall)` of `generated` against `real` with `k`-nearest-neighbour balls
    (Kynkäänniemi et al. 2019; see the module), both in `[0, 1]`, computed in float64. Each set
    needs more than `k` points."""
    check_count("k", k)
    sets = []
    for name, x in (("real", real), ("generated", generated)):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] <= k or not np.all(np.isfinite(x)):
            raise ValueError(
                f"{name} must be finite points of shape (n, dim) with n > k={k}; got shape "
                f"{x.shape}" + ("" if np.all(np.isfinite(x)) else " with non-finite values")
            )
        sets.append(x)
    real, generated = sets
    if real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"real and generated must have the same dim, got {real.shape[1]} and "
            f"{generated.shape[1]}"
        )
    precision = np.mean(_inside(generated, real, _radii(real, k)))
    recall = np.mean(_inside(real, generated, _radii(generated, k)))
    return float(precision), float(recall)
