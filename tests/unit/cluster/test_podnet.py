"""The emulated pod network's rewriting of declared ports (pure)."""

from __future__ import annotations

from proctor.cluster.podnet import declared_ports, port_rewriter

rewrite = port_rewriter("127.1.0.7", {9108: 40001, 80: 40002})


def test_a_value_that_is_the_declared_port_becomes_the_host_port():
    assert rewrite("9108") == "40001"
    assert rewrite("--metrics-port=9108") == "--metrics-port=40001"


def test_this_pods_host_and_port_become_the_host_port():
    assert rewrite("http://127.0.0.1:9108/metrics") == "http://127.0.0.1:40001/metrics"
    assert rewrite("localhost:80") == "localhost:40002"
    assert rewrite("http://127.1.0.7:9108/") == "http://127.1.0.7:40001/"


def test_other_numbers_hosts_and_ports_are_left_alone():
    assert rewrite("91080") == "91080"
    assert rewrite("steps=9108x") == "steps=9108x"
    assert rewrite("http://example.org:9108/") == "http://example.org:9108/"
    assert rewrite("127.0.0.1:91081") == "127.0.0.1:91081"
    assert rewrite("10.0.0.1:80") == "10.0.0.1:80"


def test_a_pod_without_declared_ports_is_not_rewritten():
    assert port_rewriter("127.1.0.8", {})("127.0.0.1:9108") == "127.0.0.1:9108"


def test_declared_ports_are_the_tcp_ports_of_every_container():
    pod = {
        "spec": {
            "initContainers": [{"name": "w", "ports": [{"containerPort": 8080}]}],
            "containers": [
                {"name": "t", "ports": [{"containerPort": 9108}, {"containerPort": 9108}]},
                {"name": "u", "ports": [{"containerPort": 53, "protocol": "UDP"}]},
            ],
        }
    }
    assert declared_ports(pod) == [8080, 9108]
