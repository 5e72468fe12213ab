"""Where a result was measured: package versions and the machine, for run records."""

import os
import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["machine", "versions"]

PACKAGES = ("jaxdyn", "jax", "jaxlib", "equinox", "diffrax", "optax", "jaxopt", "numpy")


def versions(*extra: str) -> dict[str, str | None]:
    """Installed versions of Python, jaxdyn's stack and the `extra` distributions
    (`None` where one is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES + extra:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def machine() -> dict:
    """The platform, processor, CPU count and JAX devices."""
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_devices": [str(d) for d in jax.devices()],
    }
