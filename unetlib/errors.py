"""The kit's one error for bad user input and missing or corrupt files.

``UnetlibError`` is a ``ValueError``, so code that catches ``ValueError``
catches every user error of the kit. The command line prints its message as
one line without a traceback; the message names the file or value and the fix.
"""


from typing import Any


class UnetlibError(ValueError):
    """Bad input or a missing/corrupt file; the message names the file and the fix."""


def short_repr(value: Any, limit: int = 160) -> str:
    """``repr(value)``, cut to ``limit`` characters (ending in ``...``) to fit a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
