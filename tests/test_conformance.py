"""Octavia conformance of the default image, run as an operator runs it:
``amp-image test --conformance IMAGE`` (Octavia's own driver, real traffic; see
amp_image/verify/conformance/).  The per-scenario report lands in build/ for the docs.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import AMP_IMAGE, ROOT

pytestmark = pytest.mark.conformance

# Scenarios in amp_image/verify/conformance/test_*.py (parametrized ones counted
# once per case); the suite must have run all of them, not merely passed.
# ACTIVE_STANDBY (4 more, --active-standby) is on demand: see docs/conformance.md.
EXPECTED_SCENARIOS = 33


def test_every_conformance_scenario_passes(built_image, tmp_path):
    report = tmp_path / "conformance.json"
    result = subprocess.run([AMP_IMAGE, "test", "--conformance", str(built_image),
                             "--report", str(report)], stdin=subprocess.DEVNULL)
    assert report.is_file(), f"no report (exit {result.returncode})"
    keep = ROOT / "build" / "conformance-report.json"
    shutil.copyfile(report, keep)
    scenarios = json.loads(report.read_text())["scenarios"]
    failed = [s["scenario"] for s in scenarios if s["outcome"] != "passed"]
    assert not failed, f"failed scenarios: {failed} (details above)"
    assert len(scenarios) == EXPECTED_SCENARIOS
    assert result.returncode == 0


def test_conformance_names_the_fix_when_octavia_cannot_be_installed(built_image):
    result = subprocess.run([AMP_IMAGE, "test", "--conformance", str(built_image),
                             "--octavia-version", "19.99.0"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("amp-image: error: cannot install octavia 19.99.0"), lines
    assert "--octavia-version" in lines[-1]
