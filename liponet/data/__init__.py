"""PDEBench layouts: streaming HDF5 reader and batched generators (no network code here)."""

from .errors import CorruptFileError as CorruptFileError
from .errors import EmptySelectionError as EmptySelectionError
from .errors import MissingKeyError as MissingKeyError
from .errors import NonFiniteError as NonFiniteError
from .errors import NotHDF5Error as NotHDF5Error
from .errors import PDEBenchFileNotFoundError as PDEBenchFileNotFoundError
from .errors import PDEBenchFormatError as PDEBenchFormatError
from .errors import SizeMismatchError as SizeMismatchError
from .errors import UnknownLayoutError as UnknownLayoutError
from .errors import UnreadableFileError as UnreadableFileError
from .errors import WrongRankError as WrongRankError
from .generators import available_families as available_families
from .generators import generate as generate
from .generators import simulate as simulate
from .reader import PDEBenchDataset as PDEBenchDataset
from .reader import pdebench_splits as pdebench_splits
from .stream import NormStats as NormStats
from .stream import PDEBenchStream as PDEBenchStream
from .stream import compute_stats as compute_stats

__all__ = [
    "CorruptFileError",
    "EmptySelectionError",
    "MissingKeyError",
    "NonFiniteError",
    "NormStats",
    "NotHDF5Error",
    "PDEBenchDataset",
    "PDEBenchFileNotFoundError",
    "PDEBenchFormatError",
    "PDEBenchStream",
    "SizeMismatchError",
    "UnknownLayoutError",
    "UnreadableFileError",
    "WrongRankError",
    "available_families",
    "compute_stats",
    "generate",
    "pdebench_splits",
    "simulate",
]
