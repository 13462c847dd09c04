"""The release workflow: actionlint passes, and it builds, tests and publishes each series
and architecture. Its shell steps are run, per matrix cell, with the tools they call
replaced by ones that log their arguments; amp-image's arguments are then read by
amp-image's own command line."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from amp_image.builder import constraints
from amp_image.cli import main
from amp_image.cli import publish as publish_cli
from amp_image.cli import test as test_cli

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
# Logs its name and arguments as a JSON line; `amp-image build -o FILE` also makes FILE
# and `amp-image publish --dest DIR` DIR (the steps after them read them), and
# `gh release view` finds no release.
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps([Path(sys.argv[0]).name, *args]) + "\\n")
if args[:1] == ["build"]:
    output = Path(args[args.index("-o") + 1])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(b"")
if args[:1] == ["publish"]:
    Path(args[args.index("--dest") + 1]).mkdir(parents=True, exist_ok=True)
sys.exit(1 if args[:2] == ["release", "view"] else 0)
"""


def test_actionlint():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert files
    result = subprocess.run([str(BIN / "actionlint"), "-no-color", *files],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _workflow() -> dict:
    workflow = yaml.safe_load(RELEASE.read_text())
    # PyYAML reads the bare key 'on' as True.
    workflow["on"] = workflow.get("on", workflow.pop(True, None))
    return workflow


def _expand(value: str, context: dict[str, str]) -> str:
    """The ${{ EXPRESSION }}s of value that context gives a value."""
    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: context.get(m[1], m[0]), value)


def _run_steps(job: dict, context: dict[str, str], work: Path) -> list[list[str]]:
    """Each step's shell script of job, in order, in work, with every tool it calls
    replaced by STAND_IN: the calls it made."""
    tools = work / "tools"
    tools.mkdir()
    for name in ("apt-get", "sha256sum", "gh", "setup-host", "amp-image"):
        (tools / name).write_text(STAND_IN)
        (tools / name).chmod(0o755)
    (work / "scripts").mkdir()
    (work / "scripts" / "setup-host").symlink_to(tools / "setup-host")
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "amp-image").symlink_to(tools / "amp-image")
    calls = work / "calls.jsonl"
    calls.touch()
    job_env = {k: _expand(str(v), context) for k, v in job.get("env", {}).items()}
    for step in job["steps"]:
        if "run" not in step or step.get("if") == "failure()":
            continue
        env = {"PATH": f"{tools}:{os.environ['PATH']}", "CALLS": str(calls),
               "GITHUB_REPOSITORY": "o/amp-image", **job_env,
               **{k: _expand(str(v), context) for k, v in step.get("env", {}).items()}}
        result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, (step.get("name"), result.stderr)
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_release_runs_on_version_tags_for_every_vendored_series_and_arch():
    workflow = _workflow()
    assert workflow["on"]["push"]["tags"] == ["v*"]
    job = workflow["jobs"]["image"]
    matrix = job["strategy"]["matrix"]
    assert matrix["series"] == [s.name for s in constraints.SERIES if s.constraints]
    assert matrix["arch"] == ["amd64", "arm64"]
    # Every cell must pass its boot test to be published, arm64's too.
    assert "continue-on-error" not in job


CELLS = [(s.name, arch) for s in constraints.SERIES if s.constraints
         for arch in ("amd64", "arm64")]


@pytest.mark.parametrize("series,arch", CELLS)
def test_each_cell_builds_tests_and_publishes_its_image(series, arch, tmp_path, monkeypatch):
    """The cell's steps build its series for its architecture, boot-test that image (with
    the SR-IOV scenario on amd64; arm64's emulated igb PF never answers its VFs), and
    publish it where the artifact upload looks."""
    job = _workflow()["jobs"]["image"]
    calls = _run_steps(job, {"matrix.series": series, "matrix.arch": arch}, tmp_path)
    assert [c for c in calls if c[0] == "setup-host"] == [
        ["setup-host", *(["--arm64"] if arch == "arm64" else [])]]
    amp_image = [c[1:] for c in calls if c[0] == "amp-image"]
    assert [c[0] for c in amp_image] == ["build", "test", "publish"]
    build, test, publish = amp_image

    monkeypatch.chdir(tmp_path)
    planned = CliRunner().invoke(main, [*build, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    plan = yaml.safe_load(planned.stdout)
    assert (plan["agent"]["series"], plan["arch"]) == (series, arch)
    image = Path(plan["output"])
    tested = test_cli.test_image.make_context("test", test[1:]).params
    assert Path(tested["image"]).resolve() == image
    assert tested["sriov"] == (arch == "amd64")
    published = publish_cli.publish.make_context("publish", publish[1:]).params
    assert Path(published["image"]).resolve() == image
    artifact = next(s for s in job["steps"] if s.get("with", {}).get("name", "").startswith(
        "amphora-"))
    uploaded = _expand(artifact["with"]["path"], {"matrix.series": series, "matrix.arch": arch})
    assert Path(published["dest"]) == Path(uploaded)
    checked = [c for c in calls if c[0] == "sha256sum"]
    assert checked == [["sha256sum", "-c", f"{published['prefix']}SHA256SUMS"]]


def test_the_release_job_attaches_every_published_file(tmp_path):
    workflow = _workflow()
    release = workflow["jobs"]["release"]
    assert release["needs"] == "image"
    assert release["permissions"] == {"contents": "write"}
    (tmp_path / "dist").mkdir()
    for name in ("2026.2-amd64-SHA256SUMS", "amphora-haproxy-2026.2-amd64.qcow2"):
        (tmp_path / "dist" / name).write_text("")
    calls = _run_steps(release, {"inputs.tag || github.ref_name": "v1.0",
                                 "github.token": "t"}, tmp_path)
    uploads = [c for c in calls if c[:3] == ["gh", "release", "upload"]]
    assert len(uploads) == 1 and uploads[0][3] == "v1.0"
    assert sorted(a for a in uploads[0] if a.startswith("dist/")) == [
        "dist/2026.2-amd64-SHA256SUMS", "dist/amphora-haproxy-2026.2-amd64.qcow2"]
    assert shlex.join(["gh", "release", "create", "v1.0"]) in {
        shlex.join(c[:4]) for c in calls}
