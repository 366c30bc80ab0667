"""Conversion to and from other libraries' models (their packages are imported lazily).

``from_neuralop`` turns a trained neuraloperator ``FNO`` into liponet's :class:`~liponet.models.FNO`
twin (same outputs, certified ``lipschitz_bound()``); ``constrain`` puts a twin under a certified
Lipschitz budget for fine-tuning (:class:`ConstrainedFNO`); ``to_neuralop`` writes either back.
"""

from .constrain import ConstrainedFNO as ConstrainedFNO
from .constrain import constrain as constrain
from .neuralop import NodeGridLinear as NodeGridLinear
from .neuralop import ParallelSum as ParallelSum
from .neuralop import SymmetricPadding as SymmetricPadding
from .neuralop import UnsupportedNeuralopError as UnsupportedNeuralopError
from .neuralop import from_neuralop as from_neuralop
from .neuralop import naive_bound as naive_bound
from .neuralop import to_neuralop as to_neuralop

__all__ = [
    "ConstrainedFNO",
    "NodeGridLinear",
    "ParallelSum",
    "SymmetricPadding",
    "UnsupportedNeuralopError",
    "constrain",
    "from_neuralop",
    "naive_bound",
    "to_neuralop",
]
