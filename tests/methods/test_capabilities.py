"""Every method's declared capabilities (``Method.samples_sde``, ``solver_extras``,
``prior``, ``family``, ``second_head``, ``bridge_sigma``, ``stochastic``, ...) agree with
what it does, for each ``conf/method`` build and the bridge variants."""

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.methods.base import Method
from sbrun.pipeline.build import build
from sbrun.sde.noising import NoisingSDE
from sbrun.solvers import REQUIRES, check_solver, get_solver, time_grid
from tests.conftest import REPO, compose

METHODS = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
VARIANTS = {
    "eot": ["method.n_plan=64", "method.n_atoms=null"],
    "dsb": ["method.num_steps=5", "method.cache_size=16"],
    "dsbm": ["method.num_steps=5", "method.cache_size=16"],
    "flow-matching+entropic": ["method=flow-matching", "method.coupling=entropic_ot",
                               "solver=euler_maruyama"],
    "flow-matching+blur": ["method=flow-matching", "method.blur=0.1", "method.reflow=1"],
    "stochastic-interpolant+entropic": ["method=stochastic-interpolant",
                                        "method.coupling=entropic_ot", "solver=euler_maruyama"],
    "stochastic-interpolant+separate": ["method=stochastic-interpolant", "method.heads=separate",
                                        "method.score_param=score"],
    "score-sde+sde": ["method=score-sde", "method.sampler=sde", "solver=euler_maruyama",
                      "method.noise_draws=2"],
}
CASES = METHODS + [k for k in VARIANTS if "+" in k]


def built(case: str):
    over = VARIANTS.get(case, [])
    method = [] if "+" in case else [f"method={case}"]
    return build(compose(["debug=smoke", *method, *over]))


def test_the_registry_is_covered():
    assert len(METHODS) >= 10 and "flow-matching" in METHODS
    declared = {"samples_sde", "solver_extras", "prior", "coupling", "reflow", "noise_draws",
                "family", "second_head", "conditioning", "stochastic", "uses_reference"}
    assert declared <= set(vars(Method)), declared - set(vars(Method))


@pytest.mark.parametrize("case", CASES)
def test_declared_capabilities_match_behaviour(case):
    c = built(case)
    m, x_shape = c.method, c.problem.shape
    assert isinstance(m, Method)
    check_solver(c.solver, m)  # the default solver of a conf/method is one it accepts
    if m.samples_sde:
        assert c.solver.stochastic, f"{case}: samples an SDE but defaults to an ODE solver"
    assert set(m.solver_extras) <= {"kernel", "score"}
    for name, needs in REQUIRES.items():  # a solver needing an extra is refused iff undeclared
        if set(needs) <= set(m.solver_extras):
            continue
        with pytest.raises(ConfigError, match="needs"):
            check_solver(get_solver(name), m)
    # the bridge a method claims is its reference's, and such a method reads that reference
    sigma = m.bridge_sigma()
    if sigma is not None:
        assert sigma == c.sde.sigma and m.uses_reference and m.stochastic, case
    # a prior of the method's own is what a generative run's batches start from
    if m.prior is not None and c.problem.generative:
        assert c.data.source is m.prior
        assert m.prior.sample(3, torch.Generator().manual_seed(0)).shape == (3, *x_shape)
    if m.generative_only:
        assert m.prior is not None, f"{case}: generative-only without its prior"
    assert m.coupling in ("independent", "paired", "exact_ot", "entropic_ot")
    assert m.reflow == len([p for p in m.phases(3) if p.name.startswith("reflow")])
    assert m.noise_draws >= 1 and m.conditioning is None
    check_family(m, c.nets, x_shape)
    check_stochastic(c, case)


def check_family(m: Method, nets, x_shape) -> None:
    """``family`` names what classifier guidance may read; ``second_head`` what ``fields``
    returns next to the velocity."""
    x, t = torch.randn(4, *x_shape), torch.full((4,), 0.5)
    if m.family == "interpolant":
        v, second = m.fields(nets, x, t)
        assert v.shape == x.shape and m.interpolant is not None
        assert (second is None) == (m.second_head is None), m.name
        if m.second_head is not None:
            assert second.shape == x.shape
            assert "net" in m.networks or m.second_head in m.networks
    else:
        assert m.second_head is None and not hasattr(m, "fields"), m.name
    if m.family in ("noising", "chain"):
        assert isinstance(m.sde, NoisingSDE) and m.eps(nets, x, t).shape == x.shape
    else:
        assert not callable(getattr(m, "eps", None)), m.name  # a float (eot's eps) is no field
    if m.family == "chain":  # DDPM's discrete chain and its loss
        assert m.chain.alphas_bar.shape == (m.chain_steps + 1,) and m.loss_type in ("eps", "elbo", "mu")


def check_stochastic(c, case: str) -> None:
    """A transport that gives different draws of ``x1 | x0`` for different generators is one
    the oracles and ``sbrun-transport --repeats`` must treat as random."""
    m = c.method
    x0 = c.data.source.sample(16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        runs = [m.transport(c.nets, x0, c.solver, time_grid(4),
                            generator=torch.Generator().manual_seed(s)).x for s in (2, 3)]
    random = not torch.allclose(runs[0], runs[1])
    declared = m.stochastic or m.diffusion("forward") is not None
    assert declared or not random, f"{case}: a random transport not declared stochastic"
