"""What a lost node cost, read from when orders were posted and decided (shop/failover.py):
the numbers the failover test prints and `make bench` compares, without a broker."""

from shop.failover import Decided, after_loss


def steady(start: float, end: float, latency: float = 0.05) -> list[Decided]:
    """An order every 0.1 s from `start` to `end`, each decided `latency` s later."""
    return [Decided(t / 10, t / 10 + latency) for t in range(int(start * 10), int(end * 10))]


def test_an_outage_is_the_pause_and_the_backlog_is_the_catching_up():
    # Decisions stop at 10 s (the node's stop began) and resume at 15 s with the backlog.
    held = [Decided(t / 10, 15.0 + t / 1000) for t in range(100, 150)]
    decided = sorted(steady(0, 10) + held + steady(15, 20), key=lambda d: d.decided_at)
    cost = after_loss(decided, began=10.0, gone=11.0, until=20.0)
    assert round(cost.pause, 2) == 5.05  # from the stop to the first decision after it
    assert round(cost.worst_latency, 2) == 5.1
    assert round(cost.usual_latency, 2) == 0.05
    # The last order that took over a second was posted 3.1 s after the node was gone.
    assert round(cost.caught_up, 2) == 3.1


def test_a_loss_nobody_noticed_costs_nothing():
    cost = after_loss(steady(0, 20), began=10.0, gone=12.0, until=20.0)
    assert round(cost.pause, 2) == 0.1 and cost.caught_up == 0.0


def test_the_bench_says_skipped_in_one_line_without_rabbitmq_server(tmp_path, monkeypatch, capsys):
    from bench import cluster as bench_cluster
    from shop import broker_nodes

    monkeypatch.setattr(broker_nodes, "BIN_DIRECTORIES", ())
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find there
    assert bench_cluster.main([]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("skipped: rabbitmq-server is not installed")
