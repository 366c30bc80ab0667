"""Conversion to and from other libraries' models (their packages are imported lazily).

``from_neuralop`` turns a trained neuraloperator ``FNO`` into liponet's :class:`~liponet.models.FNO`
twin (same outputs, certified ``lipschitz_bound()``); ``to_neuralop`` writes a twin back.
"""

from .neuralop import NodeGridLinear as NodeGridLinear
from .neuralop import ParallelSum as ParallelSum
from .neuralop import SymmetricPadding as SymmetricPadding
from .neuralop import UnsupportedNeuralopError as UnsupportedNeuralopError
from .neuralop import from_neuralop as from_neuralop
from .neuralop import naive_bound as naive_bound
from .neuralop import to_neuralop as to_neuralop

__all__ = [
    "NodeGridLinear",
    "ParallelSum",
    "SymmetricPadding",
    "UnsupportedNeuralopError",
    "from_neuralop",
    "naive_bound",
    "to_neuralop",
]
