"""buildlog: each build's log beside the image is its own file (OUTPUT.<UTC time>.log),
OUTPUT.log links the newest, the newest few are kept, and no file amp-image did not
name so is ever removed.  Real files in tmp_path, no build."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amp_image.builder import buildlog
from amp_image.builder.request import build_log
from amp_image.errors import PlanError

T0 = datetime(2026, 11, 25, 14, 51, 1, tzinfo=UTC)


@pytest.fixture
def output(tmp_path) -> Path:
    return tmp_path / "x.qcow2"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_log_is_named_by_the_utc_time_and_linked(output):
    log = buildlog.new_log(output, now=T0.astimezone(tz=None))
    assert log == output.with_name("x.qcow2.20261125T145101Z.log")
    assert log.is_file() and log.stat().st_size == 0
    link = output.with_name("x.qcow2.log")
    assert link.is_symlink() and os.readlink(link) == log.name  # relative: moves with it
    assert names(output.parent) == ["x.qcow2.20261125T145101Z.log", "x.qcow2.log"]


def test_two_builds_in_the_same_second_get_two_logs(output):
    first = buildlog.new_log(output, now=T0)
    first.write_text("the first build's log\n")
    second = buildlog.new_log(output, now=T0)
    assert second == output.with_name("x.qcow2.20261125T145101Z-2.log")
    assert first.read_text() == "the first build's log\n"
    assert output.with_name("x.qcow2.log").resolve() == second


def test_a_second_build_through_the_cli_keeps_the_first_ones_log(output):
    """What the build command logs to, twice with the same -o: the first log survives
    (dib.py opens its log with "w")."""
    first = build_log(None, output)
    first.write_text("disk-image-create failed\n")
    second = build_log(None, output)
    assert second != first
    assert first.read_text() == "disk-image-create failed\n"
    assert output.with_name("x.qcow2.log").resolve() == second.resolve()


def test_the_link_names_the_newest(output):
    for minutes in range(3):
        newest = buildlog.new_log(output, now=T0 + timedelta(minutes=minutes))
    assert output.with_name("x.qcow2.log").resolve() == newest
    assert buildlog.logs_of(output)[-1] == newest
    assert len(buildlog.logs_of(output)) == 3


def test_pruning_keeps_the_newest_and_nothing_else_is_touched(output):
    folder = output.parent
    others = {
        "x.qcow2": "the image", "x.qcow2.notes.log": "the operator's notes",
        "x.qcow2.20200101T000000Z.log.bak": "a copy", "y.qcow2.20200101T000000Z.log": "y's",
        "x.qcow2.2020-01-01.log": "by hand", "x.qcow2.20200101T000000Z.log.txt": "",
    }
    for name, text in others.items():
        (folder / name).write_text(text)
    (folder / "x.qcow2.d").mkdir()
    (folder / "elsewhere.log").write_text("")
    # Named like a log but a link, and a folder: neither is amp-image's file.
    os.symlink("elsewhere.log", folder / "x.qcow2.20100101T000000Z.log")
    (folder / "x.qcow2.20100101T000001Z.log").mkdir()
    logs = [buildlog.new_log(output, now=T0 + timedelta(seconds=s), keep=4) for s in range(7)]
    assert buildlog.logs_of(output) == logs[-4:]
    assert not any(p.exists() for p in logs[:3])
    for name, text in others.items():
        assert (folder / name).read_text() == text
    assert (folder / "x.qcow2.d").is_dir()
    assert (folder / "x.qcow2.20100101T000000Z.log").is_symlink()
    assert (folder / "x.qcow2.20100101T000001Z.log").is_dir()


def test_the_newest_log_is_never_pruned(output):
    """Even if older logs carry later names (a clock set back)."""
    for s in range(3):
        buildlog.new_log(output, now=T0 + timedelta(days=1, seconds=s))
    log = buildlog.new_log(output, now=T0, keep=2)
    assert log.exists()
    assert output.with_name("x.qcow2.log").resolve() == log


def test_an_earlier_log_file_is_renamed_not_removed(output):
    """OUTPUT.log as amp-image wrote it before: a file, kept under its mtime's name."""
    old = output.with_name("x.qcow2.log")
    old.write_text("an earlier build's log\n")
    written = T0 - timedelta(days=2)
    os.utime(old, (written.timestamp(), written.timestamp()))
    log = buildlog.new_log(output, now=T0)
    kept = output.with_name("x.qcow2.20261123T145101Z.log")
    assert kept.read_text() == "an earlier build's log\n"
    assert old.is_symlink() and old.resolve() == log
    assert buildlog.logs_of(output) == [kept, log]


def test_a_folder_at_the_link_name_stops_before_anything_is_written(output):
    output.with_name("x.qcow2.log").mkdir()
    with pytest.raises(PlanError, match=r"x\.qcow2\.log is not a file; move it away or pass "
                                        r"--log-file$"):
        buildlog.new_log(output, now=T0)
    assert names(output.parent) == ["x.qcow2.log"]


def test_an_explicit_log_file_is_used_as_given(output, tmp_path):
    given = tmp_path / "logs" / "build.log"
    assert build_log(str(given), output) == given
    assert names(tmp_path) == []  # nothing beside the image, no link; dib.py makes logs/
