"""A trained diffusion (score-sde / ddpm) as the base of a control run: its reverse chain with
the exact score of Gaussian data has the data law, forgets X_0, has the SDE's noise, and a
quadratic reward tilts it to the Gaussian closed form."""

import pytest
import torch
from gaussian_oracles import ChainOracle
from torch import nn

from sbrun.control import estimators as est
from sbrun.control.chains import DiffusionChain
from sbrun.control.metrics import gaussian_errors
from sbrun.control.objective import reward_objective
from sbrun.control.targets import tilted_gaussian
from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.methods.ddpm import DDPM
from sbrun.methods.score_sde import ScoreSDE, oracle_eps
from sbrun.sde import VE, VP
from sbrun.sde.noising import gaussian_score

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)


class ShiftTable(nn.Module):
    """``u_k(x) = (A_k x + b_k) / (s_k sqrt(h_k))``: an affine mean shift per chain step (the
    optimal control of a linear-Gaussian chain with a quadratic cost has this form)."""

    def __init__(self, chain):
        super().__init__()
        n = self.steps = chain.steps
        self.scale = torch.tensor([chain.std(k) * chain.h(k) ** 0.5 for k in range(n)] + [1.0],
                                  dtype=F64)
        self.a = nn.Parameter(torch.zeros(n + 1, 2, 2, dtype=F64))
        self.b = nn.Parameter(torch.zeros(n + 1, 2, dtype=F64))

    def forward(self, x, t):
        k = (t.double() * self.steps).round().long()
        return ((self.a[k] @ x[..., None])[..., 0] + self.b[k]) / self.scale[k][:, None]


def diffusion_chain(kind: str, steps: int) -> DiffusionChain:
    """The base chain of a diffusion whose network is the exact noise of N(MEAN, COV)."""
    problem = Problem("gauss", Gaussian(MEAN, COV, dtype=F64))
    if kind == "ddpm":
        method = DDPM(chain_steps=steps)
        method.bind(problem, VP())
        nets = nn.ModuleDict({"net": ChainOracle(method.chain, MEAN, COV)})
    else:
        method = ScoreSDE()
        method.bind(problem, VP() if kind == "score-sde-vp" else VE(0.01, 10.0, s_min=1e-4))
        nets = nn.ModuleDict({"net": oracle_eps(method.sde, gaussian_score(method.sde, MEAN, COV))})
    return DiffusionChain((2,), steps, method.kernel(nets), method.prior)


@pytest.mark.parametrize("kind, corr_max", [("ddpm", 0.03), ("score-sde-vp", 0.03),
                                            ("score-sde-ve", 0.12)])
def test_diffusion_chain_reaches_the_data_and_forgets_its_start(kind, corr_max):
    """VP forgets X_0 up to alpha_1 = 0.007 (the sample correlation's SE is 0.011); VE up to
    data std / sigma_max (0.07 here): the chain is memoryless only as far as that."""
    chain = diffusion_chain(kind, 200)
    x0 = chain.prior.sample(8000, torch.Generator().manual_seed(0)).double()
    x1 = est.rollout(chain, None, x0, lambda x: x.sum(1), torch.Generator().manual_seed(1),
                     keep=False).xs[-1]
    torch.testing.assert_close(x1.mean(0), MEAN, atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(x1.T), COV, atol=0.05, rtol=0)
    corr = ((x0 - x0.mean(0)) * (x1 - x1.mean(0))).mean(0) / (x0.std(0) * x1.std(0))
    assert corr.abs().max() < corr_max, corr


def test_diffusion_chain_noise_is_the_reverse_sde_noise():
    """``s_k^2 / h -> g(s)^2 |ds/dt|``: the control enters with the diffusion's own g(t)."""
    chain = diffusion_chain("score-sde-vp", 4000)
    sde = VP()
    for k in (1000, 2000, 3000):
        s = sde.to_noising_time(chain.times[k])
        assert abs(chain.g(k) ** 2 / (sde.diffusion(s) ** 2 * (1 - sde.s_min)).item() - 1) < 0.02


def affine_steps(chain) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(M_k, c_k)`` with ``m_k(x) = M_k x + c_k`` (affine: the oracle is Gaussian data's)."""
    out, eye = [], torch.eye(2, dtype=F64)
    with torch.no_grad():
        for k in range(chain.steps):
            y = chain.mean(k, torch.cat([torch.zeros(1, 2, dtype=F64), eye]))
            out.append(((y[1:] - y[0]).T, y[0]))
    return out


def discrete_optimum(chain, center, lam: float, control: bool = True) -> Gaussian:
    """The law of X_N under the exactly optimal mean-shift control of the *discrete* chain for
    ``beta = |x - c|^2 / (2 lam)`` (linear-quadratic: Riccati). ``V_{k+1}(y) = y'Py/2 - q'y``; a
    step's best shift ``v`` (cost ``|v|^2 / (2 s_k^2)``) gives ``y -> F (y + s_k^2 q)``, ``F = (I
    + s_k^2 P)^{-1}``, and ``V_k(x) = m'(PF)m/2 - (Fq)'m`` at ``m = M_k x + c_k``. ``control=False``:
    the base's law."""
    steps, eye = affine_steps(chain), torch.eye(2, dtype=F64)
    p, q = eye / lam, center / lam
    gains = []
    for k in reversed(range(chain.steps)):
        (m, c), s2 = steps[k], chain.std(k) ** 2
        f = torch.linalg.inv(eye + s2 * p) if control else eye
        gains.append((f, s2 * q if control else 0 * q))
        pf, fq = p @ f, f @ q
        p, q = m.T @ pf @ m, m.T @ (fq - pf @ c)
    mean, cov = torch.zeros(2, dtype=F64), chain.prior.std**2 * eye
    for k, (f, shift) in zip(range(chain.steps), reversed(gains)):
        (m, c), s2 = steps[k], chain.std(k) ** 2
        mean, cov = f @ (m @ mean + c + shift), f @ m @ cov @ m.T @ f.T + s2 * eye
    return Gaussian(mean, 0.5 * (cov + cov.T))


def test_the_discrete_optimum_tends_to_the_continuous_tilt():
    """As h -> 0 the chain's optimum is the base tilted by exp(-|x - c|^2 / 2) in closed form."""
    center = torch.tensor([2.0, 1.0], dtype=F64)
    for kind in ("ddpm", "score-sde-vp"):
        chain = diffusion_chain(kind, 1000)
        base = discrete_optimum(chain, center, 1.0, control=False)
        target = tilted_gaussian(base.mean, base.cov, center, 1.0)
        opt = discrete_optimum(chain, center, 1.0)
        torch.testing.assert_close(opt.mean, target.mean, atol=0.01, rtol=0)
        torch.testing.assert_close(opt.cov, target.cov, atol=0.01, rtol=0)


@pytest.mark.parametrize("kind", ["ddpm", "score-sde-vp"])
def test_quadratic_reward_on_a_diffusion_base_reaches_the_optimum(kind):
    """Adjoint matching on the diffusion's chain reaches the exact (Riccati) optimum of that
    chain, which is the closed-form tilt up to O(h) (previous test)."""
    from test_estimators import fit

    chain = diffusion_chain(kind, 50)
    center = torch.tensor([2.0, 1.0], dtype=F64)
    target = discrete_optimum(chain, center, 1.0)
    obj = reward_objective("quadratic", 1.0, Gaussian(MEAN, COV, dtype=F64), (2,), center=center)
    torch.manual_seed(0)
    u, g = ShiftTable(chain), torch.Generator().manual_seed(0)
    fit(u, lambda i: est.adjoint_matching_loss(chain, u, chain.prior.sample(256, g).double(),
                                               obj.beta, g, times=10)[0])
    x = est.rollout(chain, u, chain.prior.sample(20000, torch.Generator().manual_seed(5)).double(),
                    obj.beta, torch.Generator().manual_seed(6), keep=False).xs[-1]
    err = gaussian_errors(x, target)
    assert err["mean_error"] < 0.05 and err["cov_error"] < 0.05, err
    assert gaussian_errors(x, discrete_optimum(chain, center, 1.0, False))["mean_error"] > 0.3
