"""The 2-D periodic advection family (exact solution)."""

import math

import torch

from liponet.data import PDEBenchDataset, generate, simulate
from liponet.data.generators.advection2d import fourier_series_2d


def test_whole_cell_shifts_are_exact_rolls_and_the_reader_reads_them(tmp_path):
    _, a = next(simulate("advection_2d", n_samples=5, nx=32, nt=3, bx=0.25, by=0.125))
    u = a["tensor"]  # (5, 3, 32, 32); t = 0, 0.5, 1
    assert torch.equal(torch.roll(u[:, 0], (4, 2), (-2, -1)), u[:, 1])
    assert torch.equal(torch.roll(u[:, 0], (8, 4), (-2, -1)), u[:, 2])
    path = generate("advection_2d", tmp_path / "a.h5", n_samples=20, nx=16, nt=3)
    x, y = PDEBenchDataset(path, split="train", task="step", t_in=0, t_out=-1).to_tensors()
    assert x.shape == y.shape == (17, 1, 16, 16)
    torch.testing.assert_close(torch.roll(x, (4, 2), (-2, -1)), y, rtol=0, atol=0)


def test_fractional_shifts_equal_the_exact_solution():
    nx, bx, by, t = 16, 0.3, -0.17, 1.0
    _, a = next(simulate("advection_2d", n_samples=3, nx=nx, nt=2, bx=bx, by=by, t_final=t))
    amp, k, phase = fourier_series_2d(0, range(3))
    x = (torch.arange(nx, dtype=torch.float64) + 0.5) / nx
    xx, yy = torch.meshgrid(x - bx * t, x - by * t, indexing="ij")
    arg = k[..., 0, None, None] * xx + k[..., 1, None, None] * yy
    exact = (amp[..., None, None] * torch.sin(2 * math.pi * arg + phase[..., None, None])).sum(1)
    torch.testing.assert_close(a["tensor"][:, 1], exact.float(), rtol=0, atol=1e-5)
    assert bool((k.abs().amax(-1) > 0).all())  # no constant mode
