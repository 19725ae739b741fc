from messaging.connection import Backoff


def test_backoff_grows_with_jitter_and_stays_under_its_cap():
    backoff = Backoff(base=0.25, cap=15.0)
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0.125 <= delay <= 15.0 for delay in delays)
    assert max(delays[10:]) > max(delays[:2])  # it grows
    assert len(set(delays)) > 15  # jitter: reconnecting clients do not move in lockstep


def test_backoff_starts_over_after_a_reset():
    backoff = Backoff(base=1.0, cap=60.0)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0
