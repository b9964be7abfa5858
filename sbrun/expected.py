"""Machine-readable expected numbers of the experiment presets (``# Expected:`` headers).

A preset's header states what a run must reach, as checks a script can test
(``scripts/reproduce_figures.py --check``)::

    # Expected: w2_ratio <= 1.2 @full; w2_ratio <= 2.5 @quick -- measured 0.46 -> 0.11
    # Expected: w2[ipf_iter=10] < 0.5 * w2[ipf_iter=1] @full

One or more ``# Expected:`` lines; on each, checks separated by ``;``, then optionally
`` -- `` and a note for people (not checked; a line may be a note only). A check is a (chained) comparison::

    check  := expr OP expr [OP expr ...] [@quick | @full]     (no size: both sizes)
    OP     := <= | < | >= | > | ==
    expr   := term [* term]                                    (e.g. 1.5 * w2_floor)
    term   := NUMBER | ref
    ref    := [max( | min(] NAME [ [SEL] ] [)]
    SEL    := KEY=VALUE[,KEY=VALUE...] | first | last

What a reference reads depends on the run:

* a single run: ``NAME`` is the final ``metrics.json`` value; ``NAME[KEY=VALUE]`` the last
  row of ``metrics.jsonl`` (one row per evaluation) whose ``KEY`` equals ``VALUE`` (e.g.
  ``w2[ipf_iter=1]``); ``NAME[first]`` / ``NAME[last]`` the first / last row that has it;
  ``max(NAME)`` / ``min(NAME)`` over the rows;
* a sweep (``# Sweep:``): ``NAME[KEY=VALUE,...]`` is the final metric of the job run with
  those overrides (e.g. ``w2_ratio[method.coupling=exact_ot]``); ``max(NAME[...])`` /
  ``min(NAME[...])`` over the jobs that match (all without a selector); without ``max`` /
  ``min`` the selector must pick one job.

``quick`` is the size the preset's ``# Quick:`` overrides give, ``full`` the preset as is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

SIZES = ("quick", "full")
OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
       ">": lambda a, b: a > b, "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)}
_OP_RE = re.compile(r"(<=|>=|==|<|>)")
_REF_RE = re.compile(r"^(?:(max|min)\(\s*)?([A-Za-z_][\w.]*)\s*(?:\[\s*([^\]]+?)\s*\])?\s*(\))?$")
_NUM_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)


class ExpectedError(ValueError):
    """An ``# Expected:`` check that does not parse."""


@dataclass(frozen=True)
class Ref:
    """A metric reference: ``agg(name[selector])``."""

    name: str
    selector: str | None = None
    agg: str | None = None

    def __str__(self) -> str:
        s = self.name + (f"[{self.selector}]" if self.selector else "")
        return f"{self.agg}({s})" if self.agg else s


@dataclass(frozen=True)
class Expr:
    """A product of numbers and at most one reference."""

    coef: float
    ref: Ref | None = None

    def __str__(self) -> str:
        if self.ref is None:
            return f"{self.coef:g}"
        return str(self.ref) if self.coef == 1 else f"{self.coef:g} * {self.ref}"


@dataclass(frozen=True)
class Check:
    """A chained comparison ``exprs[0] ops[0] exprs[1] ...`` at ``sizes``."""

    text: str
    exprs: tuple[Expr, ...]
    ops: tuple[str, ...]
    sizes: tuple[str, ...] = SIZES


@dataclass
class Outcome:
    """A check evaluated on a run: ``ok`` (None: not applicable at this size), the values read."""

    check: Check
    ok: bool | None
    values: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def describe(self) -> str:
        vals = ", ".join(f"{k} = {v:.4g}" for k, v in self.values.items())
        mark = "n/a" if self.ok is None else ("pass" if self.ok else "FAIL")
        return f"{mark}: `{self.check.text}`" + (f" (measured {vals})" if vals else "") + \
            (f" — {self.error}" if self.error else "")


def _parse_term(text: str) -> tuple[float, Ref | None]:
    text = text.strip()
    if _NUM_RE.match(text):
        return float(text), None
    m = _REF_RE.match(text)
    if not m or bool(m.group(1)) != bool(m.group(4)):
        raise ExpectedError(f"not a number or metric reference: '{text}'")
    selector = m.group(3)
    if selector is not None and selector not in ("first", "last") and \
            not all("=" in p for p in selector.split(",")):
        raise ExpectedError(f"selector [{selector}] must be KEY=VALUE[,KEY=VALUE...], first or last")
    return 1.0, Ref(m.group(2), selector, m.group(1))


def _parse_expr(text: str) -> Expr:
    coef, ref = 1.0, None
    for part in text.split("*"):
        c, r = _parse_term(part)
        if r is not None:
            if ref is not None:
                raise ExpectedError(f"at most one metric per side: '{text.strip()}'")
            ref = r
        coef *= c
    return Expr(coef, ref)


def parse_check(text: str) -> Check:
    """One check, e.g. ``w2_ratio <= 1.5 @full`` (raises :class:`ExpectedError`)."""
    body, sizes = text.strip(), SIZES
    if "@" in body:
        body, _, size = body.rpartition("@")
        size = size.strip()
        if size not in SIZES:
            raise ExpectedError(f"unknown size @{size} in '{text.strip()}'; valid: @quick, @full")
        sizes = (size,)
    parts = _OP_RE.split(body)
    if len(parts) < 3:
        raise ExpectedError(f"no comparison (<=, <, >=, >, ==) in '{text.strip()}'")
    exprs = tuple(_parse_expr(p) for p in parts[0::2])
    if not any(e.ref is not None for e in exprs):
        raise ExpectedError(f"'{text.strip()}' compares no metric")
    return Check(text.strip(), exprs, tuple(parts[1::2]), sizes)


def parse_expected(lines: list[str]) -> tuple[list[Check], str]:
    """The checks and the notes of a preset's ``# Expected:`` lines (their text after the colon)."""
    checks, notes = [], []
    for line in lines:
        spec, _, note = (" " + line.strip()).partition(" -- ")
        checks += [parse_check(c) for c in spec.split(";") if c.strip()]
        if note.strip():
            notes.append(note.strip())
    return checks, " ".join(notes)


def _same(a: Any, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == b


@dataclass
class RunResults:
    """What a preset's run left: ``final`` metrics and ``history`` rows (a single run), or
    ``jobs`` of a sweep as ``(overrides {key: value}, final metrics)``; for a sweep, ``final``
    holds sweep-wide numbers (``post_metrics.json`` of its ``# Post:`` script)."""

    final: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    jobs: list[tuple[dict, dict]] | None = None

    def value(self, ref: Ref) -> float:
        """The number ``ref`` reads (raises ``KeyError`` with a reason when it is absent)."""
        name, sel = ref.name, ref.selector
        pairs = _pairs(sel)
        if self.jobs is not None and not (sel or ref.agg) and name in self.final:
            return float(self.final[name])  # a sweep-wide number (a Post script's)
        if self.jobs is not None:
            jobs = [m for o, m in self.jobs if all(k in o and _same(o[k], v) for k, v in pairs)]
            if pairs and not jobs:
                raise KeyError(f"no job with {sel}")
            if not ref.agg and len(jobs) > 1:
                raise KeyError(f"{ref}: {len(jobs)} jobs match; it needs [KEY=VALUE,...] or max()/min()")
            vals = [m.get(name) for m in jobs]
        elif ref.agg or sel:
            rows = [r for r in self.history if isinstance(r.get(name), (int, float))]
            if pairs:
                rows = [r for r in rows if all(k in r and _same(r[k], v) for k, v in pairs)][-1:]
            elif sel:
                rows = rows[:1] if sel == "first" else rows[-1:]
            vals = [r[name] for r in rows]
        else:
            vals = [self.final.get(name)]
        vals = [float(v) for v in vals if isinstance(v, (int, float))]
        if not vals:
            raise KeyError(f"{ref} not in the run's metrics")
        if ref.agg == "max":
            return max(vals)
        if ref.agg == "min":
            return min(vals)
        return vals[0]


def _pairs(selector: str | None) -> list[tuple[str, str]]:
    """``"a=1, b=x"`` -> ``[("a", "1"), ("b", "x")]`` (``first`` / ``last`` / None: none)."""
    if not selector or "=" not in selector:
        return []
    return [(k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in selector.split(","))]


def evaluate(check: Check, results: RunResults, size: str) -> Outcome:
    """Evaluate ``check`` on ``results`` of a run at ``size`` (``quick`` | ``full``)."""
    if size not in check.sizes:
        return Outcome(check, None)
    values: dict[str, float] = {}
    nums = []
    try:
        for e in check.exprs:
            if e.ref is None:
                nums.append(e.coef)
                continue
            v = results.value(e.ref)
            values[str(e.ref)] = v
            nums.append(e.coef * v)
    except KeyError as err:
        return Outcome(check, False, values, f"missing: {err.args[0]}")
    ok = all(not math.isnan(a) and not math.isnan(b) and OPS[op](a, b)
             for a, op, b in zip(nums, check.ops, nums[1:]))
    return Outcome(check, ok, values)
