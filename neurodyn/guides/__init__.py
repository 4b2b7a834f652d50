"""Guides, picked by name or written by the user.

A user-written guide is a plain function with its model's signature, named in a config (and on
the command line, ``--guide mypkg.guides:my_guide``) by its import path ``"module:qualname"``, so
that a run folder can be reloaded. :func:`import_path` and :func:`load_function` turn a function
into that path and back, and :func:`guide_option` checks a config's choice; all raise
``ValueError`` with a one-line message.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable


def import_path(fn: Callable) -> str:
    """``"module:qualname"`` of a module-level function, checked to import back to ``fn``."""
    path = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    if "<" in path or load_function(path) is not fn:
        raise ValueError(
            f"guide {path} cannot be saved in a run: give a function defined at the top level "
            "of an importable module (not a lambda, a closure or a functools.partial)"
        )
    return path


def guide_option(guide, names) -> str:
    """A guide name among ``names``, or a user guide's checked import path (from the path or
    the function itself); ``ValueError`` with a one-line message otherwise."""
    if callable(guide):
        return import_path(guide)
    if guide in names:
        return guide
    if ":" not in str(guide):
        raise ValueError(
            f"unknown guide {guide!r}; choose one of {', '.join(names)} or give a user guide "
            "as module:function"
        )
    load_function(guide)
    return guide


def load_function(path: str) -> Callable:
    """The function named by ``"module:qualname"`` (the current folder is searched too)."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"guide {path!r} is not of the form module:function")
    try:
        module = _import(module_name)
    except Exception as e:  # a missing module, or one that fails as it imports
        raise ValueError(f"cannot import guide {path!r}: {type(e).__name__}: {e}") from None
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"cannot import guide {path!r}: {module_name} has no {qualname}")
    if not callable(obj):
        raise ValueError(f"guide {path!r} is not a function")
    return obj


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        # the `neurodyn` script does not put the current folder on sys.path; python -m does
        if os.getcwd() in sys.path or "" in sys.path:
            raise
        sys.path.append(os.getcwd())
        return importlib.import_module(module_name)
