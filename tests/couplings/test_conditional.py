"""The entropic plan's conditional on new points: the c-transform extension of the target
potential and the shared draws of repeated rows."""

import torch

from sbrun.couplings import conditional
from sbrun.couplings.conditional import conditional_draw, conditional_mean, extend_potential
from sbrun.couplings.pot import solve_coupling


def _plan(n=60, m=50, sigma=0.7):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, generator=g).double(), 1.5 * torch.randn(m, 3, generator=g).double() + 1
    return x, y, solve_coupling(x, y, method="sinkhorn_log", sigma=sigma, tol=1e-12), sigma**2


def test_extension_is_sinkhorns_potential_on_the_plan_atoms_and_gives_its_rows(monkeypatch):
    monkeypatch.setattr(conditional, "_CHUNK", 7)  # chunked sums: several blocks
    x, y, res, eps = _plan()
    f, g = res.potentials
    gy = extend_potential(f, x, y, eps)
    torch.testing.assert_close(gy, g, atol=1e-9, rtol=0)
    rows = res.plan / res.plan.sum(1, keepdim=True)  # pi(. | x_i) of the plan itself
    torch.testing.assert_close(conditional_mean(x, y, gy, eps), rows @ y, atol=1e-8, rtol=0)


def test_repeated_rows_draw_independently_from_their_conditional(monkeypatch):
    monkeypatch.setattr(conditional, "_CHUNK", 100)  # two distinct rows per block
    x, y, res, eps = _plan()
    g = extend_potential(res.potentials[0], x, y, eps)
    pts = x[:5]
    k = 20_000
    xr = torch.cat([pts.repeat(k, 1), pts[:1]])  # interleaved rows, uneven counts
    j = conditional_draw(xr, y, g, eps, torch.Generator().manual_seed(1))
    rows = res.plan[:5] / res.plan[:5].sum(1, keepdim=True)
    for i in range(5):
        drawn = j[:-1][xr[:-1].eq(pts[i]).all(1)]
        assert drawn.shape[0] == k
        freq = torch.bincount(drawn, minlength=y.shape[0]).double() / k
        assert (freq - rows[i]).abs().max() < 5 * (rows[i].max() / k) ** 0.5
    single = conditional_draw(x[:1].expand(4000, -1), y, g, eps, torch.Generator().manual_seed(2))
    assert single.unique().numel() > 5  # draws, not one atom repeated
