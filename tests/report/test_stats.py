"""blockzoo.report.stats: mean/std, t quantiles, the regularised incomplete beta, the paired t-test."""
import math

import pytest

from blockzoo.report.stats import betainc, detectable_difference, mean_std, paired_ttest, t_quantile, t_sf2


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


@pytest.mark.parametrize("t,df,p", [
    (12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05), (2.228, 10, 0.05), (3.169, 10, 0.01), (1.96, 1e6, 0.05),
])
def test_t_quantiles(t, df, p):   # two-sided critical values from standard t tables
    assert t_sf2(t, df) == pytest.approx(p, rel=2e-3)


def test_betainc_symmetry():
    assert betainc(2.0, 3.0, 0.3) == pytest.approx(1 - betainc(3.0, 2.0, 0.7), abs=1e-12)
    assert betainc(1.0, 1.0, 0.42) == pytest.approx(0.42)


def test_paired_ttest():
    a, b = [0.91, 0.92, 0.93], [0.90, 0.905, 0.91]
    r = paired_ttest(a, b)
    d = [0.01, 0.015, 0.02]
    t = 0.015 / (0.005 / math.sqrt(3))
    assert r.mean_diff == pytest.approx(sum(d) / 3) == pytest.approx(0.015)
    assert r.t == pytest.approx(t) and r.p_value == pytest.approx(t_sf2(t, 2))
    assert paired_ttest([0.9], [0.8]).p_value is None
    with pytest.raises(ValueError):
        paired_ttest([1.0], [1.0, 2.0])


def test_t_quantile_and_detectable_difference():
    """Upper quantiles from the tables; the detectable difference of a paired test: (t_{a/2} + t_{1-power}) s/sqrt(n)
    (5 seeds, s = 0.2 pp: (2.776 + 0.941) * 0.2 / sqrt(5) = 0.332 pp)."""
    assert t_quantile(0.025, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.2, 4) == pytest.approx(0.941, abs=1e-3)
    assert t_quantile(0.025, 1e6) == pytest.approx(1.960, abs=1e-3)
    assert detectable_difference(0.2, 5) == pytest.approx((2.7764 + 0.9410) * 0.2 / math.sqrt(5), rel=1e-3)
    assert detectable_difference(0.2, 1) is None
    with pytest.raises(ValueError):
        t_quantile(0.7, 3)
