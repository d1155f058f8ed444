"""Server configuration: one immutable `Settings`, read once from ``SEALBOX_*`` variables.

Rules:
* Nothing else in the server reads the environment; everything takes a `Settings`.
* There is no default secret. ``SEALBOX_ADMIN_TOKEN`` may be unset (organisation
  creation is then refused with a problem that says how to set one), but a set
  token that is short or a known placeholder is refused at start-up.
* The server's receipt signing key lives in a file under the data directory,
  created on first start with mode 0600 (docs/OPERATIONS.md: back it up).
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crypto import SigningKey

__all__ = [
    "ADMIN_TOKEN_HINT",
    "MIN_ADMIN_TOKEN_LENGTH",
    "Settings",
    "get_settings",
    "load_or_create_server_key",
]

MIN_ADMIN_TOKEN_LENGTH = 24
_PLACEHOLDERS = {"changeme", "changethis", "secret", "password", "admin", "token", "example", "xxx"}
ADMIN_TOKEN_HINT = (
    "set SEALBOX_ADMIN_TOKEN to a long random value, for example the output of "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)


class Settings(BaseSettings):
    """Every knob of the server. Limits are part of the protocol (GET /v1/server)."""

    model_config = SettingsConfigDict(env_prefix="SEALBOX_", frozen=True, extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    admin_token: SecretStr | None = None
    server_key_file: Path | None = None
    public_url: str | None = Field(
        default=None,
        description="External base URL (scheme://host[:port]) when behind a TLS proxy; "
        "request signatures cover @target-uri as the client saw it.",
    )
    log_level: str = "info"
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="uvicorn worker processes for `sealbox-server serve`: two per core of "
        "the 2-core reference machine.  Each runs its Python on one interpreter lock, and "
        "a client's keep-alive connection stays with the worker that accepted it: with "
        "two, four pushing devices often landed three on one, whose lock then bounded "
        "ingest while the other idled (4 workers ingested 1.2x more, bench/README.md).",
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="Set by `serve` when workers > 1, so /metrics sums every worker.",
    )

    # Protocol limits (docs/PROTOCOL.md §8.1).
    max_batch_items: int = Field(default=500, ge=1, le=10_000)
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_envelope_bytes: int = Field(default=1024 * 1024 + 8192, ge=1024)
    max_feed_items: int = Field(default=2000, ge=1)
    replay_window_seconds: int = Field(default=24 * 3600, ge=60)
    invite_max_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # Rate limits and quotas (docs/PROTOCOL.md §11).
    device_requests_per_minute: int = Field(default=3000, ge=1)
    org_requests_per_minute: int = Field(default=30_000, ge=1)
    anonymous_requests_per_minute: int = Field(default=600, ge=1)
    org_quota_bytes: int = Field(default=50 * 1024**3, ge=1024)

    # Start-up and shared state (docs/OPERATIONS.md).
    migrate_on_start: bool = Field(
        default=False,
        description="`serve` upgrades the schema to the migration head before it starts "
        "(else it refuses to start on a database that is not at head).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://host:port/db: rate-limit counters shared by every worker and "
        "node (else they live in the database).",
    )

    # Push: verify envelope signatures on this many threads (pyca releases the GIL).
    verify_threads: int = Field(default=2, ge=1, le=64)

    # The edge, enforced by the server process itself (server/edge.py, PROTOCOL §11.1).
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=4096,
        description="Request line and header block, in bytes (431 above it).",
    )
    max_header_count: int = Field(default=100, ge=16, description="Header fields (431 above).")
    header_timeout_seconds: float = Field(
        default=20,
        gt=0,
        description="From a connection's first byte (or the end of the previous response) "
        "to the end of the request's headers (408, or a silent close if nothing came).",
    )
    body_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="Time allowed for a body, extended by one second per "
        "body_min_bytes_per_second received (a 2G link sends far faster; a byte every "
        "few seconds does not).",
    )
    body_min_bytes_per_second: int = Field(default=500, ge=0)

    # Operator surfaces (docs/OPERATIONS.md).
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for GET /metrics; unset: /metrics is refused (403).",
    )
    api_docs: bool = Field(
        default=False,
        description="Serve /docs (Swagger UI from assets in the package, no CDN); "
        "/openapi.json is always served.",
    )

    @field_validator("admin_token", "metrics_token")
    @classmethod
    def _refuse_weak_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        if raw == "":
            return None
        if len(raw) < MIN_ADMIN_TOKEN_LENGTH or raw.lower().strip("-_ ") in _PLACEHOLDERS:
            name = f"SEALBOX_{(info.field_name or 'admin_token').upper()}"
            raise ValueError(
                f"{name} is too short or a placeholder (need >= "
                f"{MIN_ADMIN_TOKEN_LENGTH} characters); "
                + ADMIN_TOKEN_HINT.replace("SEALBOX_ADMIN_TOKEN", name)
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sealbox.db').as_posix()}"

    @property
    def resolved_server_key_file(self) -> Path:
        return self.server_key_file or (self.data_dir / "server_signing.key")

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()


def load_or_create_server_key(path: Path) -> SigningKey:
    """Load the server's Ed25519 receipt key, creating it (mode 0600) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Write a temporary file, then link it into place: atomic, and a concurrent
        # starter (another worker) either wins the link or reads the winner's key.
        key = SigningKey.generate()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.private_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    seed = path.read_bytes()
    if len(seed) != 32:
        raise RuntimeError(f"server key file {path} is damaged (expected 32 bytes)")
    return SigningKey(seed)
