"""Settings (pydantic-settings, prefix SCALER_) and the targets list.

A configuration error becomes one `ConfigError` line naming the variable (the CLI prints it, the
Lambda raises it); no traceback for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from scaler.policy import PolicyConfig

GKE_CLUSTER_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/clusters/[^/]+$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# a Deployment's pods are named <deployment>-<replicaset hash>-<suffix>; scrapes label them by pod
DEFAULT_PROMETHEUS_QUERY = (
    'sum(rate(gpuqueue_messages_succeeded_total{{namespace="{namespace}",'
    'pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+"}}[2m]))'
)


ENV_PREFIX = "SCALER_"


class ConfigError(ValueError):
    """One line, naming the variable."""


class TargetConfig(BaseModel):
    """One (queue, Deployment) pair and its policy knobs (defaults = PolicyConfig's)."""

    # allow_inf_nan: json.loads reads `Infinity`, and a knob of inf or nan broke the decision
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    queue_url: str = Field(
        default="",
        description="the SQS queue the Deployment's workers read (or: `queue_urls`)",
    )
    queue_urls: list[str] = Field(
        default_factory=list,
        description="several queues one Deployment reads (its WORKER_QUEUE_URLS): the backlog "
        "and the drain rate are their sums",
    )
    deployment: str = Field(description="namespace/name")
    name: str | None = None
    min_replicas: int = Field(default=PolicyConfig.min_replicas, ge=0)
    max_replicas: int = Field(default=PolicyConfig.max_replicas, ge=1)
    target_backlog_per_replica: float | None = Field(default=None, gt=0)
    activation_backlog: int = Field(default=PolicyConfig.activation_backlog, ge=0)
    count_in_flight: bool = PolicyConfig.count_in_flight
    count_delayed: bool = PolicyConfig.count_delayed
    scale_down_stabilization_s: float = Field(
        default=PolicyConfig.scale_down_stabilization_s, ge=0
    )
    cooldown_to_zero_s: float = Field(default=PolicyConfig.cooldown_to_zero_s, ge=0)
    release_after_s: float = Field(default=PolicyConfig.release_after_s, ge=0)
    max_step_up: int | None = Field(default=None, ge=1)
    startup_delay_s: float = Field(default=PolicyConfig.startup_delay_s, ge=0)
    drain_rate_prior: float = Field(default=PolicyConfig.drain_rate_prior, gt=0)
    target_wait_s: float = Field(default=PolicyConfig.target_wait_s, gt=0)
    headroom: float = Field(default=PolicyConfig.headroom, ge=0)
    drain_reach_s: float = Field(default=PolicyConfig.drain_reach_s, ge=0)
    keep_warm_fraction: float = Field(default=PolicyConfig.keep_warm_fraction, ge=0, le=1)
    keep_warm_s: float = Field(default=PolicyConfig.keep_warm_s, ge=0)
    prometheus_query: str | None = None

    @field_validator("prometheus_query")
    @classmethod
    def _target_query(cls, value: str | None) -> str | None:
        return value if value is None else checked_query(value)

    @field_validator("deployment")
    @classmethod
    def _namespace_name(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) != 2 or not all(DNS_LABEL_RE.match(p) for p in parts):
            raise ValueError(f"must be 'namespace/name', got {value!r}")
        return value

    @model_validator(mode="after")
    def _queues(self) -> TargetConfig:
        # (a validated target comes back here with queue_url set to queue_urls[0])
        normalised = bool(self.queue_urls) and self.queue_url == self.queue_urls[0]
        if bool(self.queue_url) == bool(self.queue_urls) and not normalised:
            raise ValueError("give exactly one of queue_url and queue_urls")
        if any(not url for url in self.queue_urls):
            raise ValueError("queue_urls holds an empty URL")
        if not self.queue_url:
            self.queue_url = self.queue_urls[0]  # the first: names the target in lines and logs
        return self

    @property
    def queues(self) -> list[str]:
        """Every queue whose backlog this target sizes for."""
        return self.queue_urls or [self.queue_url]

    @model_validator(mode="after")
    def _bounds(self) -> TargetConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas {self.max_replicas} < min_replicas {self.min_replicas}"
            )
        return self

    @property
    def namespace(self) -> str:
        return self.deployment.split("/")[0]

    @property
    def deployment_name(self) -> str:
        return self.deployment.split("/")[1]

    @property
    def label(self) -> str:
        return self.name or self.deployment

    def policy(self) -> PolicyConfig:
        names = {f.name for f in dataclasses.fields(PolicyConfig)}
        return PolicyConfig(**self.model_dump(include=names))


class Settings(BaseSettings):
    # allow_inf_nan: SCALER_REQUEST_TIMEOUT_S=inf passed gt=0 and failed every call (OverflowError)
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)

    targets: list[TargetConfig] = Field(
        default_factory=list,
        description="JSON list of (queue, Deployment) targets and their policy knobs; this or "
        "SCALER_TARGETS_FILE",
    )
    targets_file: Path | None = Field(
        default=None, description="a YAML or JSON file: a list of targets, or {targets: [...]}"
    )
    gke_cluster: str | None = Field(
        default=None,
        description="projects/P/locations/L/clusters/C: endpoint and CA from GKE's get_cluster, "
        "the bearer token from google-auth; unset: SCALER_KUBECONFIG, else in-cluster config",
    )
    google_auth: Literal["wif", "secret"] = Field(
        default="wif",
        description="`wif` (Workload Identity Federation) or `secret` (a service-account key in "
        "AWS Secrets Manager, read at run time)",
    )
    wif_config: str | None = Field(
        default=None,
        description="the external-account credential config (JSON text or a path; not a secret); "
        "unset in `wif` mode: google.auth.default()",
    )
    sa_key_secret_id: str | None = Field(
        default=None, description="the Secrets Manager id of the key JSON (`secret` mode)"
    )
    kubeconfig: Path | None = Field(
        default=None, description="a kubeconfig for any other cluster (and the tests)"
    )
    kube_context: str | None = Field(default=None, description="the kubeconfig context to use")
    container_api_endpoint: str | None = Field(
        default=None, description="override the GKE API endpoint (a private endpoint, tests)"
    )
    gke_endpoint: Literal["public", "private", "dns"] = Field(
        default="public",
        description="which control-plane endpoint: `public` (IP + cluster CA), `private` (a "
        "Lambda in a VPC connected to the cluster's network), `dns` (GKE's DNS-based endpoint: "
        "IAM-authorised from anywhere, no authorized-networks list to keep up to date)",
    )
    drain_rate_source: Literal["cloudwatch", "prometheus", "prior"] = Field(
        default="cloudwatch",
        description="where the measured drain rate comes from (see the scaler's page)",
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL (`prometheus` drain rate source)"
    )
    prometheus_query: str = Field(
        default=DEFAULT_PROMETHEUS_QUERY,
        description="instant query for the drain rate (str.format: {namespace}, {deployment}, "
        "{queue} filled in; PromQL's own braces doubled)",
    )
    drain_window_s: int = Field(
        default=300, ge=60, le=3600, description="CloudWatch look-back for the drain rate"
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="per call to Kubernetes, GKE, Google's token exchange, Prometheus and AWS",
    )
    dry_run: bool = Field(default=False, description="decide and log, patch nothing")
    log_level: str = Field(
        default="INFO", description="the logs' level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    #: Lambda only: decide this many times per invocation, run_interval_s apart. EventBridge fires
    #: at most once a minute; 3 × 20 s sees a burst up to 40 s sooner. A run is skipped when less
    #: than 8 s of the invocation would be left (the template's function timeout is 55 s: runs at
    #: 0, 20, 40 s).
    runs_per_invocation: int = Field(
        default=3,
        ge=1,
        le=12,
        description="Lambda: decisions per invocation, SCALER_RUN_INTERVAL_S apart (EventBridge "
        "fires at most once a minute)",
    )
    run_interval_s: float = Field(
        default=20.0, ge=0, le=300, description="Lambda: seconds between those decisions"
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"not a log level: {value!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        return value.upper()

    @field_validator("prometheus_query")
    @classmethod
    def _query(cls, value: str) -> str:
        return checked_query(value)

    @field_validator("gke_cluster")
    @classmethod
    def _cluster_path(cls, value: str | None) -> str | None:
        if value is not None and not GKE_CLUSTER_RE.match(value):
            raise ValueError(f"must be projects/P/locations/L/clusters/C, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.targets_file is not None:
            if self.targets:
                raise ValueError("set SCALER_TARGETS or SCALER_TARGETS_FILE, not both")
            self.targets = load_targets_file(self.targets_file)
        if not self.targets:
            raise ValueError("no targets: set SCALER_TARGETS (JSON list) or SCALER_TARGETS_FILE")
        seen: set[str] = set()
        for target in self.targets:
            if target.deployment in seen:
                raise ValueError(f"deployment {target.deployment} listed twice")
            seen.add(target.deployment)
        if self.gke_cluster and self.google_auth == "secret" and not self.sa_key_secret_id:
            raise ValueError("SCALER_GOOGLE_AUTH=secret needs SCALER_SA_KEY_SECRET_ID")
        if self.drain_rate_source == "prometheus" and not self.prometheus_url:
            raise ValueError("SCALER_DRAIN_RATE_SOURCE=prometheus needs SCALER_PROMETHEUS_URL")
        self.wif_info()  # read at start: a bad one failed every target, naming no variable
        return self

    def wif_info(self) -> dict[str, Any] | None:
        """The external-account credential config: inline JSON or a path to it (not a secret)."""
        if not self.wif_config:
            return None
        text = self.wif_config.strip()
        try:
            if not text.startswith("{"):
                text = Path(text).read_text()
            info = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"SCALER_WIF_CONFIG: {exc}") from None
        if not isinstance(info, dict) or info.get("type") != "external_account":
            raise ConfigError("SCALER_WIF_CONFIG: not an external_account credential config")
        return info


def load_targets_file(path: Path) -> list[TargetConfig]:
    """The targets in a YAML or JSON file; ConfigError names the file and the entry."""
    text = Path(path).read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"SCALER_TARGETS_FILE: {path}: not valid JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, imported only for YAML files
        raise ConfigError(
            f"SCALER_TARGETS_FILE: {path}: not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list):
        raise ConfigError(f"SCALER_TARGETS_FILE: {path}: expected a list of targets (or targets:)")
    targets = []
    for index, item in enumerate(data):
        try:
            targets.append(TargetConfig.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err["loc"])
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            raise ConfigError(f"SCALER_TARGETS_FILE[{index}]{where}: {msg}") from None
    return targets


def checked_query(query: str) -> str:
    """A Prometheus query template that str.format can fill: PromQL's own braces doubled."""
    try:
        query.format(namespace="ns", deployment="deploy", queue="queue")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"cannot fill in {{namespace}}, {{deployment}}, {{queue}} ({type(exc).__name__}: "
            f"{exc}): double PromQL's own braces, as in {{{{job=\"embed\"}}}}"
        ) from None
    return query


def _variable(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "SCALER_*"
    head = f"SCALER_{str(loc[0]).upper()}"
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    return head + rest


def misspelt_variable() -> str | None:
    """The first `SCALER_*` environment variable that is no setting (pydantic-settings would
    ignore it and leave the default in force), as a ConfigError line naming the nearest one.

    A Service named `scaler` gives a pod SCALER_SERVICE_HOST, SCALER_PORT… (Kubernetes service
    links): with SCALER_SERVICE_HOST set, those names pass."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    linked = ("SCALER_SERVICE_", "SCALER_PORT") if "SCALER_SERVICE_HOST" in os.environ else ()
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known and not upper.startswith(linked):
            bare = {k.removeprefix(ENV_PREFIX): k for k in known}
            near = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), bare, cutoff=0.75)
            hint = f" (did you mean {bare[near[0]]}?)" if near else ""
            return f"{name}: not a scaler setting{hint}"
    return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; any problem → ConfigError, one line naming the variable."""
    if (misspelt := misspelt_variable()) is not None:
        raise ConfigError(misspelt)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(f"{_variable(loc)}: {msg}" if loc else msg) from None
    except SettingsError as exc:
        # pydantic-settings could not decode a complex value (a JSON list) from the environment
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"SCALER_{field.group(1).upper()}" if field else "SCALER_*"
        raise ConfigError(f"{name}: not valid JSON") from None
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SCALER_TARGETS_FILE: {exc}") from None
