"""``bucketchat keys …`` through the real console entry point (in-process and as a script)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bucketchat import keystore
from bucketchat.cli import keys as keys_cli
from bucketchat.cli import main
from bucketchat.keystore import device as keystore_device
from bucketchat.protocol.signing import SigningKey, fingerprint

ALICE = "alice@example.com"
WEAK_KEY = base64.b64encode(bytes(32)).decode()  # 'AAAA…=': a small-order point


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore_device, "_announced", False)  # each in-process run is a "process"
    monkeypatch.setattr(keys_cli, "_stdout_is_terminal", lambda: False)
    monkeypatch.setattr(keys_cli, "_stdin_is_terminal", lambda: False)
    for name in ("BUCKETCHAT_KEYSTORE", "BUCKETCHAT_EXPORT_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``bucketchat ARGS`` through ``main.run`` (hoisting and error boundary included)."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(keystore_device, "_announced", False)
        try:
            main.run(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def script(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m bucketchat ARGS`` in a subprocess with the test's environment."""
    completed = subprocess.run(
        [sys.executable, "-m", "bucketchat", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def stored_seed(user_id: str) -> bytes:
    seed = keystore.FileKeystore(keystore.keystore_path(), "test-passphrase").get_seed(user_id)
    assert seed is not None
    return seed


def assert_no_private_material(seed: bytes, *texts: str) -> None:
    for text in texts:
        assert seed.hex() not in text
        assert base64.b64encode(seed).decode() not in text


# ----------------------------------------------------------------------- the real script


def test_script_init_then_show_with_store_notice() -> None:
    made = script("keys", "init", "--user", ALICE)  # --user after the command is hoisted
    assert made.code == 0, made.err
    assert f"Made a device key for {ALICE}" in made.out
    notice = [line for line in made.err.splitlines() if line.startswith("bucketchat: keys")]
    assert notice == [
        f"bucketchat: keys are kept in the encrypted key file {keystore.keystore_path()}"
    ]
    path = keystore.keystore_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    shown = script("keys", "show", "--json")
    assert shown.code == 0, shown.err
    document = json.loads(shown.out)  # stdout is exactly one JSON document
    key = keystore.load_device_key(ALICE, keystore.FileKeystore(path, "test-passphrase"))
    assert document["user_id"] == ALICE  # remembered by init: no --user needed
    assert document["public_key"] == key.public_key
    assert document["public_key"] in made.out
    assert shown.err.count("bucketchat: keys are kept in") == 1
    assert_no_private_material(key.seed, made.out, made.err, shown.out, shown.err)


def test_script_weak_pinned_key_exits_2_with_one_line() -> None:
    result = script("keys", "trust", "bob@example.com", WEAK_KEY)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1
    assert (
        lines[0]
        == "error: cannot pin that key for bob@example.com: not a valid point of prime order"
    )
    assert not keystore.trusted_keys_path().exists()


def test_script_plaintext_store_is_announced_as_unencrypted() -> None:
    result = script("keys", "init", "--user", ALICE, env={"BUCKETCHAT_KEYSTORE": "plaintext"})
    assert result.code == 0, result.err
    assert "bucketchat: keys are kept in the UNENCRYPTED key file" in result.err


def test_script_without_keyring_or_passphrase_fails_with_advice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BUCKETCHAT_PASSPHRASE"}
    completed = subprocess.run(
        [sys.executable, "-m", "bucketchat", "keys", "init", "--user", ALICE],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert completed.returncode == 3
    assert "no OS keyring and no passphrase: set BUCKETCHAT_PASSPHRASE" in completed.stderr
    assert not keystore.keystore_path().exists()


# ---------------------------------------------------------------------------- in-process


def test_init_needs_a_user(cli: Any) -> None:
    result = cli("keys", "init")
    assert result.code == 2
    assert "keys init needs --user ID" in result.err


@pytest.mark.parametrize(
    "how", ["after", "before", "env"], ids=["keys init --user", "--user keys init", "env"]
)
def test_init_user_from_flag_anywhere_or_env(
    cli: Any, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "after":
        result = cli("keys", "init", "--user", ALICE)
    elif how == "before":
        result = cli("--user", ALICE, "keys", "init")
    else:
        monkeypatch.setenv("BUCKETCHAT_USER", ALICE)
        result = cli("keys", "init")
    assert result.code == 0, result.err
    assert keystore.default_user() == ALICE
    assert stored_seed(ALICE)


def test_init_refuses_to_replace_without_force(cli: Any) -> None:
    assert cli("keys", "init", "--user", ALICE).code == 0
    first = stored_seed(ALICE)
    again = cli("keys", "init", "--user", ALICE)
    assert again.code == 2
    assert "--force" in again.err
    assert stored_seed(ALICE) == first
    forced = cli("keys", "init", "--user", ALICE, "--force")
    assert forced.code == 0, forced.err
    assert stored_seed(ALICE) != first


def test_show_without_a_key_says_how_to_make_one(cli: Any) -> None:
    result = cli("--user", ALICE, "keys", "show")
    assert result.code == 3
    # Joined: the error boundary (cli/main.py) lets Rich wrap long lines at 80 columns.
    said = " ".join(result.err.split())
    assert f"no device key for {ALICE}: run `bucketchat keys init --user {ALICE}`" in said
    nobody = cli("keys", "show")
    assert nobody.code == 2
    assert "no user" in nobody.err


def test_show_people_output(cli: Any) -> None:
    cli("keys", "init", "--user", ALICE)
    result = cli("keys", "show")
    assert result.code == 0
    key = keystore.load_device_key(ALICE, keystore.open_keystore(announce=False))
    assert key.public_key in result.out
    assert "fingerprint" in result.out and "kept in" in result.out
    assert_no_private_material(key.seed, result.out, result.err)


def test_trust_and_list(cli: Any, vector_keys: dict[str, Any]) -> None:
    bob = vector_keys["bob@example.com"]["public_key"]
    assert cli("keys", "init", "--user", ALICE).code == 0
    pinned = cli("keys", "trust", "bob@example.com", bob)
    assert pinned.code == 0 and "Pinned" in pinned.out
    again = cli("keys", "trust", "bob@example.com", bob)
    assert again.code == 0 and "Already pinned" in again.out
    assert keystore.pinned_keys() == {"bob@example.com": [bob]}

    listed = cli("keys", "list", "--json")
    assert listed.code == 0, listed.err
    document = json.loads(listed.out)
    assert [row["user_id"] for row in document["own"]] == [ALICE]
    assert document["own"][0]["default"] is True
    assert document["pinned"] == [
        {
            "sender_id": "bob@example.com",
            "public_key": bob,
            "fingerprint": fingerprint(bob),
        }
    ]
    people = cli("keys", "list")
    assert bob in people.out and ALICE in people.out
    assert_no_private_material(stored_seed(ALICE), listed.out, people.out)


def test_export_public(cli: Any, tmp_path: Path) -> None:
    cli("keys", "init", "--user", ALICE)
    key = keystore.load_device_key(ALICE, keystore.open_keystore(announce=False))
    printed = cli("keys", "export")
    assert printed.code == 0
    assert printed.out.strip() == key.public_key
    target = tmp_path / "alice.pub"
    assert cli("keys", "export", "--output", str(target)).code == 0
    assert target.read_text().strip() == key.public_key


def test_export_private_never_to_a_terminal(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("keys", "init", "--user", ALICE)
    monkeypatch.setenv("BUCKETCHAT_EXPORT_PASSPHRASE", "move me")
    monkeypatch.setattr(keys_cli, "_stdout_is_terminal", lambda: True)
    result = cli("keys", "export", "--private")
    assert result.code == 2
    assert "refusing to print a private key to a terminal: pass --output FILE" in result.err
    assert "PRIVATE KEY" not in result.out


def test_export_private_needs_a_passphrase(cli: Any, tmp_path: Path) -> None:
    cli("keys", "init", "--user", ALICE)
    result = cli("keys", "export", "--private", "--output", str(tmp_path / "k.pem"))
    assert result.code == 2
    assert "BUCKETCHAT_EXPORT_PASSPHRASE" in result.err
    assert not (tmp_path / "k.pem").exists()


def test_export_private_then_import_on_another_device(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("keys", "init", "--user", ALICE)
    key = keystore.load_device_key(ALICE, keystore.open_keystore(announce=False))
    monkeypatch.setenv("BUCKETCHAT_EXPORT_PASSPHRASE", "move me")
    pem = tmp_path / "alice.pem"
    exported = cli("keys", "export", "--private", "--output", str(pem))
    assert exported.code == 0, exported.err
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "PRIVATE KEY" not in exported.out
    assert cli("keys", "export", "--private", "--output", str(pem)).code == 2  # no overwrite

    other_home = tmp_path / "laptop"
    other_home.mkdir()
    monkeypatch.setenv("BUCKETCHAT_HOME", str(other_home))
    monkeypatch.setenv("BUCKETCHAT_EXPORT_PASSPHRASE", "wrong")
    refused = cli("keys", "import", str(pem), "--user", ALICE)
    assert refused.code == 3
    assert "wrong passphrase" in refused.err
    monkeypatch.setenv("BUCKETCHAT_EXPORT_PASSPHRASE", "move me")
    imported = cli("keys", "import", str(pem), "--user", ALICE)
    assert imported.code == 0, imported.err
    assert key.public_key in imported.out
    assert keystore.default_user() == ALICE
    assert keystore.load_device_key(ALICE, keystore.open_keystore(announce=False)) == key
    assert_no_private_material(key.seed, exported.out, exported.err, imported.out, imported.err)


def test_import_refuses_to_replace_a_different_key(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / "other.pem"
    pem.write_bytes(keystore.export_private_pem(SigningKey.generate(), b"pw"))
    monkeypatch.setenv("BUCKETCHAT_EXPORT_PASSPHRASE", "pw")
    cli("keys", "init", "--user", ALICE)
    first = stored_seed(ALICE)
    assert cli("keys", "import", str(pem), "--user", ALICE).code == 2
    assert stored_seed(ALICE) == first
    assert cli("keys", "import", str(pem), "--user", ALICE, "--force").code == 0
    assert stored_seed(ALICE) != first
    missing = cli("keys", "import", str(tmp_path / "nope.pem"))
    assert missing.code == 2 and "cannot read" in missing.err


# ------------------------------------------------------------------------ typer's runner


def test_keys_app_with_clirunner() -> None:
    """The sub-app also works without run()'s hoisting: ``keys init --user`` is its own."""
    app = typer.Typer()
    app.callback()(main.main)
    keys_cli.register(app)
    keys_cli.register(app)  # idempotent: run() registers on every call
    assert len(app.registered_groups) == 1
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "init", "--user", ALICE])
    assert result.exit_code == 0, result.output
    assert "Made a device key" in result.stdout
    assert "bucketchat: keys are kept in the encrypted key file" in result.stderr
    shown = runner.invoke(app, ["keys", "show", "--json"])
    assert json.loads(shown.stdout)["user_id"] == ALICE
