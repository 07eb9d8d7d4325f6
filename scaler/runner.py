"""One run over all targets: read each queue and Deployment, decide, patch the scale subresource.

Each target is isolated: one failing (queue missing, API refusing, malformed state) never stops
the others. A target is patched only with a number the policy produced from fresh reads, inside
[min, max]; after a 409 the Deployment is re-read, the decision re-made and the patch retried once.
If anything failed, `RunFailed` is raised at the end (the CLI exits non-zero, the Lambda raises so
its retries and alarms see it) — after every other target was served.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from scaler.cluster import ClusterError, DeploymentView
from scaler.config import Settings, TargetConfig
from scaler.drain import DrainError, DrainSource, NoDrainSource, total_rate
from scaler.policy import Decision, Observation, PolicyConfig, State, decide
from scaler.queue import QueueError, QueueSnapshot, summed
from scaler.state import decode, encode

log = logging.getLogger("scaler")


class RunFailed(RuntimeError):
    """At least one target failed; the message names each one and what failed."""


class Queues(Protocol):
    def snapshot(self, queue_url: str) -> QueueSnapshot: ...


class Cluster(Protocol):
    def read(self, namespace: str, name: str) -> DeploymentView: ...

    def patch_replicas(
        self, namespace: str, name: str, replicas: int, resource_version: str | None
    ) -> None: ...

    def write_state(self, namespace: str, name: str, text: str) -> None: ...


@dataclass
class Outcome:
    target: str
    queue_url: str
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    backlog: int | None = None
    current: int | None = None
    ready: int | None = None
    desired: int | None = None
    reason: str = ""
    patched: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        if self.error and self.desired is None:
            return f"{self.target}: FAILED: {self.error}"
        action = "dry-run" if self.dry_run else ("patched" if self.patched else "unchanged")
        text = (
            f"{self.target}: queue visible={self.visible} in-flight={self.in_flight} "
            f"delayed={self.delayed}; replicas {self.current} (ready {self.ready}) -> "
            f"{self.desired} [{action}]; {self.reason}"
        )
        for warning in self.warnings:
            text += f"; WARNING: {warning}"
        if self.error:
            text += f"; FAILED: {self.error}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Deps:
    queues: Queues
    cluster: Cluster | None
    cluster_error: str | None = None
    drain: DrainSource = field(default_factory=NoDrainSource)
    drain_for: Callable[[TargetConfig], DrainSource] | None = None
    clock: Callable[[], float] = time.time
    #: makes the cluster client afresh (build_deps: from the settings); None keeps the one given
    connect: Callable[[], Cluster] | None = None
    #: set by a target whose cluster call found the API unreachable or the token refused: the
    #: rest of that run fails at once instead of each waiting out the same dead endpoint
    cluster_down: str | None = None


def _observe(
    snap: QueueSnapshot, view: DeploymentView, now: float, drained: float | None
) -> Observation:
    return Observation(
        now=now,
        visible=snap.visible,
        in_flight=snap.in_flight,
        delayed=snap.delayed,
        current=view.replicas,
        ready=view.ready,
        drained_per_s=drained,
    )


def _decide_safely(obs: Observation, state: State, cfg: PolicyConfig) -> Decision:
    """The policy's decision, checked: a number outside [min, max] is a bug, never a patch.

    A reset (malformed) or missing state reaches the policy as a fresh State: the policy itself
    holds the replicas that run for its stabilization window (scaler.policy), in the simulator too.
    """
    decision = decide(obs, state, cfg)
    if not cfg.min_replicas <= decision.desired <= cfg.max_replicas:
        raise AssertionError(
            f"policy produced {decision.desired} outside [{cfg.min_replicas}, {cfg.max_replicas}]"
        )
    return decision


def serve_target(target: TargetConfig, deps: Deps, dry_run: bool) -> Outcome:
    out = Outcome(target=target.label, queue_url=",".join(target.queues), dry_run=dry_run)
    cfg = target.policy()
    ns, name = target.namespace, target.deployment_name
    try:
        snap = summed([deps.queues.snapshot(url) for url in target.queues])
        out.visible, out.in_flight, out.delayed = snap.visible, snap.in_flight, snap.delayed
        if deps.cluster is None:
            raise ClusterError(deps.cluster_error or "no Kubernetes cluster configured")
        if deps.cluster_down is not None:
            raise ClusterError(
                f"skipped: the cluster failed an earlier target this run: {deps.cluster_down}",
                skipped=True,
            )
        view = deps.cluster.read(ns, name)
        out.current, out.ready = view.replicas, view.ready
        now = deps.clock()
        state, problem = decode(view.annotation, now)
        if problem:
            out.warnings.append(problem)
            out.error = f"{ns}/{name}: {problem}"
        source = deps.drain_for(target) if deps.drain_for else deps.drain
        drained: float | None = None
        try:
            drained = total_rate(source, target.queues, ns, name)
        except DrainError as exc:
            out.warnings.append(f"drain rate unavailable ({exc}); using learned/prior rate")
        decision = _decide_safely(_observe(snap, view, now, drained), state, cfg)
        out.desired, out.reason, out.backlog = decision.desired, decision.reason, decision.backlog
        if dry_run:
            return out
        if decision.desired != view.replicas:
            try:
                deps.cluster.patch_replicas(ns, name, decision.desired, view.resource_version)
            except ClusterError as exc:
                if exc.status != 409:
                    raise
                # someone changed the scale since we read it: re-read, re-decide, retry once;
                # from the state read again too (another run may have scaled and recorded why:
                # deciding from ours undid its scale-up and erased its recommendations)
                view = deps.cluster.read(ns, name)
                out.current, out.ready = view.replicas, view.ready
                state, problem = decode(view.annotation, now)
                if problem:
                    out.warnings.append(problem)
                decision = _decide_safely(_observe(snap, view, now, drained), state, cfg)
                out.desired, out.reason = decision.desired, decision.reason + " (after 409)"
                if decision.desired != view.replicas:
                    deps.cluster.patch_replicas(
                        ns, name, decision.desired, view.resource_version
                    )
            out.patched = decision.desired != view.replicas
        deps.cluster.write_state(ns, name, encode(decision.state))
    except (QueueError, ClusterError) as exc:
        out.error = str(exc)
        if isinstance(exc, ClusterError) and exc.status in (None, 401) and not exc.skipped:
            # the cached GKE access no longer works: the token refused (401: revoked, a rotated
            # key), or the API unreachable or its certificate refused (no status: the control
            # plane's IP rotated, the cluster rebuilt under its name with a new CA). The next
            # run asks STS and GKE afresh instead of failing until close to the token's expiry.
            _GKE_CACHE.clear()
            deps.cluster_down = str(exc)
    return out


def _cluster_for_run(deps: Deps) -> None:
    """Before a run: a cluster found down by the last run is connected afresh (new token, new
    endpoint), when the deps know how."""
    if deps.cluster_down is None:
        return
    deps.cluster_down = None
    if deps.connect is not None:
        try:
            deps.cluster, deps.cluster_error = deps.connect(), None
        except Exception as exc:  # AuthError, GkeError, ClusterError: all name what failed
            deps.cluster, deps.cluster_error = None, str(exc)


def target_budget_s(settings: Settings) -> float:
    """The longest one target may take: a read, a patch and a state write, each up to the
    request timeout."""
    return 3 * settings.request_timeout_s


def run_once(
    settings: Settings, deps: Deps, dry_run: bool | None = None, deadline: float | None = None
) -> list[Outcome]:
    """Serve every target; never raises for a target's failure (see `raise_if_failed`). With a
    `deadline` (time.monotonic), a target that might not finish before it is failed as skipped
    instead of started: the Lambda would be killed mid-target, between patch and state write,
    naming nothing."""
    dry = settings.dry_run if dry_run is None else dry_run
    _cluster_for_run(deps)
    outcomes = []
    budget = target_budget_s(settings)
    for target in settings.targets:
        try:
            if deadline is not None and time.monotonic() + budget > deadline:
                outcome = Outcome(
                    target=target.label, queue_url=",".join(target.queues),
                    error="skipped: too little of the invocation left to serve it "
                    f"({budget:.0f} s: 3 x SCALER_REQUEST_TIMEOUT_S)",
                )
            else:
                outcome = serve_target(target, deps, dry)
        except Exception as exc:  # a bug for one target must not starve the others
            log.exception("target %s: unexpected error", target.label)
            outcome = Outcome(
                target=target.label,
                queue_url=target.queue_url,
                error=f"unexpected {type(exc).__name__}: {exc}",
            )
        level = logging.ERROR if outcome.error else logging.INFO
        log.log(level, "%s", outcome.line())
        outcomes.append(outcome)
    return outcomes


def raise_if_failed(outcomes: list[Outcome]) -> None:
    failed = [o for o in outcomes if o.error]
    if failed:
        detail = "; ".join(f"{o.target}: {o.error}" for o in failed)
        raise RunFailed(f"{len(failed)} of {len(outcomes)} target(s) failed: {detail}")


def build_deps(settings: Settings) -> Deps:
    """The real adapters. A cluster that cannot be reached fails every target, named."""
    from scaler.queue import SqsQueues

    deps = Deps(queues=SqsQueues(timeout_s=settings.request_timeout_s), cluster=None)
    deps.drain, deps.drain_for = _drain(settings)
    deps.connect = lambda: _cluster(settings)
    try:
        deps.cluster = _cluster(settings)
    except Exception as exc:  # AuthError, GkeError, ClusterError: all name what failed
        deps.cluster_error = str(exc)
    return deps


def _drain(
    settings: Settings,
) -> tuple[DrainSource, Callable[[TargetConfig], DrainSource] | None]:
    if settings.drain_rate_source == "cloudwatch":
        from scaler.drain import CloudWatchDrain

        drain = CloudWatchDrain(
            window_s=settings.drain_window_s, timeout_s=settings.request_timeout_s
        )
        return drain, None
    if settings.drain_rate_source == "prometheus":
        from scaler.drain import PrometheusDrain

        assert settings.prometheus_url is not None
        url = settings.prometheus_url
        default = PrometheusDrain(url, settings.prometheus_query, settings.request_timeout_s)

        def per_target(target: TargetConfig) -> DrainSource:
            if target.prometheus_query:
                return PrometheusDrain(url, target.prometheus_query, settings.request_timeout_s)
            return default

        return default, per_target
    return NoDrainSource(), None


# A warm Lambda container keeps its GKE access (token + endpoint) until 5 minutes before the
# token expires: three cross-cloud calls (STS, IAM Credentials, GetCluster) saved per invocation.
_GKE_CACHE: dict[tuple[Any, ...], tuple[Cluster, float]] = {}
TOKEN_REUSE_MARGIN_S = 300.0


def _cluster(settings: Settings) -> Cluster:
    from scaler.cluster import KubeCluster

    timeout = settings.request_timeout_s
    if settings.gke_cluster:
        key = (
            settings.gke_cluster,
            settings.google_auth,
            settings.wif_config,
            settings.sa_key_secret_id,
            settings.container_api_endpoint,
            settings.gke_endpoint,
        )
        cached = _GKE_CACHE.get(key)
        if cached and cached[1] - time.time() > TOKEN_REUSE_MARGIN_S:
            return cached[0]
        from scaler.auth import access_token, secret_key_credentials, wif_credentials
        from scaler.gke import lookup_cluster

        if settings.google_auth == "secret":
            assert settings.sa_key_secret_id is not None
            creds = secret_key_credentials(settings.sa_key_secret_id, timeout_s=timeout)
        else:
            creds = wif_credentials(settings.wif_info())
        token = access_token(creds, timeout)
        access = lookup_cluster(
            settings.gke_cluster,
            creds,
            settings.container_api_endpoint,
            timeout,
            settings.gke_endpoint,
        )
        cluster = KubeCluster.from_token(access.host, token, access.ca_pem, timeout)
        expiry = getattr(creds, "expiry", None)
        if expiry is not None:
            # google-auth keeps expiry as a naive UTC datetime
            _GKE_CACHE[key] = (cluster, expiry.replace(tzinfo=dt.UTC).timestamp())
        return cluster
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    return KubeCluster.from_kubeconfig(kubeconfig, settings.kube_context, timeout)
