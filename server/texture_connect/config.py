"""Configuration, read once from the environment. Every variable is documented in the
README's configuration table."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from texture_connect.manufacturers.catalog_file import DEVELOPMENT_CATALOG

# Texture's own settings; never handed out as a manufacturer's client secret (the sandbox's
# client secret is the one exception, below).
_SERVICE_VARIABLES_PREFIX = "TEXTURE_"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    grpc_addr: str
    http_addr: str
    public_url: str
    manufacturers_file: Path
    session_ttl_seconds: int
    # Empty: use (or create) the development key in the data directory.
    encryption_key: str
    sandbox_enabled: bool
    sandbox_url: str
    # The sandbox manufacturer's OAuth client secret (both sides of the sandbox use it).
    sandbox_client_secret: str
    # Lifetime of the sandbox's access tokens, seconds.
    sandbox_token_ttl: int
    # Empty: use (or create) the development credential in the data directory.
    internal_key: str
    log_level: str
    # Where manufacturers' client secrets are read, by the names the catalog gives.
    secrets_env: Mapping[str, str]

    def __repr__(self) -> str:  # keys stay out of reprs and logs
        return (
            f"Settings(database_url={_without_password(self.database_url)!r}, "
            f"grpc_addr={self.grpc_addr!r}, "
            f"http_addr={self.http_addr!r}, public_url={self.public_url!r})"
        )

    @property
    def callback_url(self) -> str:
        """The one redirect_uri registered at every manufacturer."""
        return f"{self.public_url}/v1/oauth/callback"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("TEXTURE_DATA_DIR", "var"))
        http_addr = env.get("TEXTURE_HTTP_ADDR", "127.0.0.1:8080")
        public_url = env.get("TEXTURE_PUBLIC_URL", f"http://{http_addr}").rstrip("/")
        ttl = _positive_int(env, "TEXTURE_SESSION_TTL", 1800)
        return cls(
            database_url=env.get("TEXTURE_DATABASE_URL", f"sqlite:///{data_dir}/texture.db"),
            data_dir=data_dir,
            grpc_addr=env.get("TEXTURE_GRPC_ADDR", "127.0.0.1:50051"),
            http_addr=http_addr,
            public_url=public_url,
            manufacturers_file=Path(
                env.get("TEXTURE_MANUFACTURERS_FILE", str(DEVELOPMENT_CATALOG))
            ),
            session_ttl_seconds=ttl,
            encryption_key=env.get("TEXTURE_ENCRYPTION_KEY", ""),
            sandbox_enabled=env.get("TEXTURE_SANDBOX", "").lower() in ("1", "true", "yes"),
            sandbox_url=env.get("TEXTURE_SANDBOX_URL", f"{public_url}/sandbox").rstrip("/"),
            sandbox_client_secret=env.get(
                "TEXTURE_SANDBOX_CLIENT_SECRET", "sandbox-development-secret"
            ),
            sandbox_token_ttl=_positive_int(env, "TEXTURE_SANDBOX_TOKEN_TTL", 3600),
            internal_key=env.get("TEXTURE_INTERNAL_KEY", ""),
            log_level=env.get("TEXTURE_LOG_LEVEL", "INFO"),
            secrets_env=dict(env),
        )

    def manufacturer_secrets(self, names: Iterable[str]) -> dict[str, str]:
        """The client secrets of the variables the catalog names, and nothing else of the
        environment (a catalog naming TEXTURE_ENCRYPTION_KEY gets nothing). The sandbox's
        development secret stands in when its variable is unset."""
        env = {"TEXTURE_SANDBOX_CLIENT_SECRET": self.sandbox_client_secret, **self.secrets_env}
        allowed = {
            name
            for name in names
            if name == "TEXTURE_SANDBOX_CLIENT_SECRET"
            or not name.startswith(_SERVICE_VARIABLES_PREFIX)
        }
        return {name: env[name] for name in allowed if name in env}


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, str(default)))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value
