"""Guides, picked by name or written by the user.

A user-written guide is a plain function with its model's signature, named in a config (and on
the command line, ``--guide mypkg.guides:my_guide``) by its import path ``"module:qualname"``, so
that a run folder can be reloaded. :func:`import_path` and :func:`load_function` turn a function
into that path and back, and :func:`guide_option` checks a config's choice; all raise
``ValueError`` with a one-line message. :func:`load_guide` wraps a user guide so that an
exception it raises is reported in one line naming the guide.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
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


def guide_option(guide, names, keywords=()) -> str:
    """A guide name among ``names``, or a user guide's checked import path (from the path or
    the function itself); ``ValueError`` with a one-line message otherwise.

    A user guide must be a plain Python function defined in the module it is named by, callable
    as ``fn(batch, num_trials=..., **{k: ... for k in keywords})``.
    """
    if callable(guide):
        path = import_path(guide)
    elif guide in names:
        return guide
    elif ":" not in str(guide):
        raise ValueError(
            f"unknown guide {guide!r}; choose one of {', '.join(names)} or give a user guide "
            "as module:function"
        )
    else:
        path = str(guide)
    fn = load_function(path)
    _check_guide(fn, path, keywords)
    return path


def _check_guide(fn, path: str, keywords) -> None:
    """Refuse what is not a plain function with a guide's signature (e.g. ``os:system``)."""
    module_name = path.partition(":")[0]
    if not inspect.isfunction(fn) or fn.__module__ != module_name:
        raise ValueError(f"guide {path!r} is not a Python function defined in module {module_name}")
    try:
        inspect.signature(fn).bind(None, num_trials=1, **dict.fromkeys(keywords))
    except TypeError as e:
        want = ", ".join(["batch", "num_trials", *keywords])
        raise ValueError(
            f"guide {path!r} does not take the guide's arguments ({want}): {e}"
        ) from None


class GuideError(ValueError):
    """A user-written guide raised; the message names the guide and the exception."""


def load_guide(path: str) -> Callable:
    """The user guide named by ``"module:qualname"``, wrapped so that an exception it raises
    becomes a one-line :class:`GuideError` naming the guide."""
    fn = load_function(path)

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GuideError:
            raise
        except Exception as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise GuideError(f"user guide {path} raised {type(e).__name__}: {detail}") from e

    return guarded


_ANNOUNCED: set[str] = set()


def load_function(path: str) -> Callable:
    """The function named by ``"module:qualname"``, imported from the installed environment
    (``sys.path`` as it is: the current folder is searched only when Python put it there, and
    never the run folder). The first import of a module not yet imported is announced on
    stderr in one line."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"guide {path!r} is not of the form module:function")
    try:
        # find_spec imports only the parent packages, so a missing module is refused before
        # the note promises an import that cannot happen.
        found = module_name in sys.modules or importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(
            f"cannot import guide {path!r}: no module named {module_name!r} on the Python path "
            "(install it, or add its folder to PYTHONPATH)"
        )
    if module_name not in sys.modules and module_name not in _ANNOUNCED:
        _ANNOUNCED.add(module_name)
        print(f"note: importing module {module_name} for user guide {path}", file=sys.stderr)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"cannot import guide {path!r}: no module named {e.name!r} on the Python path "
            "(install it, or add its folder to PYTHONPATH)"
        ) from None
    except Exception as e:  # a module that fails as it imports
        raise ValueError(f"cannot import guide {path!r}: {type(e).__name__}: {e}") from None
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"cannot import guide {path!r}: {module_name} has no {qualname}")
    if not callable(obj):
        raise ValueError(f"guide {path!r} is not a function")
    return obj
