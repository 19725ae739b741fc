"""`shop cluster`'s plan and record, without starting a node (tests/integration/
test_cluster.py starts real ones)."""

import io
from pathlib import Path

import pytest

from shop import broker_nodes, cluster
from shop.broker_nodes import BrokerNode


def test_node_i_takes_base_plus_i_and_the_rabbitmq_offsets():
    assert cluster.planned_ports(5701, 2) == [
        (5701, "AMQP of node 1"),
        (15701, "management API of node 1"),
        (25701, "Erlang distribution of node 1"),
        (5702, "AMQP of node 2"),
        (15702, "management API of node 2"),
        (25702, "Erlang distribution of node 2"),
    ]


@pytest.mark.parametrize(
    ("nodes", "base_port", "message"),
    [
        (0, 5701, "--nodes must be between 1 and 9, got 0"),
        (10, 5701, "--nodes must be between 1 and 9, got 10"),
        (3, 80, "--base-port must leave room"),
        (3, 45534, "--base-port must leave room"),  # its distribution ports pass 65535
    ],
)
def test_a_request_that_cannot_fit_is_refused(nodes, base_port, message):
    with pytest.raises(cluster.ClusterError, match=message):
        cluster.check_request(nodes, base_port)


def test_the_record_survives_a_round_trip(tmp_path):
    nodes = tuple(
        BrokerNode(
            f"shop-{port}@localhost",
            port,
            port + cluster.DIST_OFFSET,
            tmp_path / f"shop-{port}",
            "rabbitmq",
            Path("/usr/lib/rabbitmq/bin"),
            port + cluster.MANAGEMENT_OFFSET,
        )
        for port in (5701, 5702)
    )
    recorded = cluster.Cluster(tmp_path, nodes)
    state_file = tmp_path / "var" / "cluster.json"
    recorded.save(state_file)
    assert cluster.Cluster.load(state_file) == recorded
    assert recorded.amqp_url == (
        "amqp://guest:guest@127.0.0.1:5701/%2F,amqp://guest:guest@127.0.0.1:5702/%2F"
    )


def test_down_and_status_with_nothing_up_say_so(tmp_path):
    state_file = tmp_path / "var" / "cluster.json"
    err = io.StringIO()
    assert cluster.main("down", state_file=state_file, err=err) == 0
    assert "no cluster is up" in err.getvalue()
    err = io.StringIO()
    assert cluster.main("status", state_file=state_file, out=io.StringIO(), err=err) == 1
    assert "no cluster is up" in err.getvalue()


def test_without_rabbitmq_server_up_exits_2_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(broker_nodes, "BIN_DIRECTORIES", ())
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find there
    err = io.StringIO()
    code = cluster.main("up", state_file=tmp_path / "cluster.json", out=io.StringIO(), err=err)
    assert code == 2
    assert err.getvalue().count("\n") == 1
    assert "rabbitmq-server is not installed" in err.getvalue()
    assert not (tmp_path / "cluster.json").exists()
