"""Sans-I/O timing rules with made-up clocks: RTT estimate, congestion window, rate cap."""

from __future__ import annotations

import pytest

from nornir_portscan.engine.core.timing import CongestionWindow, RateLimiter, RttEstimator

# ---- RttEstimator -----------------------------------------------------------------------------


def test_rtt_initial_timeout_is_one_second() -> None:
    est = RttEstimator()
    assert est.timeout == 1.0
    assert est.srtt is None and est.samples == 0


def test_rtt_first_sample_sets_srtt_and_half_variance() -> None:
    est = RttEstimator()
    est.observe(0.5)
    assert est.srtt == pytest.approx(0.5)
    assert est.rttvar == pytest.approx(0.25)
    assert est.timeout == pytest.approx(0.5 + 4 * 0.25)


def test_rtt_later_samples_follow_rfc6298() -> None:
    est = RttEstimator()
    est.observe(0.5)
    est.observe(0.3)
    rttvar = 0.75 * 0.25 + 0.25 * abs(0.5 - 0.3)
    srtt = 0.875 * 0.5 + 0.125 * 0.3
    assert est.rttvar == pytest.approx(rttvar)
    assert est.srtt == pytest.approx(srtt)
    assert est.timeout == pytest.approx(srtt + 4 * rttvar)
    assert est.samples == 2


def test_rtt_timeout_never_below_100ms() -> None:
    est = RttEstimator()
    for _ in range(50):
        est.observe(0.0001)
    assert est.timeout == pytest.approx(0.1)


def test_rtt_timeout_never_above_10s() -> None:
    est = RttEstimator()
    est.observe(30.0)
    assert est.timeout == pytest.approx(10.0)


def test_rtt_initial_is_clamped_too() -> None:
    assert RttEstimator(initial=0.01).timeout == pytest.approx(0.1)
    assert RttEstimator(initial=60).timeout == pytest.approx(10.0)


def test_rtt_negative_sample_is_ignored() -> None:
    est = RttEstimator()
    est.observe(-1.0)
    assert est.samples == 0 and est.timeout == 1.0


def test_rtt_timeout_adapts_down_on_a_fast_path() -> None:
    est = RttEstimator()
    for _ in range(20):
        est.observe(0.02)
    assert 0.1 <= est.timeout < 0.2


# ---- CongestionWindow -------------------------------------------------------------------------


def test_window_starts_at_limit_capped_at_512() -> None:
    assert CongestionWindow(limit=100).size == 100
    assert CongestionWindow(limit=5000).size == 512


def test_window_slow_start_grows_one_per_answer_up_to_the_limit() -> None:
    cw = CongestionWindow(limit=1000, size=10)
    for _ in range(10):
        cw.on_answer()
    assert cw.size == 20  # one more per answer: doubles per round trip
    for _ in range(5000):
        cw.on_answer()
    assert cw.size == 1000  # never past the descriptor budget


def test_window_is_cut_on_loss_then_grows_slowly() -> None:
    cw = CongestionWindow(limit=10000, size=1000)
    cw.on_loss(now=5.0, rtt=0.1)
    assert cw.losses == 1
    assert 500 <= cw.size < 1000  # cut (about half), never below half
    assert cw.ssthresh == cw.size
    before = cw.size
    for _ in range(10):
        cw.on_answer()
    # congestion avoidance: about one more per window's worth of answers, not one per answer
    assert before < cw.size < before + 1


def test_window_cut_at_most_once_per_round_trip() -> None:
    cw = CongestionWindow(limit=10000, size=1000)
    cw.on_loss(now=5.0, rtt=0.5)
    after_first = cw.size
    cw.on_loss(now=5.2, rtt=0.5)  # same round trip: the same congestion event
    assert cw.size == after_first
    assert cw.losses == 2
    cw.on_loss(now=5.6, rtt=0.5)
    assert cw.size < after_first


def test_window_never_cut_below_its_minimum() -> None:
    cw = CongestionWindow(limit=10000, size=1000, minimum=300)
    for i in range(20):
        cw.on_loss(now=float(i), rtt=0.1)
    assert cw.size == 300


def test_local_shortage_caps_the_limit_at_what_worked() -> None:
    cw = CongestionWindow(limit=1000)
    cw.on_local_shortage(in_flight=37)
    assert cw.limit == 37
    assert cw.size <= 37
    for _ in range(1000):
        cw.on_answer()
    assert cw.size == 37  # growth stops at the new limit


def test_local_shortage_with_nothing_in_flight_still_allows_one() -> None:
    cw = CongestionWindow(limit=1000)
    cw.on_local_shortage(in_flight=0)
    assert cw.limit == 1
    assert cw.size == 1


# ---- RateLimiter ------------------------------------------------------------------------------


def test_rate_none_is_unlimited() -> None:
    rl = RateLimiter(None)
    assert rl.available(0.0) > 1_000_000
    rl.take()
    assert rl.wait_time() == 0.0


@pytest.mark.parametrize("rate", [0, -5])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate)


def test_rate_token_bucket_with_fake_clock() -> None:
    rl = RateLimiter(100.0)  # burst: max(1, rate/100) = 1
    assert rl.available(0.0) == 1
    rl.take()
    assert rl.available(0.0) == 0
    assert rl.wait_time() == pytest.approx(0.01)
    assert rl.available(0.005) == 0
    assert rl.available(0.0101) == 1


def test_rate_holds_over_a_simulated_second() -> None:
    rl = RateLimiter(1000.0)
    taken = 0
    now = 0.0
    while now < 1.0:
        while rl.available(now) >= 1:
            rl.take()
            taken += 1
        now += 0.0005
    # 1000 a second plus at most the burst (10) at the start
    assert 990 <= taken <= 1010 + 10


def test_rate_burst_does_not_accumulate_while_idle() -> None:
    rl = RateLimiter(1000.0)
    assert rl.available(0.0) == 10  # burst = rate/100
    for _ in range(10):
        rl.take()
    assert rl.available(60.0) == 10  # a minute idle still gives only a burst


def test_rate_wait_time_when_tokens_left_is_zero() -> None:
    rl = RateLimiter(50.0)
    assert rl.available(0.0) == 1
    assert rl.wait_time() == 0.0
