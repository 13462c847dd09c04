"""The suite's lanes (tests/lanes.py): which lane runs a test, and the merged budget.

No build and no VM: synthetic items, hand-written phase, event and lane budget files,
and one pytest run of a made-up test file with a lane chosen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lanes
import pytest
from budget import BOOTED, CONFORMANCE, EXTRA_BUILDS, GROUPS, OTHER, UNIT, VARIANTS
from test_budget import FakeItem

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("path", "markers", "fixtures", "lane"), [
    ("tests/test_plan.py", (), ("tmp_path",), lanes.LIGHT),
    ("amp_image/elements/amphora-agent/tests/test_agent_prune.py", (), (), lanes.LIGHT),
    ("tests/test_boot.py", ("boot",), ("amphora",), lanes.VM),
    ("amp_image/verify/checks/test_amphora.py", ("boot",), ("amphora_host",), lanes.VM),
    ("amp_image/verify/checks/test_sriov.py", ("boot",), ("amphora",), lanes.VM),
    ("tests/test_conformance.py", ("conformance",), ("built_image",), lanes.VM),
    ("tests/test_image.py", ("image",), ("built_image",), lanes.BUILD),
    ("tests/test_faults.py", ("image",), (), lanes.BUILD),
    # Variants boot too, but build first: the build lane, beside the vm lane's VM.
    ("tests/test_boot_variants.py", ("image", "boot"), (), lanes.BUILD),
    ("tests/test_something_new.py", ("image",), (), lanes.BUILD),
])
def test_lane_of(path, markers, fixtures, lane):
    assert lanes.lane_of(FakeItem(path, markers, fixtures)) == lane


def test_split_keeps_the_order_and_refuses_an_unknown_lane():
    items = [FakeItem("tests/test_plan.py"), FakeItem("tests/test_boot.py", ("boot",)),
             FakeItem("tests/test_cli.py"), FakeItem("tests/test_faults.py", ("image",))]
    mine, others = lanes.split(items, lanes.LIGHT)
    assert mine == [items[0], items[2]] and others == [items[1], items[3]]
    assert lanes.split(items, lanes.VM)[0] == [items[1]]
    with pytest.raises(ValueError, match="AMP_TEST_LANE=fast is not one of light, vm, build"):
        lanes.split(items, "fast")


def _row(name, seconds, tests, builds=0, boots=0, deselected=0):
    return {"name": name, "seconds": seconds, "tests": tests, "deselected": deselected,
            "builds": builds, "boots": boots, "skipped": ""}


def test_rows_sum_over_lanes_and_other_only_when_used():
    light = [_row(UNIT, 100.0, 900, deselected=2), _row(OTHER, 0.0, 0)]
    build = [_row(UNIT, 1.0, 3), _row(EXTRA_BUILDS, 700.0, 15, builds=12),
             _row(VARIANTS, 1200.0, 11, builds=3, boots=4)]
    vm = [_row(BOOTED, 250.0, 69, boots=1), _row(CONFORMANCE, 1500.0, 2, boots=2)]
    rows = {r.name: r for r in lanes.sum_rows([light, build, vm])}
    assert list(rows) == list(GROUPS)
    assert (rows[UNIT].tests, rows[UNIT].seconds, rows[UNIT].deselected) == (903, 101.0, 2)
    assert (rows[VARIANTS].builds, rows[VARIANTS].boots) == (3, 4)
    assert rows[CONFORMANCE].boots == 2 and rows[BOOTED].tests == 69
    with_other = lanes.sum_rows([[_row(OTHER, 5.0, 1, builds=1)]])
    assert with_other[-1].name == OTHER and with_other[-1].builds == 1


def _run_files(tmp_path: Path) -> tuple[Path, Path, dict[str, dict]]:
    phases, events = tmp_path / "phases.jsonl", tmp_path / "events.jsonl"
    phases.write_text('{"phase": "set-up", "start": 100.0, "end": 110.0}\n'
                      '{"phase": "default build", "start": 111.0, "end": 300.0}\n')
    events.write_text('{"kind": "build", "time": 200.0}\nnot json\n')
    lane_budgets = {
        lanes.LIGHT: {"rows": [_row(UNIT, 180.0, 950)], "wall_s": 190.0, "exit": 0},
        lanes.VM: {"rows": [_row(CONFORMANCE, 1500.0, 2, boots=2)], "wall_s": 1600.0,
                   "exit": 1},
    }
    return phases, events, lane_budgets


def test_merge_puts_the_phases_first_then_the_groups_with_each_lanes_clock(tmp_path):
    phases, events, lane_budgets = _run_files(tmp_path)
    result = lanes.merge(phases, events, lane_budgets, now=1900.0)
    rows = {r["name"]: r for r in result["rows"]}
    assert [r["name"] for r in result["rows"]][:2] == ["set-up", "default build"]
    assert (rows["default build"]["seconds"], rows["default build"]["builds"]) == (189.0, 1)
    assert rows[CONFORMANCE]["boots"] == 2 and rows[UNIT]["tests"] == 950
    assert result["total"]["seconds"] == 10.0 + 189.0 + 180.0 + 1500.0
    assert result["wall_s"] == 1800.0
    assert result["lanes"][lanes.VM] == {"wall_s": 1600.0, "exit": 1}
    assert result["unreadable_lines"] == {"events": 1}
    text = "\n".join(lanes.report(result))
    assert "lane vm: 1600.0 s, exit 1" in text and "wall clock 1800.0 s" in text


def test_merge_command_writes_the_json_and_tells_a_lane_that_wrote_none(tmp_path):
    phases, events, lane_budgets = _run_files(tmp_path)
    light = tmp_path / "light.json"
    light.write_text(json.dumps(lane_budgets[lanes.LIGHT]))
    out = tmp_path / "out" / "budget.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "lanes.py"), "--phases", str(phases),
         "--events", str(events), "--out", str(out), f"light={light}:0",
         f"vm={tmp_path / 'missing.json'}:2"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["lanes"] == {"light": {"wall_s": 190.0, "exit": 0},
                                "vm": {"wall_s": None, "exit": 2}}
    assert "lane vm: did not finish, exit 2" in result.stdout
    assert f"written to {out}" in result.stdout


MADE_UP_TESTS = textwrap.dedent("""\
    import pytest

    def test_light():
        pass

    @pytest.mark.boot
    def test_boots():
        pass

    @pytest.mark.image
    def test_builds():
        pass
    """)


@pytest.mark.parametrize(("lane", "expected"), [
    (lanes.LIGHT, ["test_light"]), (lanes.VM, []), (lanes.BUILD, ["test_boots", "test_builds"]),
])
def test_a_lane_runs_only_its_items_and_names_the_rest(tmp_path, lane, expected):
    """The suite's conftest.py as a plugin, on a made-up file outside the table: its
    boot test is "other", so the build lane's (the vm lane holds only the booted
    checks, SR-IOV and conformance)."""
    (tmp_path / "test_made_up.py").write_text(MADE_UP_TESTS)
    env = {**os.environ, "AMP_TEST_LANE": lane,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    env.pop("AMP_TEST_QUICK", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    passed = sorted(line.split("::")[1].split()[0] for line in result.stdout.splitlines()
                    if " PASSED" in line)
    assert passed == expected, result.stdout + result.stderr
    assert result.returncode == (0 if expected else 5), result.stdout
    assert f"lane {lane}: {len(expected)} items here, {3 - len(expected)} in the other " \
           "lanes" in result.stdout
