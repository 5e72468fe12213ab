"""Feature libraries `Θ(x)` for sparse regression of dynamics (SINDy; Brunton, Proctor & Kutz
2016): candidate functions of the state, each with a readable name.

A library maps states `x` of shape `(..., d)` to features `Θ(x)` of shape `(..., p)`;
`names(inputs)` names the `p` features. Libraries combine: `a + b` concatenates their features,
`a * b` takes every product of a feature of `a` with one of `b` (a tensor product). The order
and names of `PolynomialLibrary` and `FourierLibrary` features are pysindy's.
"""

import functools
import itertools
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count

__all__ = [
    "ConcatLibrary",
    "CustomLibrary",
    "FourierLibrary",
    "Library",
    "PolynomialLibrary",
    "TensorLibrary",
    "input_names",
]


def input_names(dim: int, names: Sequence[str] | None = None) -> tuple[str, ...]:
    """`names` checked against `dim`, or `x0, x1, …`."""
    if names is None:
        return tuple(f"x{i}" for i in range(dim))
    if len(names) != dim:
        raise ValueError(f"input_names has {len(names)} names for a state of dimension {dim}")
    return tuple(names)


def _state(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("a library needs states x of shape (..., dim), got a scalar")
    return x


class Library(eqx.Module):
    """A feature library: `library(x)` `(..., d) → (..., p)`; `names(inputs)` the `p` names;
    `num_features(d)` their number."""

    def __call__(self, x: Float[ArrayLike, "*batch dim"]) -> Float[Array, "*batch features"]:
        raise NotImplementedError

    def names(self, inputs: Sequence[str]) -> tuple[str, ...]:
        raise NotImplementedError

    def num_features(self, dim: int) -> int:
        return len(self.names(input_names(dim)))

    def __add__(self, other: "Library") -> "ConcatLibrary":
        return ConcatLibrary((self, other))

    def __mul__(self, other: "Library") -> "TensorLibrary":
        return TensorLibrary(self, other)


def _monomials(dim: int, degree: int, include_bias: bool, interaction: bool):
    """Exponent tuples (one per feature) in pysindy's order: by total degree, then
    lexicographically over combinations with replacement."""
    out = []
    for k in range(0 if include_bias else 1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(dim), k):
            if not interaction and len(set(combo)) > 1:
                continue
            out.append(tuple(combo.count(i) for i in range(dim)))
    return out


class PolynomialLibrary(Library):
    """Monomials of the state up to total degree `degree`: `1, x0, x1, …, x0², x0 x1, …`.

    **Arguments:** `degree` (≥ 1); `include_bias`: the constant feature `1`; `interaction`:
    products of different coordinates (`False`: powers of single coordinates only).
    """

    degree: int = eqx.field(static=True)
    include_bias: bool = eqx.field(static=True, default=True)
    interaction: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_count("degree", self.degree, 1)

    def __call__(self, x):
        x = _state(x)
        monomials = _monomials(x.shape[-1], self.degree, self.include_bias, self.interaction)
        ones = jnp.ones(x.shape[:-1], x.dtype)
        # Products of integer powers (not exp(log)): exact for negative and zero states.
        columns = [
            functools.reduce(jnp.multiply, [x[..., i] ** p for i, p in enumerate(e) if p], ones)
            for e in monomials
        ]
        return jnp.stack(columns, -1)

    def names(self, inputs):
        def name(exponents):
            factors = [
                n if p == 1 else f"{n}^{p}" for n, p in zip(inputs, exponents, strict=True) if p
            ]
            return " ".join(factors) or "1"

        return tuple(
            name(e)
            for e in _monomials(len(inputs), self.degree, self.include_bias, self.interaction)
        )


class FourierLibrary(Library):
    """`sin(k x_i)` and `cos(k x_i)` for `k = 1 … num_frequencies` and every coordinate `i`
    (pysindy's order: by frequency, then coordinate, sine before cosine)."""

    num_frequencies: int = eqx.field(static=True, default=1)
    include_sin: bool = eqx.field(static=True, default=True)
    include_cos: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_count("num_frequencies", self.num_frequencies, 1)
        if not (self.include_sin or self.include_cos):
            raise ValueError("FourierLibrary needs include_sin or include_cos")

    def _terms(self, dim):
        for k in range(1, self.num_frequencies + 1):
            for i in range(dim):
                if self.include_sin:
                    yield jnp.sin, "sin", k, i
                if self.include_cos:
                    yield jnp.cos, "cos", k, i

    def __call__(self, x):
        x = _state(x)
        return jnp.stack([f(k * x[..., i]) for f, _, k, i in self._terms(x.shape[-1])], -1)

    def names(self, inputs):
        return tuple(f"{name}({k} {inputs[i]})" for _, name, k, i in self._terms(len(inputs)))


class CustomLibrary(Library):
    """Each of `functions` applied to each coordinate: `functions[j](x_i)`, named by
    `formats[j].format(name_i)` (e.g. `CustomLibrary((jnp.exp,), ("exp({})",))`)."""

    functions: tuple[Callable[[Array], Array], ...] = eqx.field(static=True)
    formats: tuple[str, ...] = eqx.field(static=True)

    def __check_init__(self):
        if len(self.functions) != len(self.formats) or not self.functions:
            raise ValueError(
                f"CustomLibrary needs one format per function, got {len(self.functions)} "
                f"functions and {len(self.formats)} formats"
            )

    def __call__(self, x):
        x = _state(x)
        return jnp.stack([f(x[..., i]) for f in self.functions for i in range(x.shape[-1])], -1)

    def names(self, inputs):
        return tuple(fmt.format(n) for fmt in self.formats for n in inputs)


class ConcatLibrary(Library):
    """The features of each library in turn (`a + b`)."""

    libraries: tuple[Library, ...]

    def __call__(self, x):
        return jnp.concatenate([lib(x) for lib in self.libraries], -1)

    def names(self, inputs):
        return tuple(n for lib in self.libraries for n in lib.names(inputs))


class TensorLibrary(Library):
    """Every product `a_j(x) b_k(x)` of a feature of `a` and one of `b` (`a * b`), `j` outer."""

    a: Library
    b: Library

    def __call__(self, x):
        fa, fb = self.a(x), self.b(x)
        return (fa[..., :, None] * fb[..., None, :]).reshape(*fa.shape[:-1], -1)

    def names(self, inputs):
        return tuple(f"{m} {n}" for m in self.a.names(inputs) for n in self.b.names(inputs))
