"""The package's own error types.

Every error raised for a bad file or a bad argument derives from :class:`HrinvError`, so a caller
can catch the package's refusals in one clause. Errors about a file name the file and the reason,
and never suggest an unsafe option (such as ``weights_only=False``).
"""

from __future__ import annotations


class HrinvError(ValueError):
    """Base class: an input (file, tensor or parameter) that the package refuses, with the reason."""


class FileFormatError(HrinvError):
    """A file that cannot be read as what it should be; the message names the file and the reason."""
