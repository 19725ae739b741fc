"""The one percentile of the load tests and the benches (loadtest/stats.py) is nearest rank:
the p-th percentile of n values is the ceil(p·n)-th smallest, never an interpolation and
never one rank too far."""

from loadtest.stats import percentile


def test_p99_of_100_values_is_the_99th_smallest_not_the_largest():
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100


def test_p50_of_4_values_is_the_2nd_and_p50_of_5_the_3rd():
    assert percentile([40, 10, 30, 20], 0.5) == 20
    assert percentile([5, 1, 4, 2, 3], 0.5) == 3


def test_small_samples():
    assert percentile([7.5], 0.99) == 7.5
    assert percentile([3, 1], 0.5) == 1
    assert percentile([3, 1], 0.51) == 3
    assert percentile([1, 2, 3], 0.0) == 1
    assert percentile([], 0.99) == 0.0


def test_a_fraction_that_floating_point_rounds_up_keeps_its_rank():
    values = list(range(1, 101))
    assert 0.07 * 100 > 7  # 7.000000000000001
    assert percentile(values, 0.07) == 7
    assert percentile(list(range(1, 21)), 0.95) == 19


def test_weights_count_as_repeated_values():
    # 10, 20 and 30 seen 1, 2 and 1 times: the same as [10, 20, 20, 30]
    assert percentile([30, 10, 20], 0.5, weights=[1, 1, 2]) == 20
    assert percentile([30, 10, 20], 0.76, weights=[1, 1, 2]) == 30
    assert percentile([10, 20], 0.99, weights=[99.0, 1.0]) == 10
