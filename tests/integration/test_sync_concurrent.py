"""Two syncs started together on one cache lose nothing and double nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    PROJECT,
    events_set,
    findings_list,
    generated_bucket,
    query,
    trust_map,
)

from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket


@pytest.fixture(scope="module")
def bucket_and_clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Any, ...]]:
    base = tmp_path_factory.mktemp("concurrent")
    root = base / "bucket"
    generated_bucket(root, files=450, events_per_file=12, seed=11)
    clean = base / "clean.duckdb"
    sync_bucket(LocalBucket(root), clean)
    return root, (events_set(clean), findings_list(clean), trust_map(clean))


def _start_sync(root: Path, db: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bucketchat", "sync", "--json"]
    return subprocess.Popen(
        [*command, "--bucket", str(root), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=PROJECT,
        env=dict(os.environ),
    )


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_two_syncs_started_together_lose_nothing(
    round_: int, bucket_and_clean: tuple[Path, tuple[Any, ...]], tmp_path: Path
):
    root, clean = bucket_and_clean
    db = tmp_path / f"shared-{round_}.duckdb"
    first, second = _start_sync(root, db), _start_sync(root, db)
    outcomes = []
    for process in (first, second):
        out, err = process.communicate(timeout=180)
        outcomes.append((process.returncode, out, err))
    codes = [code for code, _, _ in outcomes]
    assert set(codes) <= {0, 3}, outcomes
    assert 0 in codes, outcomes
    ingested = 0
    for code, out, err in outcomes:
        if code == 3:
            assert "the cache is busy" in err
            assert out == ""
        else:
            ingested += json.loads(out)["events_ingested"]
    if codes == [0, 0]:
        assert ingested == len(clean[0])  # each event counted by exactly one of them

    assert events_set(db) == clean[0]
    assert findings_list(db) == clean[1]
    assert trust_map(db) == clean[2]
    assert query(db, "SELECT count(*) FROM duplicate_lines") == [(0,)]
    assert query(db, "SELECT count(*) FROM files WHERE state = 'ingested'") == [(450,)]


READ_EVENTS = """
import sys
from pathlib import Path
from bucketchat.cache import open_cache
with open_cache(Path(sys.argv[1]), read_only=True, wait_seconds=0.5) as cache:
    print(cache.one("SELECT count(*) FROM event_rows")[0])
"""


def test_readers_get_in_while_a_sync_builds_its_search_index(tmp_path: Path) -> None:
    """The index and the findings only read the cache, so a sync holds it read-only then."""
    from unittest import mock

    from bucketchat.projections.search import index as fulltext

    root = tmp_path / "bucket"
    generated_bucket(root, files=3, events_per_file=5, seed=3)
    db = tmp_path / "cache.duckdb"
    seen: list[subprocess.CompletedProcess[str]] = []
    real_update = fulltext.update_index

    def update_while_reading(cache: Any, **kwargs: Any) -> int:
        seen.append(
            subprocess.run(
                [sys.executable, "-c", READ_EVENTS, str(db)],
                capture_output=True,
                text=True,
                cwd=PROJECT,
                timeout=60,
            )
        )
        return real_update(cache, **kwargs)

    with mock.patch.object(fulltext, "update_index", update_while_reading):
        report = sync_bucket(LocalBucket(root), db, workers=1)
    assert len(seen) == 1
    assert seen[0].returncode == 0, seen[0].stderr
    assert int(seen[0].stdout) == report.events_ingested == 15
