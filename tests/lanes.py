"""The suite's lanes: scripts/test runs its tests in three pytest processes, so that
both cores of a CI machine work.

- ``light``: every test that neither builds nor boots (what ``--quick`` runs), beside
  the wheel and the default build;
- ``vm``: the default image booted: the booted checks, the SR-IOV scenario and the
  conformance run, each a QEMU (TCG) process on about one core;
- ``build``: the other heavy tests, mostly real builds on the other core: the offline
  image, the extra builds, fault injection and the variants.

scripts/test starts ``light`` after set-up, and ``vm`` and ``build`` together once the
default image is built.  A lane is chosen with ``AMP_TEST_LANE``; the items of the
other lanes are left out of its collection (named in its header, not counted as
deselected: they run in their own lane).  Each lane writes its own time budget
(``budget.py``, with its own ``AMP_IMAGE_EVENTS``), and ``merge`` sums them under
scripts/test's phases into build/test-budget.json, with each lane's wall clock and the
run's.  A group's seconds are its tests' own, so the summed seconds exceed the wall
clock by what the lanes overlapped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from budget import (
    BOOTED,
    CONFORMANCE,
    GROUPS,
    OTHER,
    SRIOV,
    Row,
    Tally,
    attribute,
    builds_or_boots,
    format_table,
    item_group,
    make_rows,
    read_jsonl,
    read_phases,
    total,
)

LANE_ENV = "AMP_TEST_LANE"
LIGHT, VM, BUILD = "light", "vm", "build"
LANES = (LIGHT, VM, BUILD)
VM_GROUPS = frozenset({BOOTED, SRIOV, CONFORMANCE})


def lane_of(item) -> str:
    if not builds_or_boots(item):
        return LIGHT
    return VM if item_group(item) in VM_GROUPS else BUILD


def split(items: list, lane: str) -> tuple[list, list]:
    """The items of lane, and the others (in their order)."""
    if lane not in LANES:
        raise ValueError(f"{LANE_ENV}={lane} is not one of {', '.join(LANES)}")
    mine = [item for item in items if lane_of(item) == lane]
    return mine, [item for item in items if lane_of(item) != lane]


def sum_rows(lane_rows: list[list[dict]]) -> list[Row]:
    """Every group's row summed over the lanes (a group may have tests in two lanes:
    a file's helpers in light, its heavy tests in build); "other" only if anything
    fell there."""
    summed = {name: Row(name, tests=0, deselected=0) for name in (*GROUPS, OTHER)}
    for rows in lane_rows:
        for row in rows:
            if row["name"] not in summed:
                continue
            into = summed[row["name"]]
            into.seconds += row["seconds"]
            into.tests += row["tests"] or 0
            into.deselected += row["deselected"] or 0
            into.builds += row["builds"]
            into.boots += row["boots"]
    other = summed[OTHER]
    if not (other.tests or other.deselected or other.builds or other.boots):
        del summed[OTHER]
    return list(summed.values())


def merge(phases_file: Path, events_file: Path, lanes: dict[str, dict],
          now: float | None = None) -> dict:
    """The run's budget: scripts/test's phases (their events from events_file), then
    every group summed over the lanes' budgets; each lane's wall clock and exit."""
    phases = read_phases(read_jsonl(phases_file)[0])
    events, bad_events = read_jsonl(events_file)
    phase_rows = make_rows(phases, Tally(), attribute(events, phases, []))[:len(phases)]
    rows = phase_rows + sum_rows([lane.get("rows", []) for lane in lanes.values()])
    starts = [p.start for p in phases if p.start is not None]
    now = time.time() if now is None else now
    return {
        "rows": [asdict(r) for r in rows],
        "total": asdict(total(rows)),
        "wall_s": now - min(starts, default=now),
        "lanes": {name: {"wall_s": lane.get("wall_s"), "exit": lane.get("exit")}
                  for name, lane in lanes.items()},
        "unreadable_lines": {"events": bad_events},
    }


def report(result: dict) -> list[str]:
    rows = [Row(**{f.name: r[f.name] for f in fields(Row)}) for r in result["rows"]]
    lines = format_table(rows)
    for name, lane in result["lanes"].items():
        wall = "did not finish" if lane["wall_s"] is None else f"{lane['wall_s']:.1f} s"
        lines.append(f"lane {name}: {wall}, exit {lane['exit']}")
    lines.append(f"wall clock {result['wall_s']:.1f} s: the lanes ran side by side, so the "
                 "total of the groups' seconds exceeds it")
    return lines


def read_lane(path: Path, exit_code: int) -> dict:
    """A lane's budget JSON, with its pytest's exit; an empty budget if it wrote none
    (it failed before its end: the exit says so)."""
    try:
        lane = json.loads(path.read_text())
    except (OSError, ValueError):
        lane = {"rows": [], "wall_s": None}
    return {**lane, "exit": exit_code}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Merge the lanes' time budgets.")
    parser.add_argument("--phases", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("lane", nargs="+", help="NAME=BUDGET_JSON:EXIT")
    args = parser.parse_args(argv)
    lanes = {}
    for spec in args.lane:
        name, _, rest = spec.partition("=")
        path, _, exit_code = rest.rpartition(":")
        lanes[name] = read_lane(Path(path), int(exit_code))
    result = merge(args.phases, args.events, lanes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("==================== time budget (all lanes) ====================")
    print("\n".join(report(result)))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
