"""The CLI contract of CLI.md, through real ``python -m bucketchat`` subprocesses: settings
precedence, setting flags on either side of the command, exit codes, one-line errors,
``--debug``, ``--version``, one JSON document for ``--json``, and the demo."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
FIXTURE_BUCKET = PROJECT / "tests" / "fixtures" / "bucket"
NOTICE = "bucketchat: keys are kept in"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """stderr lines, without the keystore's one-time notice."""
        return [
            line for line in self.err.splitlines() if line.strip() and not line.startswith(NOTICE)
        ]


def bc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "bucketchat", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=120,
        cwd=cwd or PROJECT,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def one_json(ran: Ran) -> object:
    """stdout must be exactly one JSON document (json.loads rejects anything after it)."""
    assert ran.code == 0, ran.err
    assert ran.out.strip(), "nothing on stdout"
    return json.loads(ran.out)


def default_cache(bucket_url: str) -> Path:
    digest = hashlib.sha256(bucket_url.encode("utf-8")).hexdigest()[:16]
    return Path(os.environ["BUCKETCHAT_HOME"]) / "data" / "caches" / f"{digest}.duckdb"


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    shutil.copytree(FIXTURE_BUCKET, root)
    return root


@pytest.fixture
def synced(bucket: Path, tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "synced.duckdb"
    ran = bc("sync", "--bucket", str(bucket), "--db", str(db))
    assert ran.code == 0, ran.err
    return bucket, db


# ---------------------------------------------------------------- settings precedence


def write_config(path: Path, **settings: str) -> Path:
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in settings.items()))
    return path


def cache_path_of(*args: str, env: dict[str, str] | None = None) -> Path:
    info = one_json(bc("cache", "info", "--json", *args, env=env))
    assert isinstance(info, dict)
    return Path(info["path"])


def test_db_precedence_is_flag_then_env_then_config_then_default(tmp_path: Path):
    config = write_config(
        tmp_path / "config.toml", bucket="/srv/from-config", db=str(tmp_path / "config.duckdb")
    )
    only_bucket = write_config(tmp_path / "bucket-only.toml", bucket="/srv/from-config")
    assert cache_path_of(env={"BUCKETCHAT_CONFIG": str(only_bucket)}) == default_cache(
        "/srv/from-config"
    )
    assert cache_path_of(env={"BUCKETCHAT_CONFIG": str(config)}) == tmp_path / "config.duckdb"
    env = {"BUCKETCHAT_CONFIG": str(config), "BUCKETCHAT_DB": str(tmp_path / "env.duckdb")}
    assert cache_path_of(env=env) == tmp_path / "env.duckdb"
    assert cache_path_of("--db", str(tmp_path / "flag.duckdb"), env=env) == (
        tmp_path / "flag.duckdb"
    )


def test_bucket_precedence_is_flag_then_env_then_config(tmp_path: Path):
    config = write_config(tmp_path / "config.toml", bucket="/srv/from-config")
    env = {"BUCKETCHAT_CONFIG": str(config)}
    assert cache_path_of(env=env) == default_cache("/srv/from-config")
    env["BUCKETCHAT_BUCKET"] = "/srv/from-env"
    assert cache_path_of(env=env) == default_cache("/srv/from-env")
    assert cache_path_of("--bucket", "/srv/from-flag", env=env) == default_cache("/srv/from-flag")


def test_user_precedence_is_flag_then_env_then_config_then_last_keys_init(tmp_path: Path):
    for user in ("config@example.com", "env@example.com", "flag@example.com", "last@x.org"):
        assert bc("keys", "init", "--user", user).code == 0

    def shown(*args: str, env: dict[str, str] | None = None) -> str:
        document = one_json(bc("keys", "show", "--json", *args, env=env))
        assert isinstance(document, dict)
        return str(document["user_id"])

    assert shown() == "last@x.org"
    env = {"BUCKETCHAT_CONFIG": str(write_config(tmp_path / "c.toml", user="config@example.com"))}
    assert shown(env=env) == "config@example.com"
    env["BUCKETCHAT_USER"] = "env@example.com"
    assert shown(env=env) == "env@example.com"
    assert shown("--user", "flag@example.com", env=env) == "flag@example.com"


@pytest.mark.parametrize(
    "layout",
    [
        ["--db", "{db}", "cache", "info", "--json"],
        ["cache", "info", "--json", "--db", "{db}"],
        ["cache", "--db", "{db}", "info", "--json"],
        ["--db={db}", "cache", "info", "--json"],
        ["cache", "info", "--db={db}", "--json"],
    ],
)
def test_setting_flags_work_before_and_after_the_command(layout: list[str], tmp_path: Path):
    db = tmp_path / "placed.duckdb"
    info = one_json(bc(*[part.format(db=db) for part in layout]))
    assert isinstance(info, dict)
    assert Path(info["path"]) == db


def test_bucket_flag_after_the_command_is_used_by_sync(synced: tuple[Path, Path], tmp_path: Path):
    bucket, _ = synced
    db = tmp_path / "after.duckdb"
    report = one_json(bc("sync", "--json", "--bucket", str(bucket), "--db", str(db)))
    assert isinstance(report, dict)
    assert report["events_ingested"] == 14
    report = one_json(bc("--bucket", str(bucket), "--db", str(db), "sync", "--json"))
    assert isinstance(report, dict)
    assert report["files_ingested"] == 0


# ---------------------------------------------------------------- exit codes and errors


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [
        ("error", 1),
        ("warning", 1),
        (None, 1),
        ("never", 0),
    ],
)
def test_audit_fail_on_sets_the_exit_code(
    fail_on: str | None, code: int, synced: tuple[Path, Path]
):
    _, db = synced
    extra = ["--fail-on", fail_on] if fail_on else []
    ran = bc("audit", "--format", "json", "--db", str(db), *extra)
    assert ran.code == code, ran.err
    report = json.loads(ran.out)  # the report is printed whatever the verdict
    assert report["summary"]["error"] > 0


def test_audit_fail_on_error_passes_on_a_clean_room(tmp_path: Path):
    root = tmp_path / "clean"
    shutil.copytree(FIXTURE_BUCKET / "rooms" / "vectors", root / "rooms" / "vectors")
    db = tmp_path / "clean.duckdb"
    assert bc("sync", "--bucket", str(root), "--db", str(db)).code == 0
    ran = bc("audit", "--db", str(db), "--fail-on", "error")
    assert ran.code == 0, ran.err


@pytest.mark.parametrize(
    "args",
    [
        ["sync", "--no-such-flag"],
        ["send"],
        ["no-such-command"],
        ["audit", "--fail-on"],
    ],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path):
    ran = bc(*args, "--db", str(tmp_path / "x.duckdb"))
    assert ran.code == 2, ran.err
    assert "unexpected" not in ran.err
    assert "Traceback" not in ran.err


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--fail-on", "sometimes"],
        ["audit", "--format", "xml"],
        ["sql", "SELECT 1", "--format", "yaml"],
        ["sync"],  # no bucket anywhere
        ["sync", "--room", "not a room!", "--bucket", "{tmp}"],
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], tmp_path: Path):
    ran = bc(*[a.format(tmp=tmp_path) for a in args], "--db", str(tmp_path / "x.duckdb"))
    assert ran.code == 2, ran.err
    assert len(ran.errors) == 1, ran.err
    assert ran.errors[0].startswith("error: ")
    assert "Traceback" not in ran.err


def test_a_missing_bucket_folder_exits_3_with_one_line(tmp_path: Path):
    missing = tmp_path / "no" / "such" / "bucket"
    ran = bc("sync", "--bucket", str(missing), "--db", str(tmp_path / "x.duckdb"))
    assert ran.code == 3, ran.err
    assert ran.errors == [f"error: the bucket folder {missing} does not exist"]
    assert ran.out == ""
    assert not missing.exists()


def test_debug_shows_the_traceback(tmp_path: Path):
    missing = tmp_path / "nowhere"
    for args in (
        ["--debug", "sync", "--bucket", str(missing)],
        ["sync", "--bucket", str(missing), "--debug"],
    ):
        ran = bc(*args, "--db", str(tmp_path / "x.duckdb"))
        assert ran.code == 3
        assert "Traceback (most recent call last)" in ran.err
        assert "BucketNotFound" in ran.err
        assert ran.errors[-1] == f"error: the bucket folder {missing} does not exist"


def test_version():
    ran = bc("--version")
    assert ran.code == 0, ran.err
    assert ran.out.strip() == f"bucketchat {version('bucketchat')}"
    assert ran.err == ""


# ---------------------------------------------------------------- JSON outputs


def test_json_outputs_are_one_document_on_stdout(synced: tuple[Path, Path], tmp_path: Path):
    bucket, db = synced
    assert bc("keys", "init", "--user", "alice@example.com").code == 0
    common = ["--bucket", str(bucket), "--db", str(db)]
    documents = {
        "sync": one_json(bc("sync", "--json", *common)),
        "rooms": one_json(bc("rooms", "--json", *common)),
        "audit": one_json(bc("audit", "--format", "json", "--fail-on", "never", *common)),
        "info": one_json(bc("cache", "info", "--json", *common)),
        "sql": one_json(bc("sql", "SELECT count(*) AS n FROM events", "--format", "json", *common)),
        "keys": one_json(bc("keys", "show", "--json")),
    }
    sync = documents["sync"]
    assert isinstance(sync, dict)
    assert set(sync) == {
        "files_scanned",
        "files_ingested",
        "events_ingested",
        "events_rejected",
        "duplicates",
        "findings",
        "seconds",
    }
    rooms = documents["rooms"]
    assert isinstance(rooms, list)
    assert {r["room_id"] for r in rooms} == {"vectors", "faults"}
    assert all(
        set(r) == {"room_id", "name", "events", "senders", "last_timestamp_ms"} for r in rooms
    )
    audit = documents["audit"]
    assert isinstance(audit, dict)
    assert set(audit) == {"summary", "findings", "senders", "rooms"}
    assert documents["sql"] == [{"n": 14}]
    assert documents["info"]["events"] == 14  # type: ignore[index]


def test_sync_json_stays_one_document_with_a_progress_bar(tmp_path: Path):
    root = tmp_path / "many"
    start = 1_767_225_600_000
    for index in range(40):  # enough files for the progress bar
        at = start + index
        path = root / "rooms" / "r" / "logs" / "2026-01-01" / f"messages_{at}_{at}_x.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"not": "an event"}\n')
    ran = bc("sync", "--json", "--bucket", str(root), "--db", str(tmp_path / "m.duckdb"))
    report = one_json(ran)
    assert isinstance(report, dict)
    assert report["files_ingested"] == 40
    assert report["events_rejected"] == 40


def test_the_sync_progress_bar_is_told_the_end_and_not_every_file(monkeypatch):
    from bucketchat.cli import sync as sync_cli

    monkeypatch.setattr(sync_cli, "PROGRESS_SECONDS", 3600.0)  # however slow the machine
    update, stage, bar = sync_cli.progress_bar()
    try:
        update(1, 1_000, 3)
        update(2, 1_000, 6)  # within PROGRESS_SECONDS of the first: not passed on
        (task,) = bar.tasks
        assert (task.completed, task.fields["events"]) == (1, 3)
        update(1_000, 1_000, 3_000)  # the last file always is
        assert (task.completed, task.fields["events"]) == (1_000, 3_000)
        assert task.description == "syncing"
        stage("building the timeline")  # the steps after reading show on the bar
        assert task.description == "building the timeline"
    finally:
        bar.stop()


def test_a_small_sync_shows_no_bar_and_no_steps():
    from bucketchat.cli import sync as sync_cli

    update, stage, bar = sync_cli.progress_bar()
    update(1, 3, 10)
    stage("building the timeline")
    assert bar.tasks == []


# ---------------------------------------------------------------- the demo


@pytest.mark.slow
def test_demo_makes_three_rooms_and_a_tampered_file(tmp_path: Path):
    folder = tmp_path / "demo"
    ran = bc("demo", "--dir", str(folder))
    assert ran.code == 0, ran.err
    assert "Traceback" not in ran.err
    db = folder / "cache.duckdb"
    assert db.exists()
    assert (folder / "bucket" / "rooms").is_dir()

    rooms = one_json(bc("rooms", "--json", "--db", str(db)))
    assert isinstance(rooms, list)
    assert sorted(r["room_id"] for r in rooms) == ["design", "general", "random"]
    assert {r["senders"] for r in rooms} == {3}

    ran = bc("audit", "--format", "json", "--fail-on", "never", "--db", str(db))
    report = json.loads(ran.out)
    bad = [f for f in report["findings"] if f["kind"] == "bad_signature"]
    assert len(bad) == 1
    assert bad[0]["room_id"] == "random"
    assert (folder / "bucket" / bad[0]["file"]).is_file()
    assert bad[0]["file"] in ran.out
    assert report["summary"]["error"] == 1
    assert len({s["sender_id"] for s in report["senders"]}) == 3
    # the demo's identities are throwaway: the user's keystore stays untouched
    assert not (Path(os.environ["BUCKETCHAT_HOME"]) / "data" / "keystore.json").exists()

    again = bc("demo", "--dir", str(folder))
    assert again.code == 2
    assert len(again.errors) == 1 and "--force" in again.errors[0]
    forced = bc("demo", "--dir", str(folder), "--force")
    assert forced.code == 0, forced.err


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not lose")
    for extra in ([], ["--force"]):
        ran = bc("demo", "--dir", str(folder), *extra)
        assert ran.code == 2, ran.err
        assert len(ran.errors) == 1
        assert "not a bucketchat demo" in ran.errors[0]
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]
    assert (folder / "thesis.txt").read_text() == "do not lose"
