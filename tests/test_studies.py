import pytest

from liponet.studies.burgers import solve_burgers
from liponet.studies.regression import RegressionConfig


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="nu"):
        solve_burgers(0.0)
    with pytest.raises(ValueError, match="n_x"):
        solve_burgers(0.1, n_x=2)
    with pytest.raises(ValueError, match="subdivisions"):
        RegressionConfig(subdivisions=0).check()
    with pytest.raises(ValueError, match="lr"):
        RegressionConfig(lr=float("nan")).check()
