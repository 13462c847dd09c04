"""amp-image's elements without amp-image: a plain ``disk-image-create`` with them on
``ELEMENTS_PATH`` builds an amphora whose agent answers (issue 27).

The build is DIB's own command line for the element list amp-image's plan makes, with
only DIB's variables and the inputs a DIB user picks for this host (release, mirror,
the config-drive datasource, the agent's constraints and the CA bundle pip trusts);
every other ``DIB_AMP_*`` variable is left to its element's ``environment.d`` default,
so a variable amp-image sets that an element does not default shows up here.  amp-image
plays no part but the host shims it puts first on DIB's PATH where the host lacks
device-mapper (or vfat, for a UEFI image, which then also needs
``DIB_AMP_ESP_STAGED=1``): without them DIB cannot partition a disk on such a host.
The image is then booted with the project's harness, as Nova and the controller would,
and its agent must answer ``GET /1.0/info`` over mutual TLS.

One real build and one boot (slow): grouped with the variants (budget.py), deselected
by AMP_TEST_QUICK=1 (conftest.py).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from amp_image.builder import dib, dib_elements, dib_env, host, workdir
from amp_image.builder.leftovers import release_leftovers
from amp_image.builder.plan import BuildOptions, BuildPlan, make_plan
from amp_image.builder.process import ProcessTree, signals_deferred
from amp_image.builder.shims import install_shims
from amp_image.verify.boottest import booted_amphora
from amp_image.verify.vmspec import Flavor

pytestmark = [pytest.mark.image, pytest.mark.boot]

# DIB's own variables, and the element inputs a DIB user sets for this host, taken from
# amp-image's plan for the same build; nothing else of the plan's environment.
DIB_VARIABLES = ("ARCH", "DIB_RELEASE", "DIB_PYTHON_VERSION", "DIB_IMAGE_CACHE", "TMP_DIR",
                 "ELEMENTS_PATH", "DIB_DEBIAN_COMPONENTS", "DIB_DISTRIBUTION_MIRROR",
                 "DIB_DEBIAN_SECURITY_MIRROR")
USER_INPUTS = ("DIB_CLOUD_INIT_DATASOURCES", "DIB_AMP_AGENT_CONSTRAINTS", "DIB_AMP_CA_BUNDLE")


def plain_environment(plan: BuildPlan) -> dict[str, str]:
    """The plan's environment cut down to what a plain DIB build is given."""
    return {name: value for name, value in plan.env.items()
            if name in DIB_VARIABLES + USER_INPUTS or name.lower().endswith("_proxy")}


def run_plain_dib(plan: BuildPlan, log: Path) -> int:
    """disk-image-create as amp-image runs it (its whole process tree stopped and what
    it left mounted released if the test is stopped), but with the plain environment."""
    work = plan.options.work_dir
    for folder in (work / "tmp", plan.options.cache_dir, work / "out"):
        folder.mkdir(parents=True, exist_ok=True)
    staged_esp = dib.needs_vfat_shims(plan)
    install_shims(work / "bin", host.device_mapper_works(), vfat=not staged_esp)
    plain = replace(plan, env=plain_environment(plan))
    env = dib_env.dib_environment(plain, work / "bin", os.environ)
    if staged_esp:
        env["DIB_AMP_ESP_STAGED"] = "1"  # goes with the mount shims (amphora-grub)
    with workdir.claim_work_dir(work), open(log, "w") as out:
        def on_line(line: str) -> None:
            if not out.closed:  # a process that outlived a stop may still write
                out.write(line)

        tree = ProcessTree(dib_env.dib_command(plain), env=env, cwd=work, on_line=on_line)
        try:
            return tree.wait()
        except BaseException:
            with signals_deferred():
                tree.stop()
            raise
        finally:
            release_leftovers(work)


def test_plain_disk_image_create_builds_an_amphora_whose_agent_answers(tmp_path):
    # The run's cache (DIB's image cache: the debootstrap tarball the default build
    # made); amp-image's layer cache stays off without its variables.
    opts = BuildOptions(work_dir=tmp_path / "work", output=tmp_path / "amphora-plain-dib.qcow2")
    plan = make_plan(opts, host.host_context(os.environ), dib_elements.elements_dir())
    log = tmp_path / "dib.log"
    returncode = run_plain_dib(plan, log)
    tail = log.read_text(errors="replace")[-4000:]
    assert returncode == 0, f"disk-image-create failed (exit {returncode}):\n{tail}"
    made = opts.work_dir / "out" / f"{plan.image_name}.{plan.image_format}"
    assert made.is_file(), f"disk-image-create wrote no {made.name}:\n{tail}"
    # The record amphora-record copies to DIB's manifests: the harness reads the
    # image's architecture from it.
    manifests = made.with_name(f"{plan.image_name}.d")
    assert (manifests / "dib-manifests" / "amp-image" / "architecture").is_file()

    # Two vCPUs: the boot proves the image works, not the seed's flavor (the booted
    # checks and the conformance run do that), and the second vCPU saves a minute.
    with booted_amphora(made, workdir=tmp_path / "vm",
                        flavor=Flavor(vcpus=2, ram_mb=1024, disk_gb=3)) as amphora:
        response = amphora.agent().get("info")
        assert response.status_code == 200, response.text
        info = response.json()
        assert info["api_version"] == "1.0"
        assert info["hostname"] == f"amphora-{amphora.amphora_id}"
        for key in ("haproxy_version", "keepalived_version"):
            assert info.get(key), f"{key} missing from {info}"
