"""/healthz, /readyz and /metrics over real HTTP, and the metric names other components rely on
(dashboards, the scaler's Prometheus drain-rate source)."""

from __future__ import annotations

import urllib.error
import urllib.request

from worker.http import HealthServer
from worker.metrics import Metrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_follow_the_callables_and_metrics_render() -> None:
    state = {"healthy": True, "ready": False}
    metrics = Metrics()
    server = HealthServer(
        0,
        healthy=lambda: state["healthy"],
        ready=lambda: state["ready"],
        metrics=metrics.render,
        host="127.0.0.1",
    ).start()
    try:
        assert get(server.port, "/healthz")[0] == 200
        assert get(server.port, "/readyz")[0] == 503  # not warmed up yet
        state["ready"] = True
        assert get(server.port, "/readyz")[0] == 200
        state["healthy"] = False
        assert get(server.port, "/healthz")[0] == 503
        assert get(server.port, "/nope")[0] == 404

        metrics.received.inc(3)
        metrics.failed.labels(error_type="InvalidJSON", final="true").inc()
        metrics.batch_size.observe(32)
        metrics.ready.set(1)
        status, text = get(server.port, "/metrics")
        assert status == 200
        for name in (
            "gpuqueue_messages_received_total 3.0",
            'gpuqueue_messages_failed_total{error_type="InvalidJSON",final="true"} 1.0',
            "gpuqueue_messages_succeeded_total",
            "gpuqueue_batch_size_count 1.0",
            "gpuqueue_batch_tokens_bucket",
            "gpuqueue_inference_seconds_bucket",
            "gpuqueue_queue_wait_seconds_bucket",
            "gpuqueue_in_flight_messages",
            "gpuqueue_padding_ratio_bucket",
            "gpuqueue_gpu_memory_bytes",
            "gpuqueue_ready 1.0",
        ):
            assert name in text, name
    finally:
        server.stop()


def test_two_workers_in_one_process_do_not_share_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.received.inc()
    assert b"gpuqueue_messages_received_total 1.0" in first.render()
    assert b"gpuqueue_messages_received_total 0.0" in second.render()


def test_idle_connections_are_closed_and_at_most_the_limit_take_a_thread() -> None:
    """300 connections that send half a request line held 300 threads for ever (no handler
    timeout, a thread each): under a pids limit, the pipeline's threads next. Now at most
    `max_connections` are served at once and each idle one is closed after the timeout; the
    probe still answers once they are gone."""
    import socket
    import threading

    from worker_test_helpers import wait_for

    server = HealthServer(
        0, healthy=lambda: True, ready=lambda: True, metrics=lambda: b"", host="127.0.0.1",
        idle_timeout_s=0.5, max_connections=8,
    ).start()
    before = threading.active_count()
    idle = []
    try:
        for _ in range(40):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            connection.sendall(b"GET /heal")
            idle.append(connection)
        assert threading.active_count() <= before + 8
        wait_for(lambda: threading.active_count() <= before, 10, "the idle connections closed")
        assert get(server.port, "/healthz")[0] == 200
    finally:
        for connection in idle:
            connection.close()
        server.stop()
