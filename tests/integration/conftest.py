"""Integration fixtures: the storage servers of tests/servers/fixtures.py, loaded by path
(tests/servers is a folder of helper scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "servers" / "fixtures.py"
_SPEC = importlib.util.spec_from_file_location("bucketchat_test_servers", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
servers = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = servers
_SPEC.loader.exec_module(servers)

moto_endpoint = servers.moto_endpoint
ceph_endpoint = servers.ceph_endpoint
gcs_endpoint = servers.gcs_endpoint
azurite_blob = servers.azurite_blob
