"""Settings and paths: the one place that knows directories and setting precedence.

Precedence is flag > environment > config file > default (CLI.md). Directories come from
platformdirs so that each OS keeps bucketchat's files where its users expect them; tests
point ``BUCKETCHAT_HOME`` at a temporary folder to get a private data and config dir.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bucketchat.errors import MissingSetting, UsageError

APP_NAME = "bucketchat"


def data_dir() -> Path:
    """Where keys, pinned keys and caches live (``<user data dir>/bucketchat``)."""
    home = os.environ.get("BUCKETCHAT_HOME")
    if home:
        return Path(home) / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_path() -> Path:
    explicit = os.environ.get("BUCKETCHAT_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("BUCKETCHAT_HOME")
    if home:
        return Path(home) / "config" / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_cache_path(bucket_url: str) -> Path:
    digest = hashlib.sha256(bucket_url.encode("utf-8")).hexdigest()[:16]
    return data_dir() / "caches" / f"{digest}.duckdb"


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"the config file {path} is not valid TOML: {exc}") from exc


@dataclass(frozen=True)
class OidcIssuer:
    issuer: str
    client_ids: tuple[str, ...]
    identity_claim: str = "email"
    tenant: str | None = None


@dataclass
class Settings:
    """The resolved settings of one command."""

    bucket: str | None = None
    db: Path | None = None
    user: str | None = None
    file: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        bucket: str | None = None,
        db: str | None = None,
        user: str | None = None,
    ) -> Settings:
        file = load_config_file()

        def pick(flag: str | None, env: str, key: str) -> str | None:
            if flag:
                return flag
            value = os.environ.get(env)
            if value:
                return value
            from_file = file.get(key)
            return str(from_file) if from_file else None

        db_value = pick(db, "BUCKETCHAT_DB", "db")
        return cls(
            bucket=pick(bucket, "BUCKETCHAT_BUCKET", "bucket"),
            db=Path(db_value).expanduser() if db_value else None,
            user=pick(user, "BUCKETCHAT_USER", "user"),
            file=file,
        )

    def require_bucket(self) -> str:
        if not self.bucket:
            raise MissingSetting(
                'no bucket: pass --bucket URL, set BUCKETCHAT_BUCKET, or add bucket = "…" '
                f"to {config_path()}"
            )
        return self.bucket

    def cache_path(self) -> Path:
        if self.db:
            return self.db
        return default_cache_path(self.require_bucket())

    def cloud_table(self, scheme: str) -> dict[str, Any]:
        table = self.file.get(scheme, {})
        return dict(table) if isinstance(table, dict) else {}

    def trusted_issuers(self) -> list[OidcIssuer]:
        oidc = self.file.get("oidc", {})
        raw = oidc.get("issuers", []) if isinstance(oidc, dict) else []
        issuers = []
        for item in raw:
            if not isinstance(item, dict) or "issuer" not in item:
                raise UsageError(f"[[oidc.issuers]] entries in {config_path()} need an issuer")
            issuers.append(
                OidcIssuer(
                    issuer=str(item["issuer"]),
                    client_ids=tuple(str(c) for c in item.get("client_ids", [])),
                    identity_claim=str(item.get("identity_claim", "email")),
                    tenant=item.get("tenant"),
                )
            )
        return issuers
