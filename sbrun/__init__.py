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


def __getattr__(name: str):
    """``sbrun.load_run`` without importing torch when only the CLI's config is needed."""
    if name == "load_run":
        from sbrun.transport import load_run

        return load_run
    raise AttributeError(f"module 'sbrun' has no attribute {name!r}")
