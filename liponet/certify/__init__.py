"""Certified error bounds (function approximation, operators) and empirical estimates."""

from . import reference as reference
from .calibration import StreamedErrorBound as StreamedErrorBound
from .calibration import file_pairs as file_pairs
from .calibration import generated_pairs as generated_pairs
from .calibration import streamed_error_bound as streamed_error_bound
from .discrete import float32_storage_noise as float32_storage_noise
from .discrete import generator_lipschitz as generator_lipschitz
from .discrete import grid_lipschitz as grid_lipschitz
from .discrete import logistic_pair_bound as logistic_pair_bound
from .discrete import logistic_pair_lipschitz as logistic_pair_lipschitz
from .discrete import multiplier_lipschitz as multiplier_lipschitz
from .empirical import estimate_lipschitz as estimate_lipschitz
from .empirical import jacobian_lipschitz as jacobian_lipschitz
from .empirical import pair_ratios as pair_ratios
from .function import BOUND_METHODS as BOUND_METHODS
from .function import MaxErrorBound as MaxErrorBound
from .function import TargetLipschitzEstimate as TargetLipschitzEstimate
from .function import estimate_target_lipschitz as estimate_target_lipschitz
from .function import max_error_bound as max_error_bound
from .harness import CoverageReport as CoverageReport
from .harness import calibration_sweep as calibration_sweep
from .harness import coverage_report as coverage_report
from .harness import field_operator as field_operator
from .harness import observed_errors as observed_errors
from .interpolation import GridInterpolant as GridInterpolant
from .intersection import EmptyIntersectionError as EmptyIntersectionError
from .intersection import MultiPairErrorBound as MultiPairErrorBound
from .intersection import NeighbourSearch as NeighbourSearch
from .intersection import centroid_bound as centroid_bound
from .intersection import multi_pair_error_bound as multi_pair_error_bound
from .norms import field_norm as field_norm
from .operator import LABELS as LABELS
from .operator import Certificate as Certificate
from .operator import ErrorBound as ErrorBound
from .operator import LipschitzConstant as LipschitzConstant
from .operator import as_constant as as_constant
from .operator import available_true_operators as available_true_operators
from .operator import certified_radius as certified_radius
from .operator import certify_rollout as certify_rollout
from .operator import estimate_true_lipschitz as estimate_true_lipschitz
from .operator import model_constant as model_constant
from .operator import operator_error_bound as operator_error_bound
from .operator import register_true_constant as register_true_constant
from .operator import robustness_bound as robustness_bound
from .operator import rollout_error_bound as rollout_error_bound
from .operator import sup_output_constant as sup_output_constant
from .operator import true_lipschitz as true_lipschitz
from .premises import ANY_GRID as ANY_GRID
from .premises import CONTINUOUS as CONTINUOUS
from .premises import PremiseError as PremiseError
from .premises import Premises as Premises
from .premises import weights_fingerprint as weights_fingerprint
from .symmetry import SymmetricErrorBound as SymmetricErrorBound
from .symmetry import SymmetryGroup as SymmetryGroup
from .symmetry import SymmetryPremiseError as SymmetryPremiseError
from .symmetry import check_model_symmetry as check_model_symmetry
from .symmetry import operator_symmetry as operator_symmetry
from .symmetry import symmetric_error_bound as symmetric_error_bound
from .tighter import conformal_error_bound as conformal_error_bound
from .tighter import error_lipschitz_bound as error_lipschitz_bound
from .tighter import estimate_error_lipschitz as estimate_error_lipschitz
from .tighter import residual_error_bound as residual_error_bound

__all__ = [
    "ANY_GRID",
    "BOUND_METHODS",
    "CONTINUOUS",
    "LABELS",
    "Certificate",
    "CoverageReport",
    "EmptyIntersectionError",
    "ErrorBound",
    "GridInterpolant",
    "LipschitzConstant",
    "MaxErrorBound",
    "MultiPairErrorBound",
    "NeighbourSearch",
    "PremiseError",
    "Premises",
    "StreamedErrorBound",
    "SymmetricErrorBound",
    "SymmetryGroup",
    "SymmetryPremiseError",
    "TargetLipschitzEstimate",
    "as_constant",
    "available_true_operators",
    "calibration_sweep",
    "centroid_bound",
    "certified_radius",
    "certify_rollout",
    "check_model_symmetry",
    "conformal_error_bound",
    "coverage_report",
    "error_lipschitz_bound",
    "estimate_error_lipschitz",
    "estimate_lipschitz",
    "estimate_target_lipschitz",
    "estimate_true_lipschitz",
    "field_norm",
    "field_operator",
    "file_pairs",
    "float32_storage_noise",
    "generated_pairs",
    "generator_lipschitz",
    "grid_lipschitz",
    "jacobian_lipschitz",
    "logistic_pair_bound",
    "logistic_pair_lipschitz",
    "max_error_bound",
    "model_constant",
    "multi_pair_error_bound",
    "multiplier_lipschitz",
    "observed_errors",
    "operator_error_bound",
    "operator_symmetry",
    "pair_ratios",
    "reference",
    "register_true_constant",
    "residual_error_bound",
    "robustness_bound",
    "rollout_error_bound",
    "streamed_error_bound",
    "sup_output_constant",
    "symmetric_error_bound",
    "true_lipschitz",
    "weights_fingerprint",
]
