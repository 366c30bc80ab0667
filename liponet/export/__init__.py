"""Deployment: ONNX graphs and ``torch.export`` programs of liponet models, with their certificate.

:func:`export_onnx` writes Fourier layers in real arithmetic (:class:`DFTSpectralMultiplier`,
:func:`onnx_ready`): ONNX runtimes have no complex tensors. :func:`export_program` keeps
liponet's registered FFT operators. :func:`deployment_card` is the JSON sidecar (certified
Lipschitz bound, norm, input layout) that ``liponet export`` writes next to either file. The
ONNX packages are imported lazily (the ``onnx`` extra).
"""

from .deploy import FORMATS as FORMATS
from .deploy import DeploymentInputs as DeploymentInputs
from .deploy import check_deployment as check_deployment
from .deploy import deployment_card as deployment_card
from .deploy import deployment_inputs as deployment_inputs
from .deploy import export_onnx as export_onnx
from .deploy import export_program as export_program
from .deploy import onnx_available as onnx_available
from .deploy import onnx_ready as onnx_ready
from .dft import DFTSpectralMultiplier as DFTSpectralMultiplier
from .dft import kept_dft_basis as kept_dft_basis

__all__ = [
    "FORMATS",
    "DFTSpectralMultiplier",
    "DeploymentInputs",
    "check_deployment",
    "deployment_card",
    "deployment_inputs",
    "export_onnx",
    "export_program",
    "kept_dft_basis",
    "onnx_available",
    "onnx_ready",
]
