"""scikit-learn's bundled 8×8 handwritten digits (no download), split reproducibly."""

import numpy as np
from jaxtyping import Array, Float, Int

from ._stratify import per_class_split

__all__ = ["digits"]


def digits(
    *, test_fraction: float = 0.2, validation_fraction: float = 0.0, seed: int = 0
) -> dict[str, tuple[Float[Array, "n 64"], Int[Array, " n"]]]:
    """`load_digits` (1,797 images, 10 classes; Alpaydin & Kaynak 1998) with pixels scaled to
    [0, 1], split per class into `train`, `validation` (if asked) and `test`, each a pair
    `(images of shape (n, 64), labels of shape (n,))` as NumPy arrays."""
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1 or not 0 <= validation_fraction < 1 - test_fraction:
        raise ValueError(
            f"digits needs 0 < test_fraction < 1 and 0 <= validation_fraction < "
            f"1 - test_fraction; got {test_fraction}, {validation_fraction}"
        )
    data = load_digits()
    images = (data.data / 16.0).astype(np.float32)
    labels = data.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    parts = per_class_split(labels, 10, test_fraction, validation_fraction, rng)
    split = {}
    for name, pieces in parts.items():
        index = rng.permutation(np.concatenate(pieces))
        if index.size:
            split[name] = (images[index], labels[index])
    return split
