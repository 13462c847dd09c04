"""Octavia conformance of the default image, run as an operator runs it:
``amp-image test --conformance IMAGE`` (Octavia's own driver, real traffic; see
amp_image/verify/conformance/).  The per-scenario report lands in build/ for the docs.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, ROOT

from amp_image.verify.run import TestRequest, conformance_args

pytestmark = pytest.mark.conformance


def default_modules() -> list[Path]:
    """The modules amp-image test --conformance runs without --active-standby, as
    verify/run.py names them to pytest (ACTIVE_STANDBY is on demand:
    docs/conformance.md)."""
    image = Path("amphora.qcow2")
    return [Path(arg) for arg in conformance_args(TestRequest(image=str(image)), image)
            if arg.endswith(".py")]


def scenarios_in(module: Path) -> int:
    """The scenarios a module defines: each test function once per parametrized case."""
    count = 0
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            cases = 1
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and \
                        ast.unparse(decorator.func) == "pytest.mark.parametrize":
                    values = decorator.args[1]
                    if not isinstance(values, (ast.List, ast.Tuple)):
                        raise ValueError(
                            f"{module.name}: {node.name}'s parametrize values are "
                            f"{ast.unparse(values)!r}; write them as a literal list so the "
                            "suite can count the scenarios")
                    cases *= len(values.elts)
            count += cases
    return count


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
    # Every scenario ran, none was left out or skipped.
    assert len(scenarios) == sum(scenarios_in(module) for module in default_modules())
    assert result.returncode == 0

    # The import audit of the same run: the prune list is still right for this agent.
    verdict = json.loads(audit.read_text())
    # Both VMs: the SR-IOV module's, and the one the other modules share.
    assert len(verdict["listings"]) == 2, verdict["listings"]
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
