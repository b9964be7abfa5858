"""sbrun: train, sample and evaluate transport between distributions.

Conventions (see also README.md and ``sbrun/sde/__init__.py``):

* time runs on ``t in [0, 1]``; ``t = 0`` is the **source** ``x0``, ``t = 1`` the
  **target** ``x1``;
* shapes: ``x: (B, *D)``, ``t: (B,)``;
* reference process ``dX = sigma dW``; its static problem is entropic OT with cost
  ``|x - y|^2 / 2`` and regularisation ``eps = sigma^2`` (POT: ``reg = 2 sigma^2`` on
  squared distances).
"""

__version__ = "0.1.0"
