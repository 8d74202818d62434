"""The pre-queue's shuffle is fair (issue 16): over many sales, a fan's place in line
does not depend on when in the window they arrived.

A statistical test with fixed seeds, so it is deterministic: 8 fans arrive one after
another (their user ids rise with arrival, the likeliest source of a bias), and the
shuffle runs 4,000 times. Every (arrival, place) pair should come up about 500
times; a chi-square test over the 8 x 8 table says whether it does. The service
orders the pre-queue with exactly this function (see test_scheduled_sale.py).
The control runs the same test on a shuffle that leans towards early arrivals, and
shows the test catches it.
"""

import hashlib
import random
from collections.abc import Callable, Sequence

from queueing.services import pre_queue_order

FANS = 8
RUNS = 4000
# Chi-square, (FANS - 1) * FANS degrees of freedom (each arrival's row sums to RUNS):
# the value exceeded by chance once in a thousand at 56 degrees of freedom.
CRITICAL_0_001 = 95.75


def seed_for(run: int) -> str:
    return hashlib.sha256(f"fairness-run-{run}".encode()).hexdigest()  # fixed, 256 bits


def placement_table(order: Callable[[str, Sequence[int]], list[int]]) -> list[list[int]]:
    """table[arrival][place]: how often the fan who arrived `arrival`-th got `place`."""
    arrivals = [1000 + i for i in range(FANS)]  # user ids, in arrival order
    table = [[0] * FANS for _ in range(FANS)]
    for run in range(RUNS):
        for place, user_id in enumerate(order(seed_for(run), arrivals)):
            table[user_id - 1000][place] += 1
    return table


def chi_square(table: list[list[int]]) -> float:
    expected = RUNS / FANS
    return sum((count - expected) ** 2 / expected for row in table for count in row)


def mean_place_by_arrival(table: list[list[int]]) -> list[float]:
    return [sum(place * n for place, n in enumerate(row)) / RUNS for row in table]


def shuffled(seed: str, user_ids: Sequence[int]) -> list[int]:
    return pre_queue_order(seed=seed, user_ids=user_ids)


def test_a_fans_place_does_not_depend_on_when_they_arrived():
    table = placement_table(shuffled)
    assert chi_square(table) < CRITICAL_0_001
    # Nobody's average place leans early or late: all within a few hundredths of 3.5.
    for mean in mean_place_by_arrival(table):
        assert abs(mean - (FANS - 1) / 2) < 0.15


def test_every_order_is_possible_and_each_seed_gives_one_order():
    orders = {tuple(shuffled(seed_for(run), list(range(4)))) for run in range(2000)}
    assert len(orders) == 24  # all 4! orders of four fans turned up
    assert shuffled(seed_for(7), [1, 2, 3]) == shuffled(seed_for(7), [3, 1, 2])  # input order
    # plays no part, so an auditor with the seed and the fans recomputes the same line


def test_control_a_shuffle_that_favours_early_arrivals_fails_the_test():
    def leaning(seed: str, user_ids: Sequence[int]) -> list[int]:
        rng = random.Random(seed)
        return sorted(user_ids, key=lambda uid: uid + rng.gauss(0, 4))  # arrival + noise

    table = placement_table(leaning)
    assert chi_square(table) > 10 * CRITICAL_0_001
    means = mean_place_by_arrival(table)
    assert means[0] < 3.0 < 4.0 < means[-1]  # the first to arrive stands nearer the front
