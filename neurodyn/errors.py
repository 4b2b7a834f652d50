"""The exceptions that carry the package's error contract: bad input is one line, exit 2.

Lowest layer: every other module may raise these; the command line turns them into
``error: <message>`` (exit 2) and ``Interrupted`` into its message (exit 130).
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (an option, a folder, a run): reported as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message that says what was kept and how to continue."""
