"""2D toy distributions on a pinned, "unit-ish" scale.

Every toy draws only from the ``torch.Generator`` it is given (reproducible; no
global RNG) and returns float32 samples of shape ``(n, 2)``. At ``scale = 1`` the
per-coordinate standard deviation of each toy lies in ``[0.5, 1.5]``; the measured
value (1e6 draws) is in its docstring and in its ``STD`` attribute. ``make_toy(name,
scale)`` multiplies the samples by ``scale`` (so the std scales with it too).

The two ``torchcfm_*`` toys instead follow the data scaling of the 2D protocol of
torchcfm (Tong et al.), so W2 numbers can be compared with that paper.

Closed-form densities (``log_prob``) exist for ``gaussian``, ``8gaussians``,
``torchcfm_8gaussians`` (Gaussian mixtures) and ``checkerboard`` (uniform on squares).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution
from sbrun.errors import ConfigError, check_positive

_F64 = torch.float64


def _rand(n: int, g: torch.Generator | None) -> Tensor:
    """``(n,)`` draws from U[0, 1), float64."""
    return torch.rand(n, generator=g, dtype=_F64)


def _randn(shape: tuple[int, ...], g: torch.Generator | None) -> Tensor:
    """Standard normal draws of ``shape``, float64."""
    return torch.randn(shape, generator=g, dtype=_F64)


def _coin(n: int, g: torch.Generator | None) -> Tensor:
    """``(n,)`` fair Bernoulli labels in {0, 1} (bool)."""
    return torch.randint(0, 2, (n,), generator=g).bool()


class Toy2D(Distribution):
    """Base class: subclasses implement ``_sample(n, g)`` at unit scale (float64).

    ``sample`` returns ``scale * _sample(n, g)`` as float32. Toys with a density define
    ``_unit_log_prob`` and set ``log_prob = Toy2D._scaled_log_prob``; the change of
    variables ``y = scale * x`` gives ``log p_y(y) = log p_x(y / scale) - 2 log scale``.
    """

    shape = (2,)
    STD: tuple[float, float] = (1.0, 1.0)

    def __init__(self, scale: float = 1.0, name: str | None = None):
        self.scale = float(check_positive("scale", float(scale)))
        self.name = name or type(self).__name__.lower()

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _unit_log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples, ``(n, 2)`` float32."""
        return (self.scale * self._sample(int(n), generator)).float()

    def _scaled_log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x: (B, 2)`` -> ``(B,)`` (in ``x``'s dtype)."""
        return self._unit_log_prob(x / self.scale) - 2.0 * math.log(self.scale)


class Gaussian2D(Toy2D):
    """``N(0, I_2)``; std (1.00, 1.00). ``log p(x) = -|x|^2 / 2 - log(2 pi)``."""

    STD = (1.0, 1.0)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        return _randn((n, 2), g)

    def _unit_log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * x.pow(2).sum(-1) - math.log(2 * math.pi)

    log_prob = Toy2D._scaled_log_prob


class EightGaussians(Toy2D):
    """Equal mixture of 8 isotropic Gaussians, centres ``radius * (cos, sin)(k pi / 4)``.

    Defaults: radius sqrt(2), component std 0.2; per-coordinate variance
    ``radius^2 / 2 + std^2`` so the measured std is (1.02, 1.02).
    ``log p(x) = logsumexp_k [-|x - c_k|^2 / (2 s^2)] - log(8 * 2 pi s^2)``.
    """

    STD = (1.02, 1.02)
    RADIUS = math.sqrt(2.0)
    COMP_STD = 0.2

    def centres(self) -> Tensor:
        """The 8 unit-scale centres, ``(8, 2)`` float64."""
        ang = torch.arange(8, dtype=_F64) * (math.pi / 4)
        return self.RADIUS * torch.stack([ang.cos(), ang.sin()], 1)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        k = torch.randint(0, 8, (n,), generator=g)
        return self.centres()[k] + self.COMP_STD * _randn((n, 2), g)

    def _unit_log_prob(self, x: Tensor) -> Tensor:
        c = self.centres().to(x)
        sq = (x[:, None, :] - c[None]).pow(2).sum(-1)  # (B, 8)
        s2 = self.COMP_STD**2
        return torch.logsumexp(-0.5 * sq / s2, 1) - math.log(8 * 2 * math.pi * s2)

    log_prob = Toy2D._scaled_log_prob


class TorchCFM8Gaussians(EightGaussians):
    """torchcfm's ``sample_8gaussians``: radius 5, component std ``0.1 ** 0.25``.

    torchcfm builds ``MultivariateNormal(0, sqrt(var) I)`` with ``var = 0.1``, i.e. it
    passes ``sqrt(0.1)`` as the covariance, so the component std is ``0.1 ** 0.25 ~
    0.562``. Measured std (3.58, 3.58). Use ``make_toy(..., scale=1)``.
    """

    STD = (3.58, 3.58)
    RADIUS = 5.0
    COMP_STD = 0.1**0.25


def _moon_points(theta: Tensor, inner: Tensor) -> Tensor:
    """Two interleaving half circles: outer ``(cos, sin)``, inner ``(1 - cos, 1/2 - sin)``."""
    c, s = theta.cos(), theta.sin()
    x = torch.where(inner, 1.0 - c, c)
    y = torch.where(inner, 0.5 - s, s)
    return torch.stack([x, y], 1)


class Moons(Toy2D):
    """Two moons (random angles, Gaussian noise 0.1), centred, times 1.4.

    Measured std (1.22, 0.71).
    """

    STD = (1.22, 0.71)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        theta = math.pi * _rand(n, g)
        x = _moon_points(theta, _coin(n, g)) + 0.1 * _randn((n, 2), g)
        return 1.4 * (x - torch.tensor([0.5, 0.25], dtype=_F64))


class TorchCFMMoons(Toy2D):
    """torchcfm's ``sample_moons``: torchdyn moons with noise 0.2, times 3, minus 1.

    torchdyn puts ``n // 2`` outer and ``n - n // 2`` inner points on a fixed grid of
    angles ``linspace(0, pi)`` and adds ``0.2 * U[0, 1)`` noise, the same draw to both
    coordinates of a point. The rows are then shuffled with the generator (torchdyn
    returns them ordered; the shuffle only makes any subset of rows representative).
    Measured std (2.60, 1.49).
    """

    STD = (2.60, 1.49)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        n_out = n // 2
        theta = torch.cat(
            [torch.linspace(0, math.pi, n_out, dtype=_F64),
             torch.linspace(0, math.pi, n - n_out, dtype=_F64)]
        )
        inner = torch.arange(n) >= n_out
        x = _moon_points(theta, inner) + 0.2 * _rand(n, g)[:, None]
        return (3.0 * x - 1.0)[torch.randperm(n, generator=g)]


class Circles(Toy2D):
    """Two concentric circles of radii 1.6 and 0.8 (equal mass), Gaussian noise 0.05.

    Per-coordinate variance ``(1.6^2 + 0.8^2) / 4 + 0.05^2``; measured std (0.90, 0.90).
    """

    STD = (0.90, 0.90)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        theta = 2 * math.pi * _rand(n, g)
        r = 1.6 - 0.8 * _coin(n, g).to(_F64)
        x = r[:, None] * torch.stack([theta.cos(), theta.sin()], 1)
        return x + 0.05 * _randn((n, 2), g)


class SwissRoll(Toy2D):
    """2D swiss roll ``t (cos t, sin t)``, ``t ~ U[1.5 pi, 4.5 pi]``, noise 0.5, over 7.

    (sklearn's ``make_swiss_roll`` x, z coordinates.) Not centred: mean ~ (0.29, 0.03).
    Measured std (0.95, 0.99).
    """

    STD = (0.95, 0.99)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
        x = t[:, None] * torch.stack([t.cos(), t.sin()], 1)
        return (x + 0.5 * _randn((n, 2), g)) / 7.0


class SCurve(Toy2D):
    """The S-curve's (x, z) projection: ``(sin t, sign(t) (cos t - 1))``, noise 0.05.

    ``t ~ U[-1.5 pi, 1.5 pi]`` as in sklearn's ``make_s_curve``. Measured std (0.71, 1.39).
    """

    STD = (0.71, 1.39)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        t = 3 * math.pi * (_rand(n, g) - 0.5)
        x = torch.stack([t.sin(), torch.sign(t) * (t.cos() - 1)], 1)
        return x + 0.05 * _randn((n, 2), g)


class Checkerboard(Toy2D):
    """Uniform on the 8 "black" unit squares of a 4 x 4 board on ``[-2, 2]^2``.

    Cell ``(i, j) = (floor(x) + 2, floor(y) + 2)`` is black when ``i + j`` is even; the
    density is ``1/8`` there and 0 elsewhere (``log_prob = -inf``). Both marginals are
    U[-2, 2]: std ``4 / sqrt(12)``, measured (1.15, 1.15).
    """

    STD = (1.155, 1.155)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        c = torch.randint(0, 8, (n,), generator=g)
        i = c // 2
        j = 2 * (c % 2) + i % 2  # i + j even
        cell = torch.stack([i, j], 1).to(_F64) - 2.0
        return cell + torch.rand((n, 2), generator=g, dtype=_F64)

    def _unit_log_prob(self, x: Tensor) -> Tensor:
        inside = (x.abs() < 2).all(-1)
        black = (torch.floor(x).sum(-1) % 2) == 0
        lp = torch.full(x.shape[:1], -math.inf, dtype=x.dtype, device=x.device)
        return lp.masked_fill(inside & black, -math.log(8.0))

    log_prob = Toy2D._scaled_log_prob


class Spirals(Toy2D):
    """Two interleaved spirals ``+- theta (-cos theta, sin theta) / 5``, noise 0.1.

    ``theta = 3 pi sqrt(u)`` (denser at the tips), arm chosen by a fair coin.
    Measured std (0.96, 0.93).
    """

    STD = (0.96, 0.93)

    def _sample(self, n: int, g: torch.Generator | None) -> Tensor:
        theta = 3 * math.pi * _rand(n, g).sqrt()
        sign = 1.0 - 2.0 * _coin(n, g).to(_F64)
        arm = (sign * theta)[:, None] * torch.stack([-theta.cos(), theta.sin()], 1)
        return arm / 5.0 + 0.1 * _randn((n, 2), g)


TOY2D: dict[str, type | Callable[..., Distribution]] = {
    "gaussian": Gaussian2D,
    "8gaussians": EightGaussians,
    "moons": Moons,
    "circles": Circles,
    "swissroll": SwissRoll,
    "scurve": SCurve,
    "checkerboard": Checkerboard,
    "spirals": Spirals,
    "torchcfm_moons": TorchCFMMoons,
    "torchcfm_8gaussians": TorchCFM8Gaussians,
}


def make_toy(name: str, scale: float = 1.0) -> Distribution:
    """The 2D toy ``name`` with samples multiplied by ``scale`` (``ConfigError`` if unknown)."""
    if name not in TOY2D:
        raise ConfigError(f"unknown 2D toy '{name}'; valid names: {', '.join(TOY2D)}")
    return TOY2D[name](scale=scale, name=name)
