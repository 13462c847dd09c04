"""The layer cache in real builds (DIB): a --no-cache build runs every stage and saves
both layers; the same build again starts from the agent layer and makes the same
image, file for file, but for what differs between any two builds.

Keys, records, damage and the bound are tested on real files in test_layers.py, the
element's hooks in amp_image/elements/amphora-layer-cache/tests.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, TEST_IMAGE_DIR

# What differs between any two builds of the same inputs (docs/reproducibility.md):
# GRUB's configuration names the new file system's UUID; DIB's manifests name the
# image and its arguments.
PER_BUILD = ("boot/grub/", "etc/dib-manifests/")


def build(output: Path, *extra: str) -> str:
    cmd = [AMP_IMAGE, "build", "--sriov", "-o", str(output), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-3000:]}{result.stderr}"
    return result.stdout


def layer_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("layer cache:"))


@pytest.fixture(scope="module")
def pair() -> dict[str, tuple[Path, str]]:
    """A build from scratch, then the same build again."""
    made = {}
    for name, extra in (("scratch", ("--no-cache",)), ("rebuilt", ())):
        image = TEST_IMAGE_DIR / f"layers-{name}.qcow2"
        made[name] = image, build(image, *extra)
    return made


def test_no_cache_runs_every_stage_and_saves_both_layers(pair):
    _, output = pair["scratch"]
    assert layer_line(output) == "layer cache: nothing restored; saving packages, agent"


def test_the_same_build_again_starts_from_the_agent_layer(pair):
    _, output = pair["rebuilt"]
    assert layer_line(output).startswith("layer cache: restored 'agent' (")
    assert layer_line(output).endswith("; saving nothing")


def test_the_image_from_the_layer_is_the_image_from_scratch(pair):
    result = subprocess.run([AMP_IMAGE, "diff", "--files", "--json", str(pair["scratch"][0]),
                             str(pair["rebuilt"][0])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    diff = json.loads(result.stdout)
    for field in ("packages", "agent_python_packages"):
        changes = {k: v for k, v in diff[field].items() if isinstance(v, list) and v}
        assert changes == {}, field
    assert diff["enabled_units"]["added"] == diff["enabled_units"]["removed"] == []
    files = diff["files"]
    assert files["metadata_changed"] == []
    differing = files["content_changed"] + files["only_in_old"] + files["only_in_new"]
    assert [path for path in differing if not path.startswith(PER_BUILD)] == []
    assert files["same"] > 20000


def test_cache_list_shows_the_layers(pair):
    listed = subprocess.run([AMP_IMAGE, "cache", "list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[:-1]]
    assert {"packages", "agent"} <= set(names)
