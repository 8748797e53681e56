"""The package's own error types.

Every error raised for a bad file or a bad argument derives from :class:`HrinvError`, so a caller
can catch the package's refusals in one clause. Errors about a file name the file and the reason,
and never suggest an unsafe option (such as ``weights_only=False``).
"""

from __future__ import annotations

import pickle


class HrinvError(ValueError):
    """Base class: an input (file, tensor or parameter) that the package refuses, with the reason."""


class FileFormatError(HrinvError):
    """A file that cannot be read as what it should be; the message names the file and the reason."""


class CheckpointError(FileFormatError):
    """A network file that cannot be turned into networks: bad format, keys, shapes or values.

    The message names the file and the reason. A :class:`HrinvError` and a ``ValueError``.
    """


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle refers to a global (or a use of one) outside the allow-list; it was not executed.

    Both a :class:`CheckpointError` (so a :class:`HrinvError`) and a ``pickle.UnpicklingError``.
    """

    def __init__(self, module: str, name: str, path: str | None = None, detail: str | None = None) -> None:
        module, name = str(module)[:200], str(name)[:200]
        where = f" in {path}" if path else ""
        detail = detail or (
            "it is not on the allow-list of StyleGAN2-ADA snapshot contents, and unpickling it could execute "
            "arbitrary code"
        )
        super().__init__(f"refusing to load global '{module}.{name}'{where}: {detail}")
        self.global_name = f"{module}.{name}"
        self.module, self.name, self.path, self.detail = module, name, path, detail

    def __reduce__(self) -> tuple:
        return (type(self), (self.module, self.name, self.path, self.detail))
