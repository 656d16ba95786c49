"""The device key in a real OS keyring: GNOME Keyring over D-Bus (the Secret Service API).

tests/servers/keyring-session.sh starts a private session bus with an unlocked
gnome-keyring, so python-keyring picks ``SecretService.Keyring`` exactly as on a desktop.
The commands run as the real console script, with no keyring backend forced.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bucketchat import config, keystore

SESSION = Path(__file__).parents[1] / "servers" / "keyring-session.sh"
INSTALL = "apt-get install -y --no-install-recommends gnome-keyring dbus"
ALICE = "alice@example.com"

INSIDE = f"""
set -euo pipefail
"$PY" -m bucketchat keys init --user {ALICE}
echo '--- show'
"$PY" -m bucketchat keys show --json
echo '--- raw'
"$PY" -c 'import keyring; print(type(keyring.get_keyring()).__module__); \\
print(keyring.get_password("bucketchat", "device-key:{ALICE}") is not None)'
"""


@pytest.fixture
def keyring_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHON_KEYRING_BACKEND", "BUCKETCHAT_KEYSTORE", "BUCKETCHAT_PASSPHRASE"):
        env.pop(name, None)  # no forced backend, and no passphrase to fall back on
    for name in ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL"):
        env.pop(name, None)  # never the caller's own session
    keyring_home = tmp_path / "keyring-home"
    keyring_home.mkdir()
    env["KEYRING_TEST_HOME"] = str(keyring_home)
    env["PY"] = sys.executable
    return env


def test_keys_init_and_show_use_the_secret_service(keyring_env: dict[str, str]) -> None:
    missing = [
        tool for tool in ("dbus-run-session", "gnome-keyring-daemon") if not shutil.which(tool)
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL}", pytrace=False)
    completed = subprocess.run(
        ["bash", str(SESSION), "bash", "-c", INSIDE],
        capture_output=True,
        text=True,
        env=keyring_env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    made, rest = completed.stdout.split("--- show\n")
    shown, raw = rest.split("--- raw\n")

    notices = [line for line in completed.stderr.splitlines() if "keys are kept in" in line]
    assert notices == ["bucketchat: keys are kept in the OS keyring (SecretService.Keyring)"] * 2
    assert raw.split() == ["keyring.backends.SecretService", "True"]

    document = json.loads(shown)
    assert document["user_id"] == ALICE
    assert document["keystore"] == "the OS keyring (SecretService.Keyring)"
    assert document["public_key"] in made

    # The seed went to the keyring: no key file, only the index of user ids beside it.
    assert not keystore.keystore_path().exists()
    index = json.loads((config.data_dir() / "keyring_users.json").read_text())
    assert index == {"users": [ALICE]}
    assert keystore.default_user() == ALICE
    # gnome-keyring stored it under the private HOME, encrypted at rest.
    keyrings = Path(keyring_env["KEYRING_TEST_HOME"]) / ".local" / "share" / "keyrings"
    assert any(keyrings.glob("*.keyring"))
