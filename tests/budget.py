"""The test suite's time budget: seconds, image builds and VM boots, per group of tests.

A pytest plugin (registered in conftest.py), on when ``AMP_TEST_BUDGET`` names the JSON
file to write (scripts/test sets it: build/test-budget.json).  Each test item belongs to
a group by the file its test function is written in (``TABLE``; booted checks written
in amp_image/verify/checks/ and collected through tests/test_boot.py count by where they
are written).  A group's seconds are its items' setup + call + teardown.  The builds
and boots are the events amp-image records in the file ``AMP_IMAGE_EVENTS`` names
(``amp_image.events``), each counted for the test running when it happened, by the
items' start and end times (an event of a subprocess, e.g. ``amp-image test``, counts
for the test that started it).  scripts/test's own phases (set-up, the wheel, the
default build, its publication) come from the JSON lines in ``AMP_TEST_PHASES``
(``{"phase": NAME, "start": EPOCH, "end": EPOCH}`` or ``{"phase": NAME, "skipped":
WHY}``), and events in a phase's time count for that phase.  A test that builds or
boots in a file the table does not name, or an event outside every phase and test, goes
to "other": nothing is dropped.  At the end the table is printed and written as JSON.

``builds_or_boots`` says which tests need a built image or a VM: what
``scripts/test --quick`` deselects (conftest.py).
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUDGET_ENV = "AMP_TEST_BUDGET"
PHASES_ENV = "AMP_TEST_PHASES"
EVENTS_ENV = "AMP_IMAGE_EVENTS"  # amp_image.events.ENV

UNIT = "unit and lint"
OFFLINE = "offline image"
EXTRA_BUILDS = "extra builds"
FAULTS = "fault injection"
VARIANTS = "variants"
BOOTED = "booted checks"
SRIOV = "SR-IOV"
CONFORMANCE = "conformance"
CLOUD = "real cloud"
OTHER = "other"
GROUPS = (UNIT, OFFLINE, EXTRA_BUILDS, FAULTS, VARIANTS, BOOTED, SRIOV, CONFORMANCE, CLOUD)

# Where a test function is written (relative to the checkout; fnmatch patterns, first
# match wins) -> its group; or, for a file holding both kinds, (the group of its tests
# that build or boot, the group of the rest).
TABLE: dict[str, str | tuple[str, str]] = {
    # The built default image, read offline (loop mount) and published.
    "tests/test_image.py": OFFLINE,
    "tests/test_publish.py": (OFFLINE, UNIT),
    "tests/test_diff.py": (OFFLINE, UNIT),
    # Real builds of their own.
    "tests/test_build_failures.py": EXTRA_BUILDS,
    "tests/test_layer_builds.py": EXTRA_BUILDS,
    "tests/test_faults.py": FAULTS,
    # Other images, each built and booted with `amp-image test`.
    "tests/test_boot_variants.py": VARIANTS,
    # amp-image's elements built by a plain disk-image-create, then booted.
    "tests/test_plain_dib.py": VARIANTS,
    # The default image booted once for the session: the checks, then the SR-IOV
    # scenario in the same VM.
    "tests/test_boot.py": BOOTED,
    "amp_image/verify/checks/test_amphora.py": BOOTED,
    "amp_image/verify/checks/test_amphora_access.py": BOOTED,
    "amp_image/verify/checks/test_sriov.py": SRIOV,
    # `amp-image test --conformance` (its scenarios run in a pytest of their own).
    "tests/test_conformance.py": CONFORMANCE,
    "amp_image/verify/conformance/test_*.py": CONFORMANCE,
    # amp-image's cloud commands against the real test cloud (scripts/testcloud).
    "tests/test_cloud_*.py": CLOUD,
    # Everything else: unit tests, the elements' own beside them, and lint, which
    # neither build nor boot (what `scripts/test --quick` runs).  A test elsewhere that
    # builds or boots counts as "other" until it has a line above.
    "amp_image/elements/*/tests/test_*.py": (OTHER, UNIT),
    "tests/test_*.py": (OTHER, UNIT),
}

# What makes a test need a built image or a VM: a marker (pyproject.toml), or a fixture
# that is the built image or the booted amphora (conftest.py, the checks' plugin).
HEAVY_MARKERS = ("image", "boot", "conformance")
IMAGE_FIXTURES = frozenset({"built_image", "amphora_image", "amphora_record", "amphora",
                            "amphora_host", "image_record"})


def needs_cloud(item) -> bool:
    """A test of the real test cloud: no build, no VM, but a minute to start the cloud
    (the light lane runs it; --quick leaves it out)."""
    return bool(item.get_closest_marker("cloud"))


def builds_or_boots(item) -> bool:
    return (any(item.get_closest_marker(m) for m in HEAVY_MARKERS)
            or bool(IMAGE_FIXTURES & set(getattr(item, "fixturenames", ()))))


def defined_in(item) -> str:
    """The file the item's test function is written in, relative to the checkout."""
    path = None
    function = getattr(item, "function", None)
    if function is not None:
        try:
            path = Path(inspect.getfile(inspect.unwrap(function)))
        except TypeError:
            path = None
    path = (path or Path(item.path)).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def group_of(path: str, heavy: bool) -> str:
    for pattern, group in TABLE.items():
        if fnmatch.fnmatchcase(path, pattern):
            if isinstance(group, tuple):
                return group[0] if heavy else group[1]
            return group
    return OTHER


def item_group(item) -> str:
    return group_of(defined_in(item), builds_or_boots(item))


@dataclass
class Window:
    """One test item's run, setup to teardown (time.time())."""

    start: float
    end: float
    group: str


@dataclass
class Phase:
    """One of scripts/test's own steps before pytest."""

    name: str
    start: float | None = None
    end: float | None = None
    skipped: str = ""

    @property
    def seconds(self) -> float:
        return 0.0 if self.start is None or self.end is None else self.end - self.start


@dataclass
class Row:
    name: str
    seconds: float = 0.0
    tests: int | None = None        # None: a phase of scripts/test, not tests
    deselected: int | None = None
    builds: int = 0
    boots: int = 0
    skipped: str = ""


@dataclass
class Tally:
    """What the plugin gathers while the tests run."""

    tests: Counter = field(default_factory=Counter)        # group -> items run
    deselected: Counter = field(default_factory=Counter)   # group -> items deselected
    seconds: Counter = field(default_factory=Counter)      # group -> setup+call+teardown
    windows: list[Window] = field(default_factory=list)


def read_jsonl(path: Path | None) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, and how many lines were not one."""
    if path is None or not path.is_file():
        return [], 0
    found, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(value, dict):
            found.append(value)
        else:
            bad += 1
    return found, bad


def read_phases(lines: list[dict]) -> list[Phase]:
    return [Phase(str(p["phase"]), p.get("start"), p.get("end"), str(p.get("skipped", "")))
            for p in lines if "phase" in p]


def attribute(events: list[dict], phases: list[Phase],
              windows: list[Window]) -> dict[str, Counter]:
    """Row name -> Counter of event kinds: each event counts for the phase of
    scripts/test, or else the test item, running at its time; else for "other"."""
    counts: dict[str, Counter] = {}
    for event in events:
        when = event.get("time")
        owner = OTHER
        if isinstance(when, int | float):
            owner = next((p.name for p in phases if p.start is not None and p.end is not None
                          and p.start <= when <= p.end),
                         next((w.group for w in windows if w.start <= when <= w.end), OTHER))
        counts.setdefault(owner, Counter())[str(event.get("kind"))] += 1
    return counts


def make_rows(phases: list[Phase], tally: Tally, counts: dict[str, Counter]) -> list[Row]:
    """The phases in their order, every group (run or not), then "other" if anything
    fell there."""
    rows = [Row(p.name, p.seconds, builds=counts.get(p.name, Counter())["build"],
                boots=counts.get(p.name, Counter())["boot"], skipped=p.skipped)
            for p in phases]
    for group in (*GROUPS, OTHER):
        events = counts.get(group, Counter())
        if group == OTHER and not (tally.tests[group] or tally.deselected[group] or events):
            continue
        rows.append(Row(group, tally.seconds[group], tally.tests[group],
                        tally.deselected[group], events["build"], events["boot"]))
    return rows


def total(rows: list[Row]) -> Row:
    return Row("total", sum(r.seconds for r in rows), sum(r.tests or 0 for r in rows),
               sum(r.deselected or 0 for r in rows), sum(r.builds for r in rows),
               sum(r.boots for r in rows))


def format_table(rows: list[Row]) -> list[str]:
    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    def line(name, tests, deselected, builds, boots, seconds) -> str:
        return f"{name:<16} {tests:>6} {deselected:>10} {builds:>7} {boots:>6} {seconds:>10}"

    lines = [line("", "tests", "deselected", "builds", "boots", "seconds")]
    for row in [*rows, total(rows)]:
        seconds = f"skipped ({row.skipped})" if row.skipped else f"{row.seconds:.1f}"
        if row.name == "total":
            lines.append("-" * len(lines[0]))
        lines.append(line(row.name, count(row.tests), count(row.deselected), row.builds,
                          row.boots, seconds).rstrip())
    return lines


def budget(phases: list[Phase], tally: Tally, events: list[dict]) -> dict:
    """The budget as written to JSON: rows, total, and how the events were counted."""
    counts = attribute(events, phases, tally.windows)
    rows = make_rows(phases, tally, counts)
    return {"rows": [asdict(r) for r in rows], "total": asdict(total(rows)),
            "events": {name: dict(kinds) for name, kinds in counts.items()}}


class BudgetPlugin:
    def __init__(self, target: Path, phases: Path | None, events: Path | None) -> None:
        self.target, self.phases, self.events = target, phases, events
        self.tally = Tally()
        self.groups: dict[str, str] = {}
        self.started = time.time()

    def pytest_deselected(self, items) -> None:
        for item in items:
            self.tally.deselected[item_group(item)] += 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        group = self.groups[item.nodeid] = item_group(item)
        start = time.time()
        try:
            yield
        finally:
            self.tally.windows.append(Window(start, time.time(), group))
            self.tally.tests[group] += 1

    def pytest_runtest_logreport(self, report) -> None:
        self.tally.seconds[self.groups.get(report.nodeid, OTHER)] += report.duration

    def pytest_terminal_summary(self, terminalreporter) -> None:
        phase_lines, bad_phases = read_jsonl(self.phases)
        phases = read_phases(phase_lines)
        events, bad_events = read_jsonl(self.events)
        result = budget(phases, self.tally, events)
        starts = [p.start for p in phases if p.start is not None]
        result["wall_s"] = time.time() - min([*starts, self.started])
        result["events_file"] = str(self.events) if self.events else None
        result["unreadable_lines"] = {"phases": bad_phases, "events": bad_events}
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.target.write_text(json.dumps(result, indent=2) + "\n")

        rows = [Row(**r) for r in result["rows"]]
        terminalreporter.section("time budget")
        for text in format_table(rows):
            terminalreporter.write_line(text)
        terminalreporter.write_line(
            f"wall clock {result['wall_s']:.1f} s (the total plus pytest's start-up and "
            f"collection); events from {self.events or 'nowhere: AMP_IMAGE_EVENTS unset'}")
        if bad_phases or bad_events:
            terminalreporter.write_line(f"unreadable lines: {bad_phases} of phases, "
                                        f"{bad_events} of events (not counted)")
        terminalreporter.write_line(f"written to {self.target}")


def pytest_configure(config: pytest.Config) -> None:
    """On when AMP_TEST_BUDGET names the JSON to write.  The variables are taken out of
    the environment, so a pytest a test runs never writes over this run's budget."""
    target = os.environ.pop(BUDGET_ENV, "")
    phases = os.environ.pop(PHASES_ENV, "")
    if not target:
        return
    events = os.environ.get(EVENTS_ENV)
    config.pluginmanager.register(
        BudgetPlugin(Path(target), Path(phases) if phases else None,
                     Path(events) if events else None), "amp-image-budget")
