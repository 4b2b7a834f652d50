"""Model families: one package per family (``switching``, ``meta``).

Each family joins its NumPyro model (``neurodyn.models``), its guides (``neurodyn.guides``) and
the generic engine (``neurodyn.inference``) behind the typed protocol of
:mod:`neurodyn.families.protocol` (``make_config``, ``build``, ``fit``, ``evaluate``,
``posterior``, ``report``, ... and the capabilities it declares); the Run API
(:mod:`neurodyn.api`) uses families only through it. :func:`family_of` maps a model name to
its family.
"""

from __future__ import annotations

import importlib

_FAMILY_OF = {
    **dict.fromkeys(("srnn", "slds", "rslds", "hmm", "lds", "rnn"), "switching"),
    **dict.fromkeys(
        ("meta-dssm", "single-session", "shared-dynamics", "embedding-input", "linear-adapter"),
        "meta",
    ),
}

MODEL_NAMES = tuple(_FAMILY_OF)


def family_of(model: str):
    """The family module serving ``model``; ``ValueError`` naming the known models otherwise."""
    if model not in _FAMILY_OF:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"neurodyn.families.{_FAMILY_OF[model]}")


def require(family, capability: str, model: str) -> None:
    """``ValueError`` in one line when ``family`` does not declare ``capability``, naming the
    families that do."""
    if capability in family.CAPABILITIES:
        return
    able = sorted(
        name
        for name in set(_FAMILY_OF.values())
        if capability in importlib.import_module(f"neurodyn.families.{name}").CAPABILITIES
    )
    raise ValueError(f"{capability} applies to the {' or '.join(able)} family, not {model!r}")
