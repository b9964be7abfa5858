"""Reference processes.

Time convention (the one place it is written down for SDEs):

* Every object in sbrun reports time on ``t in [0, 1]``, ``t = 0`` = source ``x0``,
  ``t = 1`` = target ``x1``.
* The **Brownian** reference ``dX = sigma dW`` runs forward in that time: it starts at
  the source, its marginal is ``N(x0, sigma^2 t I)`` and its bridge pinned at
  ``(x0, x1)`` is ``N((1-t) x0 + t x1, sigma^2 t (1-t) I)``. Its static problem is
  entropic OT with cost ``|x-y|^2/2`` and ``eps = sigma^2`` (POT ``reg = 2 sigma^2``
  on squared distances). DSB's reference code uses steps of noise ``sqrt(2 gamma)``:
  ``sigma^2 = 2 sum(gamma) = 2 method.horizon`` converts it.
* **Noising** SDEs (VP, sub-VP, VE; diffusion models; ``sbrun.sde.noising``) run in
  their own time ``s`` from data (``s = 0``) to the prior (``s = 1``); all their methods
  (``drift``, ``diffusion``, ``marginal``, ``bridge``, ``posterior``) take ``s``. Their
  generative direction goes from the prior to the data, so in sbrun's time
  ``s = 1 - (1 - s_min) t``: the prior is the source at ``t = 0`` and the data (at
  noising time ``s_min``, where the score is still finite) the target at ``t = 1``.
  ``NoisingSDE.to_noising_time`` is the one function that converts (``ds/dt =
  -(1 - s_min)``); DDPM's discrete chain puts index ``i`` at ``s = i / method.chain_steps``. A Brownian
  reference used as a noising process is ``BrownianNoising`` (``as_noising``).
"""

from sbrun.sde.base import ReferenceSDE
from sbrun.sde.brownian import Brownian
from sbrun.sde.noising import BrownianNoising, NoisingSDE, as_noising
from sbrun.sde.subvp import SubVP
from sbrun.sde.ve import VE
from sbrun.sde.vp import VP, DiscreteVP

SDES = {"brownian": Brownian, "vp": VP, "subvp": SubVP, "ve": VE}

__all__ = ["ReferenceSDE", "Brownian", "NoisingSDE", "BrownianNoising", "VP",
           "SubVP", "VE", "DiscreteVP", "as_noising", "SDES"]
