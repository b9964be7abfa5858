"""Sub-VP SDE (Song et al. 2021, eq. 12), in noising time ``s`` (see :mod:`sbrun.sde.noising`).

``dX = -1/2 beta(s) X ds + sqrt(beta(s) (1 - alpha_s^4)) dW`` with VP's ``alpha_s``; its
marginal std ``sigma_s = 1 - alpha_s^2`` is below VP's at every ``s`` (hence "sub").
"""

from __future__ import annotations

import torch

from sbrun.sde.vp import VPSchedule


class SubVP(VPSchedule):
    """Sub-VP SDE; prior ``N(0, I)``. Same arguments as :class:`~sbrun.sde.vp.VP`."""

    name = "subvp"

    def var(self, s):
        return torch.expm1(2 * self.log_alpha(s)) ** 2

    def d_var(self, s):
        a2 = torch.exp(2 * self.log_alpha(s))
        return -4 * self.d_log_alpha(s) * a2 * (1 - a2)
