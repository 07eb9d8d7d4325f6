"""Entry point: settings -> clients -> model -> /healthz -> warm-up -> pipeline -> wait for SIGTERM
-> drain -> exit 0. A configuration problem is one line on stderr and exit code 2."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from worker import logs
from worker.config import WorkerSettings, load_settings
from worker.errors import ConfigError
from worker.logs import event
from worker.metrics import Metrics
from worker.tasks import is_image_task

if TYPE_CHECKING:
    from worker.http import HealthServer
    from worker.model import ModelRunner
    from worker.model.image_runner import ImageModelRunner
    from worker.pipeline import Worker
    from worker.queue_monitor import QueueMonitor
    from worker.sns import SnsAdapter
    from worker.sqs import SqsAdapter

log = logging.getLogger("worker")

EXIT_CONFIG = 2


def _aws_clients(settings: WorkerSettings) -> tuple[SqsAdapter, object | None, str]:
    """boto3 clients from the standard chain; a missing region is a configuration error."""
    from botocore.exceptions import NoRegionError

    from worker import s3
    from worker.sqs import SqsAdapter

    try:
        adapter = SqsAdapter.from_environment()
        s3_client = s3.make_client() if settings.result_s3_uri else None
    except NoRegionError:
        # boto3 reads AWS_DEFAULT_REGION (or a profile), not AWS_REGION
        raise ConfigError(
            "AWS_DEFAULT_REGION: not set (the region of the queues; boto3 ignores AWS_REGION)"
        ) from None
    except ValueError as exc:  # the SQS endpoint boto3 resolved (AWS_ENDPOINT_URL) is unusable
        raise ConfigError(f"AWS_ENDPOINT_URL: {exc}") from None
    return adapter, s3_client, adapter.region


def _check_queues(settings: WorkerSettings, adapter: SqsAdapter) -> None:
    """Fail at start, naming the variable, when a configured queue cannot be read, or when the
    result queue is the input queue (the worker would read its own results as requests)."""
    from worker.errors import error_code

    inputs = "WORKER_QUEUE_URLS" if settings.queue_urls else "WORKER_QUEUE_URL"
    checks = [(inputs, url) for url in settings.input_queue_urls]
    if settings.result_queue_url:
        checks.append(("WORKER_RESULT_QUEUE_URL", settings.result_queue_url))
    arns = []
    for variable, url in checks:
        try:
            arns.append(adapter.queue_attributes(url, ["QueueArn"]).get("QueueArn"))
        except Exception as exc:
            raise ConfigError(f"{variable}: cannot read queue {url}: {error_code(exc)}") from None
    if settings.result_queue_url and arns[-1] in arns[:-1]:
        which = "an input queue" if settings.queue_urls else "the input queue"
        raise ConfigError(f"WORKER_RESULT_QUEUE_URL: is {which} ({inputs})")


def run(settings: WorkerSettings) -> int:
    # torch is imported only after the cheap checks, so a wrong setting fails in a second
    from worker.s3 import ClaimCheckStore

    adapter, s3_client, region = _aws_clients(settings)
    _check_queues(settings, adapter)
    claim_check = None
    if settings.s3_bucket_prefix and s3_client is not None:
        bucket, prefix = settings.s3_bucket_prefix
        claim_check = ClaimCheckStore(s3_client, bucket, prefix)

    from worker.metrics import PrometheusObserver
    from worker.model import resolve_device
    from worker.pipeline import Worker

    try:
        resolve_device(settings.device)
    except ValueError as exc:
        raise ConfigError(f"WORKER_DEVICE: {exc}") from None
    stop = _stop_on_signals()
    metrics = Metrics()
    probes = _Probes()
    # the gauge says what /readyz says, at each scrape: one answer to "is it receiving"
    metrics.ready.set_function(lambda: 1.0 if probes.ready() else 0.0)
    http = _start_http(settings, metrics, probes)
    monitor = _start_queue_monitor(settings, adapter, metrics)
    try:
        try:
            runner = _load_runner(settings, metrics)
        except ConfigError:
            http.stop()
            raise
        if stop.is_set():
            http.stop()
            return 0
        runner.warm_up()
        worker = Worker(
            settings,
            runner,
            adapter,
            claim_check=claim_check,
            observers=[PrometheusObserver(metrics)],
            region=region,
            topics=_sns_adapter(settings),
        )
        probes.worker = worker
        metrics.in_flight.set_function(lambda: worker.held)
        worker.start()
        code = _serve(worker, stop)
        http.stop()
        return code
    finally:
        if monitor is not None:
            monitor.stop(timeout_s=1.0)  # a daemon thread: never let a slow SQS call hold the exit


class _Probes:
    """/healthz and /readyz before the pipeline exists (healthy, not ready) and after."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def healthy(self) -> bool:
        return self.worker.healthy() if self.worker else True

    def ready(self) -> bool:
        return self.worker.ready() if self.worker else False


def _stop_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets (the drain starts when the main thread sees it)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event(log, "signal received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _start_http(settings: WorkerSettings, metrics: Metrics, probes: _Probes) -> HealthServer:
    """/healthz, /readyz and /metrics from before the model loads (a port in use fails here)."""
    from worker.http import HealthServer

    try:
        http = HealthServer(
            settings.http_port, healthy=probes.healthy, ready=probes.ready, metrics=metrics.render
        ).start()
    except OSError as exc:
        raise ConfigError(
            f"WORKER_HTTP_PORT: cannot listen on {settings.http_port}: {exc}"
        ) from None
    event(log, "http listening", port=http.port)
    return http


def _load_runner(settings: WorkerSettings, metrics: Metrics) -> ModelRunner | ImageModelRunner:
    """The task's runner on its device; a model that cannot be loaded is a ConfigError naming
    WORKER_MODEL (or WORKER_MAX_INPUT_TOKENS when that is what is wrong)."""
    from worker.model import ModelRunner

    try:
        runner = (
            _image_runner(settings, metrics)
            if is_image_task(settings.task)
            else ModelRunner.load(
                settings.model,
                settings.task,
                settings.device,
                settings.dtype,
                settings.max_input_tokens,
            )
        )
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        variable = "WORKER_MAX_INPUT_TOKENS" if "max_input_tokens" in reason else "WORKER_MODEL"
        raise ConfigError(f"{variable}: cannot load {settings.model!r}: {reason}") from None
    runner.name = settings.model_name  # results' `model`: a readable name, not a path
    if isinstance(runner, ModelRunner):
        runner.use_generate_batching(settings.generate_batching)
    event(
        log,
        "model loaded",
        model=runner.name,
        path=settings.model,
        task=runner.task,
        device=runner.device,
        dtype=runner.dtype,
        max_input_tokens=runner.max_input_tokens,
    )
    return runner


def _serve(worker: Worker, stop: threading.Event) -> int:
    """Until a signal (drain, 0) or a crashed pipeline thread (drain, 1)."""
    while not stop.wait(1.0):
        if worker.crashed is not None:
            event(log, "a pipeline thread crashed; exiting", logging.ERROR)
            worker.shutdown()
            return 1
    worker.shutdown()
    return 0


def _image_runner(settings: WorkerSettings, metrics: Metrics) -> ImageModelRunner:
    """The image tasks' runner: the checkpoint's image processor and model, and the loader that
    fetches (S3 through boto3's standard chain, URLs on the allow-list), decodes and
    preprocesses on its own pool."""
    from botocore.exceptions import NoRegionError

    from worker.images.build import build_loader
    from worker.metrics import ImageMetrics
    from worker.model.image_runner import ImageModelRunner

    try:
        loader = build_loader(settings, stats=ImageMetrics(metrics))
    except NoRegionError:
        raise ConfigError(
            "AWS_DEFAULT_REGION: not set (the region of WORKER_IMAGE_S3_BUCKETS; boto3 ignores "
            "AWS_REGION)"
        ) from None
    return ImageModelRunner.load(
        settings.model, settings.task, loader, device=settings.device, dtype=settings.dtype,
        max_images=settings.image_max_per_request,
    )


def _sns_adapter(settings: WorkerSettings) -> SnsAdapter | None:
    """An SNS client when the allow-list names topics (boto3's standard chain)."""
    if not any(p.startswith("arn:") and ":sns:" in p for p in settings.reply_to_patterns):
        return None
    from worker.sns import SnsAdapter

    return SnsAdapter()


def _start_queue_monitor(
    settings: WorkerSettings, adapter: SqsAdapter, metrics: Metrics
) -> QueueMonitors | None:
    """Queue depth gauges from the start, so a pod still loading its model reports them too:
    one monitor per input queue (labels input/dlq, then input-1/dlq-1, ... by priority)."""
    from worker.queue_monitor import QueueMonitor

    if settings.queue_metrics_interval_s <= 0:
        return None
    return QueueMonitors(
        [
            QueueMonitor(
                adapter, url, metrics, settings.queue_metrics_interval_s,
                labels=("input", "dlq") if i == 0 else (f"input-{i}", f"dlq-{i}"),
                publishes_age=i == 0,
            ).start()
            for i, url in enumerate(settings.input_queue_urls)
        ]
    )


class QueueMonitors:
    def __init__(self, monitors: list[QueueMonitor]) -> None:
        self.monitors = monitors

    def stop(self, timeout_s: float) -> None:
        for monitor in self.monitors:
            monitor.stop(timeout_s=timeout_s / len(self.monitors))


def console() -> NoReturn:
    """`python -m worker` and the `gpuqueue-worker` script: `main`, then out at once. After a
    drain everything that matters is done (results written, requests deleted or released, logs
    flushed); the interpreter's own teardown of torch, the tokenizers and the threads still in
    long polls took seconds more, which a rollout waits for and a scale-down bills."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_arguments(argv: list[str] | None) -> None:
    """None are taken; `--help` lists the settings. Without this, `gpuqueue-worker --help` on a
    configured pod started a second consumer."""
    import argparse

    from worker.config import ENV_PREFIX

    settings = "\n".join(
        f"  {ENV_PREFIX}{name.upper()}: {field.description or ''}".rstrip(": ")
        for name, field in WorkerSettings.model_fields.items()
    )
    argparse.ArgumentParser(
        prog="gpuqueue-worker",
        description="Consume a gpuqueue SQS queue with a model; configured by environment "
        "variables only (docs/configuration.md).",
        epilog=f"settings:\n{settings}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"gpuqueue-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return run(settings)
    except ConfigError as exc:
        print(f"gpuqueue-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
