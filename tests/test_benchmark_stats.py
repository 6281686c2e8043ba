"""The intervals the voice benchmark prints beside its counts, against published values
(Garwood's exact Poisson limits, as tabled in statistics references; the Wilson score
interval by its closed form), so a table's "1 false stop per hour" is read with its
uncertainty."""

from __future__ import annotations

import pytest

from benchmarks.common import poisson_95, poisson_cdf, wilson_95


@pytest.mark.parametrize(("count", "lower", "upper"), [
    (0, 0.0, 3.689), (1, 0.0253, 5.572), (3, 0.619, 8.767), (10, 4.795, 18.390)])
def test_exact_poisson_limits(count: int, lower: float, upper: float) -> None:
    got = poisson_95(count)
    assert got == pytest.approx((lower, upper), abs=1e-3)
    # The definition: at the upper limit, seeing ``count`` or fewer has probability 2.5 %.
    assert poisson_cdf(count, got[1]) == pytest.approx(0.025, abs=1e-6)


def test_wilson_interval() -> None:
    lower, upper = wilson_95(216, 240)
    assert (lower, upper) == pytest.approx((0.8555, 0.9319), abs=1e-4)
    assert wilson_95(240, 240)[1] == 1.0 and wilson_95(240, 240)[0] < 1.0
    assert wilson_95(0, 10)[0] == 0.0
