"""Shared fixtures: a private home per test, and the conformance data in tests/fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "true")


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own data and config dir, and never the user's keyring."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BUCKETCHAT_HOME", str(home))
    monkeypatch.setenv("BUCKETCHAT_PASSPHRASE", "test-passphrase")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in ("BUCKETCHAT_BUCKET", "BUCKETCHAT_DB", "BUCKETCHAT_USER", "BUCKETCHAT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def vector_keys() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "keys.json").read_text())
    return data


@pytest.fixture(scope="session")
def vector_lines() -> list[bytes]:
    return [line for line in (FIXTURES / "events.jsonl").read_bytes().split(b"\n") if line]


@pytest.fixture(scope="session")
def vector_expected() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / "expected.jsonl").read_text().splitlines()]
