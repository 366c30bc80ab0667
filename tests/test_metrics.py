import math

import pytest
import torch
from torch.testing import assert_close

from liponet.metrics import METRIC_NAMES, PDEBenchMetrics, pdebench_metrics

NAN = float("nan")


def _check(got, expected):
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(float(got[name])), name
        else:
            assert float(got[name]) == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_1d_against_hand_computed_values():
    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[0.0, 0.0, 0.0, 2.0]]])
    err = torch.tensor([[[1.0, 0.0, 0.0, 1.0]], [[0.0, 2.0, 0.0, 0.0]]])
    got = pdebench_metrics(target + err, target)
    # |F_k|^2 of err: sample 1 -> 4, 2, 0; sample 2 -> 4, 4, 4 (k = 0, 1, 2: rfft half-spectrum)
    e_k = [math.sqrt((4 + 4) / 2) / 4, math.sqrt((2 + 4) / 2) / 4, math.sqrt((0 + 4) / 2) / 4]
    _check(
        got,
        {
            "rmse": (math.sqrt(0.5) + 1.0) / 2,
            "nrmse": (math.sqrt(0.5 / 7.5) + 1.0) / 2,
            "crmse": math.sqrt((0.5**2 + 0.5**2) / 2),  # (sum_x e) / N = 2 / 4 per sample
            "brmse": (math.sqrt((1 + 1) / 2) + 0.0) / 2,
            "frmse_low": sum(e_k) / 3,
            "frmse_mid": NAN,  # only 3 shells on a 4-point grid
            "frmse_high": NAN,
            "max": 2.0,
            "rel_l2": (math.sqrt(2 / 30) + 1.0) / 2,
        },
    )
    assert set(got) == set(METRIC_NAMES)


def test_2d_against_hand_computed_values():
    target = torch.cat([torch.ones(1, 1, 4, 4), 2 * torch.ones(1, 1, 4, 4)])
    err = torch.zeros(2, 1, 4, 4)
    err[0, 0, 0, 0] = 4.0  # a corner: on two faces, flat spectrum |F|^2 = 16
    err[1, 0, 1, 1] = 2.0  # interior: no boundary error, |F|^2 = 4
    got = pdebench_metrics(target + err, target)
    # index box i, j in {0, 1}: shell 0 = {(0,0)}, shell 1 = {(0,1), (1,0), (1,1)}
    e0 = math.sqrt((16 + 4) / 2) / 16
    e1 = math.sqrt((3 * 16 + 3 * 4) / 2) / 16
    _check(
        got,
        {
            "rmse": (1.0 + 0.5) / 2,
            "nrmse": (1.0 + 0.25) / 2,
            "crmse": math.sqrt(((4 / 16) ** 2 + (2 / 16) ** 2) / 2),
            # faces x=0, x=-1, y=0, y=-1: e^2 sum 16 + 0 + 16 + 0 over 2*4 + 2*4 points
            "brmse": (math.sqrt(32 / 16) + 0.0) / 2,
            "frmse_low": (e0 + e1) / 2,
            "frmse_mid": NAN,
            "frmse_high": NAN,
            "max": 4.0,
            "rel_l2": (4 / 4 + 2 / 8) / 2,
        },
    )


def test_bands_on_a_larger_grid_and_channel_time_averaging():
    torch.manual_seed(0)
    target = torch.randn(3, 2, 64, 5)
    pred = target + 0.1 * torch.randn(3, 2, 64, 5)
    whole = pdebench_metrics(pred, target, time_axis=True)
    assert all(math.isfinite(float(v)) for v in whole.values())
    # averaging over channels and time frames: the mean of the per-(c, t) values
    per = [
        pdebench_metrics(pred[:, c : c + 1, :, t], target[:, c : c + 1, :, t])
        for c in range(2)
        for t in range(5)
    ]
    for name in ("rmse", "nrmse", "crmse", "brmse", "frmse_low", "frmse_mid", "frmse_high"):
        assert_close(whole[name], torch.stack([p[name] for p in per]).mean(), rtol=1e-12, atol=0)
    # max: the true maximum over samples and grid per (c, t), averaged over (c, t)
    per_ct_max = (pred.double() - target.double()).abs().amax(dim=(0, 2)).double().mean()
    assert_close(whole["max"], per_ct_max, rtol=1e-12, atol=0)


def test_input_frames_are_excluded():
    torch.manual_seed(1)
    target = torch.randn(2, 1, 16, 6)
    pred = target + 0.01 * torch.randn_like(target)
    pred[..., :2] += 100.0  # huge error on the two input frames
    got = pdebench_metrics(pred, target, time_axis=True, input_frames=2)
    ref = pdebench_metrics(pred[..., 2:], target[..., 2:], time_axis=True)
    for name in METRIC_NAMES:
        assert_close(got[name], ref[name], rtol=0, atol=0, equal_nan=True)
    assert float(got["max"]) < 1.0


@pytest.mark.parametrize("shape", [(7, 2, 32), (7, 1, 8, 6), (7, 1, 6, 4, 4)])
def test_batchwise_aggregation_equals_whole_set(shape):
    torch.manual_seed(2)
    target = torch.randn(*shape)
    pred = target + torch.randn(*shape) * torch.linspace(0.1, 2.0, shape[0]).view(
        -1, 1, 1, *([1] * (len(shape) - 3))
    )
    whole = pdebench_metrics(pred, target)
    metric = PDEBenchMetrics()
    for chunk in (slice(0, 2), slice(2, 3), slice(3, 7)):
        metric.update(pred[chunk], target[chunk])
    got = metric.compute()
    for name in METRIC_NAMES:
        assert_close(got[name], whole[name], rtol=1e-12, atol=1e-15, equal_nan=True)
    err = (pred.double() - target.double()).abs()
    assert float(got["max"]) == float(err.amax(dim=(0, *range(2, len(shape)))).mean())
    metric.reset()
    metric.update(pred[:1], target[:1])
    assert_close(metric.compute()["rmse"], pdebench_metrics(pred[:1], target[:1])["rmse"])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        pdebench_metrics(torch.zeros(2, 1, 4), torch.zeros(2, 1, 5))
    with pytest.raises(ValueError, match="at least one spatial"):
        pdebench_metrics(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="input_frames"):
        pdebench_metrics(
            torch.zeros(2, 1, 4, 3), torch.zeros(2, 1, 4, 3), time_axis=True, input_frames=3
        )
    with pytest.raises(ValueError, match="input_frames"):
        PDEBenchMetrics(input_frames=2)
    with pytest.raises(ValueError, match="no samples"), pytest.warns(UserWarning, match="before"):
        PDEBenchMetrics().compute()


# -- The Well's VRMSE ----------------------------------------------------------------------


def test_vrmse_matches_its_definition_in_any_dimension():
    from liponet.metrics import VRMSE, vrmse

    gen = torch.Generator().manual_seed(0)
    for spatial in ((16,), (6, 5), (4, 3, 5)):
        target = torch.randn(5, 3, *spatial, generator=gen) * 2 + 1
        pred = target + 0.3 * torch.randn(5, 3, *spatial, generator=gen)
        t = target.double().flatten(2)
        e = (pred.double().flatten(2) - t).square().mean(-1)
        want = (e / (t.var(-1, unbiased=False) + 1e-7)).sqrt()  # (b, c)
        torch.testing.assert_close(vrmse(pred, target, per_channel=True), want.mean(0))
        torch.testing.assert_close(vrmse(pred, target), want.mean())
        metric = VRMSE(per_channel=True)
        for a, b in ((0, 2), (2, 5)):
            metric.update(pred[a:b], target[a:b])
        torch.testing.assert_close(metric.compute(), want.mean(0))
    # a constant target: eps keeps it finite; predicting the spatial mean scores 1
    flat = torch.ones(2, 1, 8)
    offset = float((flat + 1e-4)[0, 0, 0] - 1)  # 1e-4 after float32 rounding
    assert float(vrmse(flat + 1e-4, flat)) == pytest.approx(offset / (1e-7) ** 0.5, rel=1e-9)
    wave = torch.sin(torch.linspace(0, 6.283, 64)).expand(2, 1, 64)
    assert float(vrmse(wave.mean(-1, keepdim=True).expand_as(wave), wave)) == pytest.approx(
        1.0, abs=1e-5
    )
    with pytest.raises(ValueError, match="must both be"):
        vrmse(torch.ones(2, 1, 4), torch.ones(2, 1, 5))
    with pytest.warns(UserWarning, match="before the ``update``"):
        with pytest.raises(ValueError, match="no samples"):
            VRMSE().compute()
