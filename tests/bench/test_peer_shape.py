"""The arrival orders of bench.peer_shape: three tries at each item, and winners first
puts one try at every item ahead of every second and third try (pretix's order)."""

import random
from collections import Counter

import pytest

from bench.peer_shape import ARRIVALS, SERVERS, arrival_order, checked, funds_for

ITEMS = [(date, seat) for date in (1, 2) for seat in range(1, 51)]


def test_every_order_makes_three_tries_at_each_item():
    random.seed(1)
    for arrival in ARRIVALS:
        tries = arrival_order(ITEMS, arrival)
        assert len(tries) == 300
        assert Counter(item for _, item in tries) == {item: 3 for item in ITEMS}
        assert sorted(attempt for attempt, _ in tries) == [0] * 100 + [1] * 100 + [2] * 100


def test_winners_first_puts_one_try_at_every_item_ahead_of_the_rest():
    random.seed(2)
    tries = arrival_order(ITEMS, "winners_first")
    assert sorted(item for _, item in tries[:100]) == ITEMS  # every seat once: all can win
    assert {attempt for attempt, _ in tries[:100]} == {0}
    assert tries[:100] != [(0, item) for item in ITEMS]  # shuffled, not in seat order


def test_interleaved_control_spreads_the_winning_tries_through_the_run():
    random.seed(2)
    tries = arrival_order(ITEMS, "interleaved")
    # The control: the first 100 tries miss some seats, so some winners come later.
    assert len({item for _, item in tries[:100]}) < 100
    first_at = {}
    for position, (_, item) in enumerate(tries):
        first_at.setdefault(item, position)
    assert max(first_at.values()) >= 100


def test_the_figure_is_the_median_round_and_every_round_is_kept():
    from bench.peer_shape import median_round

    runs = [{"success_per_s": rate, "success": 100} for rate in (390.3, 282.3, 321.8)]
    assert median_round(runs, "success_per_s") == {
        "success_per_s": 321.8,
        "success": 100,
        "rounds": [390.3, 282.3, 321.8],  # in the order they ran
    }
    # An even number of rounds: the lower middle one, never a mean no round measured.
    assert median_round(runs[:2], "success_per_s")["success_per_s"] == 282.3


def test_every_paying_fan_can_pay_in_every_round_of_every_server():
    # A paying fan pays once per arrival order, round and server, and keeps paying:
    # the runs delete their payments, not the debits.
    for rounds in (1, 3, 6, 10):
        payments = len(SERVERS) * len(ARRIVALS) * rounds
        assert funds_for(rounds, price=50_000) == payments * 50_000
    # The control: the old fixed 1,000,000 won paid for 20, and six rounds make 24.
    assert funds_for(6, price=50_000) > 1_000_000


def test_a_round_with_any_answer_but_its_winners_and_409s_stops_the_bench():
    good = {"attempts": 300, "success": 100, "codes": {"201": 100, "409": 200}}
    assert checked(good, ok_status=201, successes=100) is good
    ceiling = {"attempts": 300, "success": 300, "codes": {"200": 300}}
    assert checked(ceiling, ok_status=200, successes=300) is ceiling
    # What BENCH_ROUNDS=6 produced once the wallets were empty, and a short round.
    broke = {"attempts": 300, "success": 0, "codes": {"402": 100, "409": 200}}
    short = {"attempts": 300, "success": 99, "codes": {"201": 99, "409": 200, "500": 1}}
    for run in (broke, short):
        with pytest.raises(SystemExit, match="a round went wrong"):
            checked(run, ok_status=201, successes=100)
