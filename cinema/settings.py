"""Typed configuration read from environment variables (and an optional `.env` file)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/cinema"
    redis_url: str = "redis://127.0.0.1:6379/0"
    jwt_secret: str = Field(min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    hold_ttl_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    hold_grace_seconds: int = Field(default=5, ge=0, le=3600)
    hold_filter: Literal["on", "off"] = "on"
    redis_key_prefix: str = "cinema:"
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    db_pool_min: int = Field(default=2, ge=1, le=100)
    db_pool_max: int = Field(default=20, ge=1, le=100)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def filter_enabled(self) -> bool:
        return self.hold_filter == "on"


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        problem = "is required" if first["type"] == "missing" else first["msg"]
        raise SettingsError(f"configuration error: {name}: {problem}") from None
