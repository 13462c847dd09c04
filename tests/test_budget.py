"""The test suite's time budget (tests/budget.py) and the event log it reads
(amp_image.events): grouping, attribution and the table, pure logic.

No build and no VM: these feed synthetic items and synthetic event lines (written by
hand, or by amp_image.events.record in a pytest run of a made-up test file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import budget
import pytest
from budget import (
    BOOTED,
    CONFORMANCE,
    EXTRA_BUILDS,
    GROUPS,
    OFFLINE,
    OTHER,
    SRIOV,
    UNIT,
    VARIANTS,
    Phase,
    Tally,
    Window,
)

from amp_image import events

ROOT = Path(__file__).resolve().parent.parent


class FakeItem:
    """A test item as the plugin sees it: its function's file, markers, fixtures."""

    def __init__(self, path: str, markers: tuple[str, ...] = (),
                 fixtures: tuple[str, ...] = ()) -> None:
        self.path = ROOT / path
        self.function = None
        self.markers, self.fixturenames = markers, list(fixtures)
        self.nodeid = f"{path}::test"

    def get_closest_marker(self, name: str):
        return SimpleNamespace(name=name) if name in self.markers else None


# --- the event log -------------------------------------------------------------------

def test_record_does_nothing_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(events.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    events.record("boot", image="a.qcow2")
    assert list(tmp_path.iterdir()) == []


def test_record_appends_one_json_line_per_event(monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv(events.ENV, str(log))
    events.record("build", image="a.qcow2")
    events.record("boot", image="a.qcow2", boot="bootloader", path=tmp_path)
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first["kind"] == "build" and first["image"] == "a.qcow2"
    assert first["pid"] == os.getpid() and first["time"] <= second["time"]
    assert second == {**second, "kind": "boot", "boot": "bootloader", "path": str(tmp_path)}


def test_record_refuses_details_that_would_hide_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv(events.ENV, str(tmp_path / "events.jsonl"))
    with pytest.raises(ValueError, match="time"):
        events.record("boot", time=1.0)


def test_an_unwritable_log_is_told_not_fatal(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(events.ENV, str(tmp_path / "missing" / "events.jsonl"))
    events.record("boot")
    events.record("boot")
    assert capsys.readouterr().err.count("cannot record events") == 1


def test_concurrent_writers_never_interleave_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    code = ("from amp_image import events\n"
            "for i in range(200): events.record('boot', n=i, pad='x' * 300)\n")
    env = {**os.environ, events.ENV: str(log)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["kind"] == "boot" for line in lines)


# --- grouping ------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "markers", "fixtures", "group"), [
    ("tests/test_plan.py", (), (), UNIT),
    ("amp_image/elements/amphora-agent/tests/test_agent_prune.py", (), ("tmp_path",), UNIT),
    ("tests/test_image.py", ("image",), ("built_image",), OFFLINE),
    ("tests/test_publish.py", ("image",), ("built_image",), OFFLINE),
    ("tests/test_publish.py", (), ("images",), UNIT),
    ("tests/test_diff.py", (), ("built_image",), OFFLINE),
    ("tests/test_layer_builds.py", ("image",), (), EXTRA_BUILDS),
    ("tests/test_boot_variants.py", ("image", "boot"), (), VARIANTS),
    ("tests/test_plain_dib.py", ("image", "boot"), (), VARIANTS),
    ("tests/test_boot.py", ("boot",), ("amphora",), BOOTED),
    ("amp_image/verify/checks/test_amphora.py", ("boot",), ("amphora_host",), BOOTED),
    ("amp_image/verify/checks/test_sriov.py", ("boot",), ("amphora",), SRIOV),
    ("tests/test_conformance.py", ("conformance",), ("built_image",), CONFORMANCE),
    # A file the table does not name: unit and lint if it neither builds nor boots.
    ("tests/test_something_new.py", (), ("tmp_path",), UNIT),
    ("tests/test_something_new.py", ("image",), (), OTHER),
    ("scripts/test_elsewhere.py", (), (), OTHER),
])
def test_item_group(path, markers, fixtures, group):
    assert budget.item_group(FakeItem(path, markers, fixtures)) == group


@pytest.mark.parametrize(("markers", "fixtures", "heavy"), [
    ((), ("tmp_path", "monkeypatch"), False),
    (("image",), (), True), (("boot",), (), True), (("conformance",), (), True),
    ((), ("built_image",), True), ((), ("amphora_image",), True),
    ((), ("amphora_record",), True), ((), ("amphora_host",), True),
])
def test_builds_or_boots(markers, fixtures, heavy):
    assert budget.builds_or_boots(FakeItem("tests/test_x.py", markers, fixtures)) is heavy


def test_a_check_counts_where_it_is_written_not_where_it_is_collected():
    """tests/test_boot.py collects the checks by a star import: each counts for the file
    its function is written in."""
    from amp_image.verify.checks import test_sriov

    item = FakeItem("tests/test_boot.py", ("boot",), ("amphora",))
    item.function = test_sriov.test_plug_sriov_vip
    assert budget.defined_in(item) == "amp_image/verify/checks/test_sriov.py"
    assert budget.item_group(item) == SRIOV


def test_every_file_the_table_names_exists():
    """A renamed test file must not fall out of its group unnoticed."""
    named = [pattern for pattern in budget.TABLE if not any(c in pattern for c in "*?[")]
    assert [p for p in named if not (ROOT / p).is_file()] == []
    for pattern in (p for p in budget.TABLE if p not in named):
        assert list(ROOT.glob(pattern)), pattern


# --- attribution and the table -------------------------------------------------------

PHASES = [Phase("set-up", 0.0, 10.0), Phase("wheel", 10.0, 40.0),
          Phase("default build", 40.0, 400.0), Phase("publish", 400.0, 420.0)]
WINDOWS = [Window(500.0, 510.0, UNIT), Window(510.0, 900.0, EXTRA_BUILDS),
           Window(900.0, 1500.0, VARIANTS), Window(1500.0, 2000.0, BOOTED),
           Window(2000.0, 2100.0, SRIOV)]
# Synthetic events, as amp_image.events writes them.
EVENTS = [
    {"kind": "build", "time": 41.0, "pid": 1, "image": "amphora-x64-haproxy.qcow2"},
    {"kind": "build", "time": 520.0, "pid": 2}, {"kind": "build", "time": 700.0, "pid": 3},
    {"kind": "build", "time": 901.0, "pid": 4}, {"kind": "boot", "time": 1200.0, "pid": 5},
    {"kind": "boot", "time": 1200.5, "pid": 5, "boot": "direct"},
    {"kind": "boot", "time": 1501.0, "pid": 6, "boot": "bootloader"},
    {"kind": "boot", "time": 450.0, "pid": 7},       # between the phases and the tests
    {"kind": "boot", "pid": 8},                      # no time at all
]


def test_events_count_for_the_phase_or_test_running_then():
    counts = budget.attribute(EVENTS, PHASES, WINDOWS)
    assert counts["default build"] == {"build": 1}
    assert counts[EXTRA_BUILDS] == {"build": 2}
    assert counts[VARIANTS] == {"build": 1, "boot": 2}
    assert counts[BOOTED] == {"boot": 1}
    assert counts[OTHER] == {"boot": 2}
    assert SRIOV not in counts and UNIT not in counts


def _tally() -> Tally:
    tally = Tally(windows=WINDOWS)
    tally.tests.update({UNIT: 500, EXTRA_BUILDS: 6, VARIANTS: 5, BOOTED: 40, SRIOV: 13})
    tally.seconds.update({UNIT: 10.0, EXTRA_BUILDS: 390.0, VARIANTS: 600.0, BOOTED: 500.0,
                          SRIOV: 100.0})
    tally.deselected[OFFLINE] = 3
    return tally


def test_rows_list_the_phases_then_every_group_then_other():
    rows = budget.make_rows(PHASES, _tally(), budget.attribute(EVENTS, PHASES, WINDOWS))
    assert [r.name for r in rows] == [p.name for p in PHASES] + list(GROUPS) + [OTHER]
    by = {r.name: r for r in rows}
    assert (by["default build"].seconds, by["default build"].builds) == (360.0, 1)
    assert by["default build"].tests is None
    assert (by[VARIANTS].tests, by[VARIANTS].builds, by[VARIANTS].boots) == (5, 1, 2)
    assert (by[OFFLINE].tests, by[OFFLINE].deselected, by[OFFLINE].seconds) == (0, 3, 0.0)
    assert by[OTHER].boots == 2
    total = budget.total(rows)
    assert (total.tests, total.builds, total.boots) == (564, 4, 5)
    assert total.seconds == pytest.approx(420.0 + 1600.0)


def test_other_appears_only_when_something_fell_there():
    rows = budget.make_rows(PHASES, _tally(), budget.attribute(EVENTS[:3], PHASES, WINDOWS))
    assert OTHER not in [r.name for r in rows]


def test_table_has_a_line_per_row_and_the_total():
    phases = [*PHASES[:1], Phase("wheel", skipped="--quick")]
    rows = budget.make_rows(phases, _tally(), budget.attribute(EVENTS, phases, WINDOWS))
    lines = budget.format_table(rows)
    assert lines[0].split() == ["tests", "deselected", "builds", "boots", "seconds"]
    assert lines[1].split() == ["set-up", "-", "-", "0", "0", "10.0"]
    assert lines[2].split() == ["wheel", "-", "-", "0", "0", "skipped", "(--quick)"]
    assert lines[3].split() == ["unit", "and", "lint", "500", "0", "0", "0", "10.0"]
    assert set(lines[-2]) == {"-"}
    # The default build's event falls outside the phases given: "other".
    assert lines[-1].split()[:5] == ["total", "564", "3", "4", "5"]


def test_unreadable_lines_are_counted_not_taken(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text('{"kind": "boot", "time": 1.0}\nnot json\n[1]\n\n')
    assert budget.read_jsonl(log) == ([{"kind": "boot", "time": 1.0}], 2)
    assert budget.read_jsonl(tmp_path / "none.jsonl") == ([], 0)


# --- the plugin in a pytest run --------------------------------------------------------

MADE_UP_TESTS = textwrap.dedent("""\
    import time
    import pytest
    from amp_image import events

    def test_builds():
        events.record("build", image="made-up.qcow2")

    def test_boots_twice():
        events.record("boot", boot="bootloader")
        events.record("boot", boot="direct")

    @pytest.mark.image
    def test_deselected():
        pass
    """)


def test_the_plugin_writes_the_budget_of_a_run(tmp_path):
    """A pytest run of a made-up test file (outside the table: "other") with the plugin,
    after two phases of scripts/test, one of them with a build."""
    (tmp_path / "test_made_up.py").write_text(MADE_UP_TESTS)
    log, phases, target = (tmp_path / "events.jsonl", tmp_path / "phases.jsonl",
                           tmp_path / "out" / "budget.json")
    phases.write_text('{"phase": "set-up", "start": 1.0, "end": 3.5}\n'
                      '{"phase": "default build", "start": 4.0, "end": 9.0}\n'
                      '{"phase": "publish", "skipped": "AMP_TEST_IMAGE"}\n')
    log.write_text('{"kind": "build", "time": 5.0, "pid": 1}\n')
    env = {**os.environ, "AMP_IMAGE_EVENTS": str(log), "AMP_TEST_PHASES": str(phases),
           "AMP_TEST_BUDGET": str(target),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "budget", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-m", "not image", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads(target.read_text())
    rows = {r["name"]: r for r in written["rows"]}
    assert (rows["set-up"]["seconds"], rows["set-up"]["builds"]) == (2.5, 0)
    assert (rows["default build"]["seconds"], rows["default build"]["builds"]) == (5.0, 1)
    assert rows["publish"]["skipped"] == "AMP_TEST_IMAGE"
    assert (rows[OTHER]["tests"], rows[OTHER]["deselected"]) == (2, 1)
    assert (rows[OTHER]["builds"], rows[OTHER]["boots"]) == (1, 2)
    assert rows[OTHER]["seconds"] > 0
    assert all(rows[g]["tests"] == 0 for g in GROUPS)
    assert written["total"]["builds"] == 2 and written["total"]["boots"] == 2
    assert "time budget" in result.stdout
    assert "default build" in result.stdout and f"written to {target}" in result.stdout
