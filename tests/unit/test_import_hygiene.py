"""Layering (DESIGN.md): core modules never import the UI libraries, and stay cheap to import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CORE_MODULES = [
    "bucketchat.errors",
    "bucketchat.config",
    "bucketchat.protocol",
    "bucketchat.storage",
    "bucketchat.cache",
    "bucketchat.sync.pull",
    "bucketchat.sync.push",
    "bucketchat.sync.reader",
    "bucketchat.sync.keys",
    "bucketchat.sync.workers",
    "bucketchat.projections.timeline.refresh",
    "bucketchat.projections.timeline.read",
    "bucketchat.projections.search.index",
    "bucketchat.projections.search.searcher",
    "bucketchat.export",
    "bucketchat.audit.report",
    "bucketchat.audit.bundle",
    "bucketchat.compose",
    "bucketchat.session",
    "bucketchat.present",
    "bucketchat.keystore",
    "bucketchat.attestation",
    "bucketchat.api",
    "bucketchat.demo",
]
UI_LIBRARIES = ("rich", "typer", "textual", "click")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_import_ui_libraries(module: str) -> None:
    probe = (
        f"import sys, {module}; print(','.join(m for m in {UI_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"


def test_a_no_change_sync_path_does_not_import_heavy_libraries() -> None:
    """What a quiet sync needs must not pull pyarrow, pydantic, libsodium (PyNaCl), the
    line parser or the cloud SDKs."""
    probe = (
        "import sys, bucketchat.sync.pull, bucketchat.session, bucketchat.cli.context, "
        "bucketchat.keystore, bucketchat.attestation; "
        "print(','.join(m for m in ('pyarrow', 'pydantic', 'nacl', 'bucketchat.protocol.lines', "
        "'boto3', 'google.cloud.storage', 'azure.storage.blob') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_a_no_change_sync_through_the_cli_imports_no_heavy_library(tmp_path) -> None:
    """The whole command, typer's parsing included: a typer that coerces parameters through
    pydantic (0.29) cost every command ~70 ms at start."""
    bucket, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    (bucket / "rooms").mkdir(parents=True)
    env = {**os.environ, "BUCKETCHAT_HOME": str(tmp_path / "home")}
    sync = ["--bucket", str(bucket), "--db", str(cache), "sync", "--json"]
    first = [sys.executable, "-m", "bucketchat", *sync]
    subprocess.run(first, capture_output=True, text=True, check=True, env=env)
    probe = (
        "import sys\n"
        "from bucketchat.cli.main import run\n"
        "try:\n"
        f"    run({sync!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('pyarrow', 'pydantic', 'nacl', 'boto3', 'google.cloud.storage', "
        "'azure.storage.blob')\n"
        "print('heavy=[' + ','.join(m for m in heavy if m in sys.modules) + ']', file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert '"files_scanned": 0' in result.stdout
    assert "heavy=[]" in result.stderr, result.stderr
