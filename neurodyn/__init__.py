"""neurodyn: NumPyro models of latent neural population dynamics.

The Run API (:mod:`neurodyn.api`) is available at the top level: ``neurodyn.fit``,
``neurodyn.load``, ``neurodyn.compare``, ``neurodyn.sweep``, ``neurodyn.Run``. It is imported on
first use, so that ``import neurodyn`` (and ``neurodyn --help``) stays instant.
"""

import importlib

__version__ = "0.1.0"

_API = ("Run", "compare", "fit", "load", "sweep")


def __getattr__(name):
    if name in _API or name == "api":
        api = importlib.import_module(f"{__name__}.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'neurodyn' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
