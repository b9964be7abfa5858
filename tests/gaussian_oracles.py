"""Exact networks for Gaussian data, shared by the tests of diffusion chains."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChainOracle(nn.Module):
    """DDPM's exact noise on its discrete chain for data ``N(mean, cov)``:
    ``eps*(x, i) = sqrt(1 - abar_i) C_i^{-1} (x - sqrt(abar_i) m)``, ``C_i = abar_i S + (1 - abar_i) I``
    (the network sees noising time ``s = i / T``)."""

    def __init__(self, chain, mean: Tensor, cov: Tensor):
        super().__init__()
        self.chain, self.mean, self.cov = chain, mean, cov

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        i = (s.double() * self.chain.steps).round().long()
        ab = self.chain.alphas_bar[i][:, None, None]
        c = ab * self.cov + (1 - ab) * torch.eye(self.cov.shape[0], dtype=self.cov.dtype)
        r = (x - ab[:, :, 0].sqrt() * self.mean).unsqueeze(-1)
        return ((1 - ab).sqrt() * torch.linalg.solve(c, r)).squeeze(-1)
