"""Settings: grouped pydantic-settings classes composed into one ``Settings``.

Read from ``LLMOPS_*`` environment variables (nested groups use ``__``, e.g.
``LLMOPS_GIT__BRANCH``; the common ones also have short names such as
``LLMOPS_DATABASE_URL``), or from a YAML file named by ``LLMOPS_CONFIG``.
With nothing set, all state lives under ``LLMOPS_HOME``: the SQLite file, the
git work dirs, the hydrate output and (made by ``llmops up``) the specs repo
``specs/``. Without ``LLMOPS_HOME``, the home is the nearest ``.llmops`` folder
holding that state in the working directory or one of its parents (so every
command works from anywhere below where ``llmops up`` ran), else ``.llmops``
in the working directory. With no repo configured, the specs repo in the home
is followed when there is one. Called by the CLI, the daemon and the API at
start-up, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class GitSettings(BaseModel):
    repo: str = ""
    """URL (https, ssh, file) or local path of the specs repo; empty means the template."""
    branch: str = ""
    """The branch to follow; empty: the repo's default branch (its HEAD)."""
    timeout_seconds: float = 60.0
    allowed_hosts: list[str] = []
    """When set, only these hosts may be fetched from (https and ssh URLs)."""


class DaemonSettings(BaseModel):
    interval_seconds: float = 60.0
    jitter_seconds: float = 5.0
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    """Interface of the metrics server; 0.0.0.0 in a pod so Prometheus can scrape it."""
    debounce_seconds: float = 1.0


class DbSettings(BaseModel):
    """Bounds on every wait for the SQL store (PostgreSQL; SQLite waits ``busy_seconds``)."""

    connect_timeout_seconds: float = Field(default=5.0, ge=2, le=300)
    """Whole connection start-up (TCP, TLS, authentication), per address; libpq's minimum is 2."""
    statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Server-side ``statement_timeout``; the client gives up on an answer 5 s after it."""
    lock_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """Server-side ``lock_timeout``: a row, table or advisory lock waited on longer fails."""
    idle_in_transaction_timeout_seconds: float = Field(default=60.0, gt=0, le=86400)
    """Server-side ``idle_in_transaction_session_timeout``: a stuck transaction is ended."""
    busy_seconds: float = Field(default=30.0, gt=0, le=3600)
    """SQLite's busy timeout: how long a writer waits for another one."""


class KubeSettings(BaseModel):
    kubeconfig: str = ""
    field_manager: str = "llmops"
    request_timeout_seconds: float = 30.0
    applyset_namespace: str = "default"
    """Namespace of each environment's ApplySet parent Secret (the ``kubernetes`` actuator)."""


class S3Settings(BaseModel):
    endpoint_url: str = ""
    bucket: str = "llmops-models"
    region: str = "us-east-1"
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 60.0
    max_attempts: int = 3
    """Attempts per S3 request (botocore's standard retry mode)."""
    part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    """Multipart upload part size (S3 needs at least 5 MiB for all parts but the last)."""
    max_file_bytes: int = Field(default=10 * 1024**3, ge=0, le=10 * 1024**3)
    """Largest model file the upload route accepts (the spec's limit is 10 GiB)."""


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int | None = Field(default=None, ge=1, le=64)
    """Worker processes of ``llmops serve`` (``--workers``); unset: min(4, CPUs).
    ``llmops up`` always runs one (its daemon and SQLite share the process)."""
    trusted_proxies: list[str] = []
    proxy_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwks_file: str = ""
    """A JWKS file (JSON): RS256/ES256 bearer tokens are verified with its keys (by kid)."""
    max_body_bytes: int = 1024 * 1024
    model_server_url_template: str = "http://{service}.{namespace}.svc:80{path}"
    """Where ``GET /serve/{name}/health`` asks an endpoint's model server if it is ready:
    ``{service}`` and ``{namespace}`` of the endpoint's Service, ``{path}`` its runtime's
    health path; empty: never asked (health from the store only)."""
    model_server_timeout_seconds: float = Field(default=1.0, gt=0, le=10)


class ArgoCdSettings(BaseModel):
    """Argo CD's API, read for Application sync and health (``llmops status``, the API)."""

    url: str = ""
    """Base URL of the Argo CD server, e.g. https://argocd.example.com; empty: not shown."""
    token: SecretStr | None = None
    """Bearer token (a read-only account's, ``applications, get``); never logged."""
    app_name_template: str = "llmops-{env}"
    """Application name per environment; ``{env}`` is the only placeholder."""
    timeout: float = 5.0
    """Seconds per request (connect and read)."""


class PrometheusSettings(BaseModel):
    """Prometheus' HTTP API, read for the prompt router's per-variant metrics and tokens."""

    url: str = ""
    """Base URL, e.g. http://prometheus.monitoring:9090; empty: no metrics in the API."""
    timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds per query (connect and read)."""


class AuditSettings(BaseModel):
    """The audit chain's key and anchors, kept outside the database (``store.seal``)."""

    key: SecretStr | None = None
    """HMAC key of the chain (hex of 32+ bytes, or 32+ characters); empty: the 0600 file
    ``key_file`` (created by ``llmops up``, ``serve`` and the daemon when missing)."""
    key_file: str = ""
    """Where the key is kept; empty: ``$LLMOPS_HOME/audit-key``. Retired keys (``llmops
    audit rotate-key``) are kept beside it as ``audit-key.<key id>``, for verifying."""
    previous_keys: list[SecretStr] = []
    """Retired keys (as ``key``), kept only to verify what they keyed: with ``key`` set,
    rotate by moving the old key here (``LLMOPS_AUDIT__PREVIOUS_KEYS='["..."]'``)."""
    anchor_file: str = ""
    """Append-only file of the chain's anchored heads; empty:
    ``$LLMOPS_HOME/audit-anchors.jsonl``."""
    anchor_every: int = Field(default=100, ge=1, le=1_000_000)
    """Entries between anchors (the reconciler also anchors after every pass)."""
    repo_anchor_interval_seconds: float = Field(default=3600.0, ge=0)
    """At most one anchor per this many seconds is committed to the specs repo's ref
    ``refs/llmops/audit-anchors`` (and pushed to a remote one) by the reconciler; 0: never."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_", env_nested_delimiter="__",
                                      extra="forbid")

    home: Path = Path(".llmops")
    database_url: str = Field(default="", validation_alias=AliasChoices(
        "LLMOPS_DATABASE_URL", "database_url"))
    redis_url: str = Field(default="", validation_alias=AliasChoices(
        "LLMOPS_REDIS_URL", "redis_url"))
    git: GitSettings = GitSettings()
    db: DbSettings = DbSettings()
    daemon: DaemonSettings = DaemonSettings()
    kube: KubeSettings = KubeSettings()
    s3: S3Settings = S3Settings()
    api: ApiSettings = ApiSettings()
    argocd: ArgoCdSettings = ArgoCdSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    audit: AuditSettings = AuditSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("LLMOPS_CONFIG")
        if config_file:
            from pydantic_settings import YamlConfigSettingsSource

            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'llmops.db').resolve()}"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"

    @property
    def hydrate_dir(self) -> Path:
        return self.home / "rendered"


class SettingsError(ValueError):
    """A setting that does not validate: each one named as its variable, never its value
    (it may be a secret). A ``ValueError``, not an ``LlmopsError``: this vocabulary module
    sits beside ``errors`` and does not import it; the CLI maps it to exit code 1."""

    def __init__(self, exc: ValidationError) -> None:
        self.fields = [_variable(err["loc"]) for err in exc.errors()]
        problems = "; ".join(f"{name}: {err['msg']}"
                             for name, err in zip(self.fields, exc.errors(), strict=True))
        super().__init__(f"invalid settings: {problems}")


def _variable(loc: tuple[int | str, ...]) -> str:
    """``('db', 'connect_timeout_seconds')`` -> ``LLMOPS_DB__CONNECT_TIMEOUT_SECONDS``."""
    name = "__".join(str(part) for part in loc).upper()
    return name if name.startswith("LLMOPS_") else f"LLMOPS_{name}"


HOME_DIR = ".llmops"
_STATE = ("llmops.db", "specs", "api-token")
"""What marks a folder named ``.llmops`` as a home ``llmops up`` (or a pass) set up."""


def find_home(start: Path | None = None) -> Path | None:
    """The nearest ``.llmops`` folder with llmops state in ``start`` (default: the
    working directory) or a parent, as an absolute path; None when there is none."""
    try:
        here = (start or Path.cwd()).absolute()
    except OSError:  # the working directory was removed
        return None
    for folder in (here, *here.parents):
        candidate = folder / HOME_DIR
        if candidate.is_dir() and any((candidate / name).exists() for name in _STATE):
            return candidate
    return None


def load(**overrides: Any) -> Settings:
    """Settings from the environment (and ``LLMOPS_CONFIG``), with explicit overrides;
    the home found by ``find_home`` when none is set, its specs repo when no repo is."""
    try:
        cfg = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(exc) from None
    if ("home" not in overrides and "LLMOPS_HOME" not in os.environ
            and cfg.home == Path(HOME_DIR)):
        cfg.home = find_home() or cfg.home
    specs = cfg.home / "specs"
    if not cfg.git.repo and (specs / ".git").is_dir():
        cfg.git.repo = str(specs.absolute())
    return cfg
