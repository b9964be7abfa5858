"""Paired restoration data (in-painting, super-resolution) and their metrics."""

from __future__ import annotations

import torch

from sbrun.data.restoration import downsample, inpaint, superres
from sbrun.metrics.restoration import RestorationMetrics, masked_mse, psnr


def digits(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 28, 28), generator=g) * 2 - 1


def test_inpaint_replaces_one_square_per_image():
    x = digits()
    x0 = inpaint(x, 10, 1.0, torch.Generator().manual_seed(1))
    hidden = x0 != x
    assert torch.equal(hidden.flatten(1).sum(1), torch.full((6,), 100))
    rows, cols = hidden[:, 0].any(2), hidden[:, 0].any(1)  # a square: 10 rows x 10 columns
    assert torch.equal(rows.sum(1), torch.full((6,), 10))
    assert torch.equal(cols.sum(1), torch.full((6,), 10))


def test_inpaint_metrics_and_copy_baseline():
    x = digits()
    x0 = inpaint(x, 14, 1.0, torch.Generator().manual_seed(2))
    m = RestorationMetrics("inpaint")
    perfect = m(x0, x, x)
    assert perfect["mse_unobserved"] == 0 and perfect["mse_observed"] == 0
    copy = m(x0, x0, x)
    assert copy["mse_unobserved"] == copy["mse_unobserved_copy"] > 1.0  # E(z - x)^2 = 1 + E x^2
    assert copy["mse_observed"] == 0
    # a completion off by 0.1 everywhere on the square: MSE 0.01, PSNR 10 log10(4 / 0.01)
    hidden = x0 != x
    off = torch.where(hidden, x + 0.1, x)
    out = m(x0, off, x)
    assert abs(out["mse_unobserved"] - 0.01) < 1e-6
    assert abs(out["psnr_unobserved"] - 10 * torch.log10(torch.tensor(400.0)).item()) < 1e-3


def test_superres_keeps_the_low_resolution_image():
    x = digits()
    x0 = superres(x, 2, 0.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(downsample(x0, 2), downsample(x, 2))
    out = RestorationMetrics("superres")(x0, x0, x)
    assert out["mse_lowres"] < 1e-12 and out["mse"] == out["mse_copy"] > 0


def test_masked_mse_and_psnr():
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    torch.testing.assert_close(masked_mse(a, b, mask), torch.ones(2))
    assert abs(psnr(torch.tensor([1.0])) - 10 * torch.log10(torch.tensor(4.0)).item()) < 1e-6
