"""Typed configuration read from environment variables (and an optional `.env` file)."""

from __future__ import annotations

import ipaddress
import math
import re
import zoneinfo
from collections import Counter
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cinema.validation import human_message

STRIPE_API = "https://api.stripe.com"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it in one line."""


# Words of the placeholders people copy from examples (.env.example's included).
_PLACEHOLDER_WORDS = re.compile(
    r"change[-_ ]?me|replace[-_ ]?me|your[-_ ]?secret|placeholder|example|long[-_ ]random",
    re.IGNORECASE,
)
# Estimated bits (length x the string's own character entropy): 32 random hex digits score
# 90 or more, "x" * 32 scores 0, a repeated word far below.
MIN_SECRET_BITS = 80
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def _entropy_bits(value: str) -> float:
    counts, n = Counter(value), len(value)
    return -sum(c * math.log2(c / n) for c in counts.values())


def check_secret(value: str) -> str:
    """Refuse known placeholders and predictable keys: a copied example is a public key."""
    if _PLACEHOLDER_WORDS.search(value):
        raise ValueError(f"is a placeholder, not a secret; generate one with: {_GENERATE}")
    repeated = (value + value).find(value, 1) < len(value)  # "abcabc...": a short key, repeated
    if repeated or _entropy_bits(value) < MIN_SECRET_BITS:
        raise ValueError(f"is too predictable to sign tokens; generate one with: {_GENERATE}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/cinema"
    redis_url: str = "redis://127.0.0.1:6379/0"
    jwt_secret: str = Field(min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # How old a staff caller's role may be when a request is let in (cinema/auth/roles.py):
    # a demoted or deleted account loses staff access within this many seconds.
    role_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # The key that signs ticket codes (cinema/boxoffice/codes.py); empty: derived from
    # JWT_SECRET. Set it to rotate JWT_SECRET without voiding every ticket already sold.
    ticket_code_secret: str = ""
    hold_ttl_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    hold_grace_seconds: int = Field(default=5, ge=0, le=3600)
    # How long a Redis claim lives before its booking commits, and how often each API process
    # sweeps the keys of bookings that ended early (docs/concurrency.md, "Redis claims");
    # a claim never outlives the hold itself.
    claim_provisional_seconds: float = Field(default=2.0, ge=0.5, le=60)
    hold_filter: Literal["on", "off"] = "on"
    redis_key_prefix: str = "cinema:"
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    db_pool_min: int = Field(default=2, ge=1, le=100)
    db_pool_max: int = Field(default=20, ge=1, le=100)
    # argon2 hashes at once per process (each holds 19 MiB): docs/performance.md
    password_hash_threads: int = Field(default=2, ge=1, le=64)
    password_hash_nice: int = Field(default=0, ge=0, le=19)
    # Per-stage timings of every request in /metrics (cinema_stage_seconds); for profiling.
    stage_timings: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Expiry (docs/expiry.md): Taskiq on its own Redis if set, else on REDIS_URL.
    taskiq_redis_url: str | None = None
    expiry_scheduler: Literal["taskiq", "off"] = "taskiq"
    expiry_reconcile_seconds: float = Field(default=30, ge=1, le=3600)
    expiry_batch_size: int = Field(default=200, ge=1, le=10_000)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Where ticket emails and intent cancels run (docs/payments.md): "taskiq" (the worker,
    # durable), "inprocess" (retried jobs in this process), "auto" (taskiq when
    # EXPIRY_SCHEDULER is taskiq: a worker is in use).
    follow_ups: Literal["auto", "taskiq", "inprocess"] = "auto"
    # --- operations (docs/operations.md) ---
    log_format: Literal["json", "text"] = "json"
    rate_limit_bookings_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    rate_limit_auth_per_minute: int = Field(default=300, ge=0, le=1_000_000)
    trusted_proxies: str = ""
    shutdown_timeout_seconds: float = Field(default=15, gt=0, le=600)
    # Payments (empty secret key: bookings carry no payment and webhooks answer 503).
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = STRIPE_API
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Ticket emails (empty host: none are sent).
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "CinemaCore <tickets@cinemacore.example>"
    # Live seat status, GET /api/screenings/{id}/events (0 streams per client: no cap).
    sse_max_per_client: int = Field(default=8, ge=0, le=100_000)
    sse_heartbeat_seconds: float = Field(default=15, ge=0.1, le=300)
    sse_viewer_queue: int = Field(default=1024, ge=2, le=100_000)
    sse_reconcile_seconds: float = Field(default=5, ge=0.5, le=3600)
    # --- refunds (issue 13) ---
    # A customer may cancel (and be refunded for) a paid booking up to this many hours
    # before the screening starts; later it is 409 cancel_window_closed.
    customer_cancel_hours: int = Field(default=24, ge=0, le=24 * 365)
    # Changes reach a process's viewers in one write per viewer this often (seconds).
    sse_batch_seconds: float = Field(default=0.05, ge=0.005, le=1)
    # Off: this process publishes no seat changes (for measuring what publishing costs).
    sse_publish: bool = True
    # --- web app (cinema/api/static/app/, issue 14) ---
    # The venue's IANA time zone: the pages show start times in it.
    venue_time_zone: str = "UTC"
    # Stripe.js's key (pk_test_... / pk_live_...): the checkout loads Stripe Elements with it.
    stripe_publishable_key: str = ""
    # --- past one machine (docs/scaling.md) ---
    # REDIS_URL (and TASKIQ_REDIS_URL, if set) name a start-up node of a Redis Cluster.
    redis_cluster: bool = False
    # asyncpg's prepared statements cached per connection; 0 behind PgBouncer in transaction
    # mode (Debian's 1.18 has no max_prepared_statements).
    db_statement_cache_size: int = Field(default=100, ge=0, le=10_000)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _unguessable(cls, value: str) -> str:
        return check_secret(value)

    @field_validator("ticket_code_secret")
    @classmethod
    def _unguessable_or_unset(cls, value: str) -> str:
        return value and check_secret(value)

    @field_validator("taskiq_redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # TASKIQ_REDIS_URL= means "use REDIS_URL"

    @field_validator("redis_url", "taskiq_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_urls(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        for url in (info.data.get("redis_url"), info.data.get("taskiq_redis_url")):
            if url is None:
                continue
            if url.startswith("unix://"):
                raise ValueError("a Redis Cluster is reached over TCP, not unix://")
            if urlsplit(url).path.strip("/") not in ("", "0"):
                raise ValueError("a Redis Cluster has only database 0")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the entry
        return value

    @field_validator("stripe_api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// or http://")
        return value.rstrip("/")

    @field_validator("venue_time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable(cls, value: str) -> str:
        if value and not value.startswith(("pk_test_", "pk_live_")):
            raise ValueError("must start with pk_test_ or pk_live_ (Stripe's publishable key)")
        return value

    @property
    def test_card_payments(self) -> bool:
        """The server pays a booking with a typed test card (POST /api/bookings/{id}/
        test-payment/): only with a test key against a Stripe-compatible local server
        (localstripe), never against Stripe itself or with a live key."""
        return (
            self.stripe_secret_key.startswith("sk_test_")
            and not (urlsplit(self.stripe_api_base).hostname or "").endswith("stripe.com")
            and not self.stripe_publishable_key.startswith("pk_live_")
        )

    @property
    def ticket_code_key(self) -> bytes:
        from cinema.boxoffice.codes import derive_key

        return self.ticket_code_secret.encode() or derive_key(self.jwt_secret)

    @property
    def payments_enabled(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def filter_enabled(self) -> bool:
        return self.hold_filter == "on"

    @property
    def follow_ups_mode(self) -> Literal["taskiq", "inprocess"]:
        if self.follow_ups != "auto":
            return self.follow_ups
        return "taskiq" if self.expiry_scheduler == "taskiq" else "inprocess"

    @property
    def taskiq_url(self) -> str:
        return self.taskiq_redis_url or self.redis_url


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        problem = human_message(first)
        raise SettingsError(f"configuration error: {name}: {problem}") from None
