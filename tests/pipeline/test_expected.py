"""The ``# Expected:`` grammar (sbrun/expected.py): parsing, references, comparisons."""

import pytest

from sbrun.expected import ExpectedError, RunResults, evaluate, parse_check, parse_expected

RUN = RunResults(final={"w2": 0.2, "w2_floor": 0.16, "w2_ratio": 1.25, "ipf_iter": 10.0},
                 history=[{"w2": 0.5, "ipf_iter": 1.0}, {"w2": 0.3, "ipf_iter": 2.0},
                          {"w2": 0.2, "ipf_iter": 10.0}, {"loss": 1.0}])
SWEEP = RunResults(jobs=[({"sde.sigma": "1"}, {"w2_ratio": 1.4}),
                         ({"sde.sigma": "0.1"}, {"w2_ratio": 1.1})])


def ok(text, res=RUN, size="full"):
    return evaluate(parse_check(text), res, size).ok


def test_final_metrics_and_products():
    assert ok("w2_ratio <= 1.3") and not ok("w2_ratio <= 1.2")
    assert ok("w2 <= 1.5 * w2_floor") and not ok("w2 <= 1.2 * w2_floor")
    assert ok("ipf_iter == 10") and not ok("ipf_iter == 9")
    assert ok("1.2 < w2_ratio < 1.3") and not ok("1.2 < w2_ratio < 1.24")  # chained


def test_history_selectors():
    assert ok("w2[ipf_iter=10] < 0.5 * w2[ipf_iter=1]")
    assert not ok("w2[ipf_iter=2] < 0.5 * w2[ipf_iter=1]")
    assert ok("w2[first] == 0.5") and ok("w2[last] == 0.2")
    assert ok("max(w2) == 0.5") and ok("min(w2) == 0.2")


def test_sweep_jobs():
    assert ok("w2_ratio[sde.sigma=0.1] <= 1.2", SWEEP) and not ok("w2_ratio[sde.sigma=1] <= 1.2", SWEEP)
    assert ok("max(w2_ratio) <= 1.5", SWEEP) and not ok("max(w2_ratio) <= 1.3", SWEEP)
    out = evaluate(parse_check("w2_ratio <= 2"), SWEEP, "full")  # ambiguous: which job?
    assert out.ok is False and "needs" in out.error


def test_sweep_wide_numbers_of_a_post_script():
    sweep = RunResults(final={"eps_star_4000": 0.3, "eps_argmin_4000": 0.5}, jobs=SWEEP.jobs)
    assert ok("eps_argmin_4000 <= 3 * eps_star_4000", sweep)
    assert not ok("eps_argmin_4000 <= 1.5 * eps_star_4000", sweep)
    assert ok("w2_ratio[sde.sigma=0.1] <= 1.2", sweep)  # the jobs are still read
    assert ok("max(w2_ratio) <= 1.5", sweep) and not ok("eps_star_1000 < 1", sweep)  # absent


def test_sizes_and_missing_metrics():
    assert evaluate(parse_check("w2_ratio <= 1 @quick"), RUN, "full").ok is None
    assert evaluate(parse_check("w2_ratio <= 1 @quick"), RUN, "quick").ok is False
    miss = evaluate(parse_check("fid <= 10"), RUN, "full")
    assert miss.ok is False and "missing" in miss.error
    assert evaluate(parse_check("w2[ipf_iter=7] < 1"), RUN, "full").ok is False
    nan = RunResults(final={"w2": float("nan")})
    assert evaluate(parse_check("w2 < 1"), nan, "full").ok is False


def test_lines_checks_and_note():
    checks, note = parse_expected(["w2_ratio <= 1.2 @full; w2_ratio <= 3 @quick -- measured 0.46 -> 0.11",
                                   "-- a note only line",
                                   "kl < 1"])
    assert [c.sizes for c in checks] == [("full",), ("quick",), ("quick", "full")]
    assert note == "measured 0.46 -> 0.11 a note only line"
    assert "measured w2_ratio = 1.25" in evaluate(checks[0], RUN, "full").describe()


@pytest.mark.parametrize("bad", ["w2_ratio", "w2 ~ 1", "1 < 2", "w2 <= 1 @medium", "w2 * kl < 1",
                                 "w2[foo] < 1", "max(w2 < 1", "w2 <= abc def"])
def test_bad_checks_are_refused(bad):
    with pytest.raises(ExpectedError):
        parse_check(bad)


def test_sweep_selectors_with_several_keys_and_aggregates():
    grid = RunResults(jobs=[({"data": a, "c": c}, {"w2": w}) for a, c, w in
                            [("m", "ot", 0.5), ("m", "i", 0.9), ("g", "ot", 0.7), ("g", "i", 0.8)]])
    assert ok("w2[data=m,c=ot] < w2[data=m,c=i]", grid)
    assert ok("max(w2[c=ot]) == 0.7", grid) and ok("min(w2[data=g]) == 0.7", grid)
    assert evaluate(parse_check("w2[c=ot] < 1"), grid, "full").ok is False  # two jobs match
