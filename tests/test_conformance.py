"""Octavia conformance of the default image, run as an operator runs it:
``amp-image test --conformance IMAGE`` (Octavia's own driver, real traffic; see
amp_image/verify/conformance/).  The per-scenario report lands in build/ for the docs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import AMP_IMAGE, ROOT

pytestmark = pytest.mark.conformance

# Scenarios in amp_image/verify/conformance/test_*.py (parametrized ones counted
# once per case); the suite must have run all of them, not merely passed.
# ACTIVE_STANDBY (4 more, --active-standby) is on demand: see docs/conformance.md.
EXPECTED_SCENARIOS = 33
PRUNE_ENV = ROOT / "amp_image/elements/amphora-agent/environment.d/20-amphora-agent-prune.bash"


def pruned_by_default() -> set[str]:
    """DIB_AMP_AGENT_PRUNE as the element's environment.d sets it for a default build."""
    out = subprocess.run(["bash", "-c", f'source "{PRUNE_ENV}"; echo $DIB_AMP_AGENT_PRUNE'],
                         env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


def test_every_conformance_scenario_passes(built_image, tmp_path):
    report = tmp_path / "conformance.json"
    audit = ROOT / "build" / "import-audit.json"
    audit.unlink(missing_ok=True)
    result = subprocess.run([AMP_IMAGE, "test", "--conformance", str(built_image),
                             "--report", str(report), "--import-audit", str(audit)],
                            stdin=subprocess.DEVNULL)
    assert report.is_file(), f"no report (exit {result.returncode})"
    keep = ROOT / "build" / "conformance-report.json"
    shutil.copyfile(report, keep)
    scenarios = json.loads(report.read_text())["scenarios"]
    failed = [s["scenario"] for s in scenarios if s["outcome"] != "passed"]
    assert not failed, f"failed scenarios: {failed} (details above)"
    assert len(scenarios) == EXPECTED_SCENARIOS
    assert result.returncode == 0

    # The import audit of the same run: the prune list is still right for this agent.
    verdict = json.loads(audit.read_text())
    assert len(verdict["listings"]) == 2, verdict["listings"]  # both scenario modules' VMs
    back = pruned_by_default() & set(verdict["distributions"])
    assert not back, f"pruned distributions back in the agent's venv: {sorted(back)}"
    assert verdict["never_read"] == [], (
        "distributions no scenario read: add them to DIB_AMP_AGENT_PRUNE in "
        f"{PRUNE_ENV.relative_to(ROOT)}: {verdict['never_read']}")


def test_conformance_names_the_fix_when_octavia_cannot_be_installed(built_image):
    result = subprocess.run([AMP_IMAGE, "test", "--conformance", str(built_image),
                             "--octavia-version", "19.99.0"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("amp-image: error: cannot install octavia 19.99.0"), lines
    assert "--octavia-version" in lines[-1]
