"""PDEBench and The Well: streaming HDF5 readers and batched generators (no network code here)."""

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
from .errors import WellFormatError as WellFormatError
from .errors import WrongRankError as WrongRankError
from .generators import available_families as available_families
from .generators import generate as generate
from .generators import simulate as simulate
from .generators.well_advection import generate_well as generate_well
from .reader import PDEBenchDataset as PDEBenchDataset
from .reader import pdebench_splits as pdebench_splits
from .stream import NormStats as NormStats
from .stream import PDEBenchStream as PDEBenchStream
from .stream import compute_stats as compute_stats
from .well import WellDataset as WellDataset
from .well import WellStream as WellStream
from .well import well_files as well_files

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
    "WellDataset",
    "WellFormatError",
    "WellStream",
    "WrongRankError",
    "available_families",
    "compute_stats",
    "generate",
    "generate_well",
    "pdebench_splits",
    "simulate",
    "well_files",
]
