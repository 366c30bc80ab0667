"""Studies built on the library: reference PDE solutions and the certified-regression study.

They return data (rows, tensors); the CLI and ``benchmarks/`` print and save them.
"""

from .regression import RegressionConfig as RegressionConfig
from .regression import RegressionStudy as RegressionStudy
from .regression import run_regression_study as run_regression_study

__all__ = ["RegressionConfig", "RegressionStudy", "run_regression_study"]
