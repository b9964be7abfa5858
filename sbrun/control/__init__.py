"""Schrödinger bridges as stochastic optimal control (seed 002; ``method=control``).

The controlled process ``dX = (f_base(t, X) + g(t) u(t, X)) dt + g(t) dW`` minimises
``E[ int_0^1 |u|^2 / 2 dt + beta(X_1) ]``; by Girsanov ``int |u|^2 / 2 dt`` is
``KL(P^u || P^base)``, so the optimum is the base path measure reweighted by
``exp(-beta(X_1))``. With ``beta = -R / lambda`` and a *memoryless* base (``X_0``
independent of ``X_1``) its terminal law is ``p_base(x) exp(R(x) / lambda) / Z``
(reward fine-tuning); with ``beta = E + log p_base`` it is ``exp(-E) / Z`` (data-free
sampling of an energy).

* :mod:`~sbrun.control.chains` -- base processes as Gaussian Markov chains (the
  reference Brownian motion from the origin, the memoryless chain of a flow model).
* :mod:`~sbrun.control.estimators` -- gradient estimators: ``backprop``, ``adjoint``,
  ``adjoint_matching``.
* :mod:`~sbrun.control.rewards`, :mod:`~sbrun.control.energies` -- objectives.
* :mod:`~sbrun.control.targets` -- the exact tilted laws the runs are scored against.
"""
