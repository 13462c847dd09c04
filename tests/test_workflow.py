"""The release workflow: actionlint passes, and it builds, tests and publishes each series."""

import subprocess
import sys
from pathlib import Path

import yaml

from amp_image.builder import constraints

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def test_actionlint():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert files
    result = subprocess.run([str(BIN / "actionlint"), "-no-color", *files],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_builds_tests_and_publishes_each_series_and_arch():
    workflow = yaml.safe_load(RELEASE.read_text())
    # PyYAML reads the bare key 'on' as True.
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["push"]["tags"] == ["v*"]
    job = workflow["jobs"]["image"]
    matrix = job["strategy"]["matrix"]
    assert matrix["series"] == [s.name for s in constraints.SERIES if s.constraints]
    assert matrix["arch"] == ["amd64", "arm64"]
    # Every cell must pass its boot test to be published, arm64's too.
    assert "continue-on-error" not in job
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "./scripts/setup-host --arm64" in runs
    assert ('.venv/bin/amp-image build --sriov --series "$SERIES" --arch "$ARCH" -o "$IMAGE"'
            in runs)
    assert '.venv/bin/amp-image test --sriov "$IMAGE"' in runs
    assert '.venv/bin/amp-image test "$IMAGE"' in runs  # arm64: no emulated SR-IOV
    assert '.venv/bin/amp-image publish "$IMAGE" --dest "dist/$NAME"' in runs
    assert 'sha256sum -c "$NAME-SHA256SUMS"' in runs
    release = workflow["jobs"]["release"]
    assert release["needs"] == "image"
    assert release["permissions"] == {"contents": "write"}
    assert "gh release upload" in "\n".join(s.get("run", "") for s in release["steps"])
