"""The per-class split shared by the datasets that split their own examples."""

import numpy as np


def per_class_split(
    labels: np.ndarray,
    num_classes: int,
    test_fraction: float,
    validation_fraction: float,
    rng: np.random.Generator,
) -> dict[str, list[np.ndarray]]:
    """Indices of each class `c < num_classes`, shuffled by `rng` (one permutation per class,
    in class order), cut into `round(test_fraction · n_c)` test, `round(validation_fraction ·
    n_c)` validation and the rest train: `{"train" | "validation" | "test": [indices of class
    0, class 1, …]}`."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_fraction * members.size)
        n_validation = round(validation_fraction * members.size)
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_validation])
        parts["train"].append(members[n_test + n_validation :])
    return parts
