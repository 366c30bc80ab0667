import math

import pytest
import torch

from liponet.functional import TARGET_MARGIN
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


def test_fourier_variant_is_certified_and_budgeted_from_the_data():
    from certcheck import check_all

    from liponet.studies.regression import fourier_lipmlp, harmonics_for

    # J is the fewest harmonics whose embedding constant reaches k.
    assert [harmonics_for(k) for k in (1.0, 6.3, 13.0, 14.1, 23.0)] == [1, 2, 2, 3, 3]
    model = fourier_lipmlp(8, 2, 2).eval()
    # the embedding's exact constant times three LipMLP layers aiming at 1 * TARGET_MARGIN
    expected = 2 * math.pi * math.sqrt(5) * TARGET_MARGIN**3
    assert model.lipschitz_bound() == pytest.approx(expected, rel=1e-6)
    check_all(lambda: fourier_lipmlp(8, 2, 2), torch.rand(6, 2))
