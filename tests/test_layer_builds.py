"""The layer cache in real builds (DIB): a --no-cache build runs every stage and saves
both layers; the same build again starts from the agent layer and makes the same
image, file for file, but for what differs between any two builds.

Both builds use a cache folder of their own whose debootstrap tarball was cut to a
third (as a full disk or a killed write leaves it): the build from scratch must set it
aside, not trust it, and bootstrap afresh.  (That check needs a bootstrap, so it rides
on the one build of the suite that runs every stage.)

Keys, records, damage and the bound are tested on real files in test_layers.py, the
element's hooks in amp_image/elements/amphora-layer-cache/tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, TEST_IMAGE_DIR

from amp_image.builder import debootstrap_cache

pytestmark = pytest.mark.image

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


SHARED_CACHE = Path("~/.cache/image-create").expanduser()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder with the shared apt archives (linked) and a truncated debootstrap
    tarball."""
    cache = tmp_path_factory.mktemp("layer-cache")
    shutil.copytree(SHARED_CACHE / "apt", cache / "apt", copy_function=os.link)
    original = debootstrap_cache.tarball_path(SHARED_CACHE, "trixie", "amd64")
    with open(original, "rb") as src, open(truncated(cache), "wb") as dst:
        dst.write(src.read(original.stat().st_size // 3))
    return cache


def truncated(cache: Path) -> Path:
    return debootstrap_cache.tarball_path(cache, "trixie", "amd64")


@pytest.fixture(scope="module")
def pair(cache) -> dict[str, tuple[Path, str]]:
    """A build from scratch, then the same build again."""
    made = {}
    for name, extra in (("scratch", ("--no-cache",)), ("rebuilt", ())):
        image = TEST_IMAGE_DIR / f"layers-{name}.qcow2"
        made[name] = image, build(image, "--cache-dir", str(cache), *extra)
    return made


def test_a_truncated_debootstrap_tarball_is_set_aside_and_made_again(pair, cache):
    _, output = pair["scratch"]
    assert f"the debootstrap cache {truncated(cache)} is damaged" in output
    assert debootstrap_cache.damage(truncated(cache)) == ""  # a new, sound one


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


def test_cache_list_shows_the_layers(pair, cache):
    listed = subprocess.run([AMP_IMAGE, "cache", "list", "--cache-dir", str(cache)],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[:-1]]
    assert {"packages", "agent"} <= set(names)
