"""Exceptions raised for PDEBench (and The Well's) files that cannot be read as expected.

Every message names the file, the key (when there is one) and what was expected. All of them
derive from :class:`PDEBenchFormatError`, itself a ``ValueError``, so the CLI reports them as
one-line user errors.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "CorruptFileError",
    "EmptySelectionError",
    "MissingKeyError",
    "NonFiniteError",
    "NotHDF5Error",
    "PDEBenchFileNotFoundError",
    "PDEBenchFormatError",
    "SizeMismatchError",
    "UnknownLayoutError",
    "UnreadableFileError",
    "WellFormatError",
    "WrongRankError",
]


class PDEBenchFormatError(ValueError):
    """A PDEBench file (or a selection in it) does not match what the reader expects.

    Parameters
    ----------
    path
        The file concerned.
    message
        What is wrong and what was expected.
    key
        The HDF5 key concerned, if any.
    """

    def __init__(self, path: str | PathLike[str], message: str, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        where = f"{self.path}" if key is None else f"{self.path} [key {key!r}]"
        super().__init__(f"{where}: {message}")


class PDEBenchFileNotFoundError(PDEBenchFormatError, FileNotFoundError):
    """The file does not exist."""


class UnreadableFileError(PDEBenchFormatError):
    """The file exists but this process may not read it (permissions)."""


class SizeMismatchError(PDEBenchFormatError):
    """An array declares more values than the file stores (the rest would read as fill)."""


class NotHDF5Error(PDEBenchFormatError):
    """The file exists but is not an HDF5 file."""


class CorruptFileError(PDEBenchFormatError):
    """The file is an HDF5 file that cannot be read (truncated or corrupt)."""


class UnknownLayoutError(PDEBenchFormatError):
    """The keys of the file match none of the PDEBench layouts."""


class MissingKeyError(PDEBenchFormatError):
    """A key required by the detected layout is absent."""


class WrongRankError(PDEBenchFormatError):
    """An array has the wrong number of dimensions (or an inconsistent shape)."""


class NonFiniteError(PDEBenchFormatError):
    """A sample contains NaN or infinite values (``on_nonfinite="raise"``)."""


class EmptySelectionError(PDEBenchFormatError):
    """Strides, caps or split rules leave nothing to read."""


class WellFormatError(PDEBenchFormatError):
    """A file breaks The Well's HDF5 specification (groups, attributes or array shapes).

    The message names the file, the group or dataset concerned and what the specification
    expects (see :mod:`liponet.data.well`).
    """
