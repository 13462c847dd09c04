"""DIB's process environment and command line for a build plan. Pure: no file is read
or written."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from amp_image.builder.plan import BuildPlan

# Host pip settings (find-links to private wheel folders, extra indexes,
# constraints) must not steer pip inside the image's chroot.
LEAKY_ENV_PREFIXES = ("PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA", "PYENV")
# Passwords never reach DIB's environment, which DIB writes to its manifests
# (the root password reaches the root-passwd element only as a hash in a file).
SECRET_ENV = ("AMP_ROOT_PASSWORD", "DIB_PASSWORD")


def without_package_cache(env: dict[str, str]) -> dict[str, str]:
    """No debootstrap tarball and no shared apt archives (another build has them)."""
    env = {k: v for k, v in env.items() if k != "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"}
    env.update(DIB_DEBOOTSTRAP_CACHE="0", DIB_APT_LOCAL_CACHE="0")
    return env


def dib_environment(plan: BuildPlan, bin_dir: Path, base: Mapping[str, str],
                    package_cache: bool = True) -> dict[str, str]:
    env = {k: v for k, v in base.items()
           if not k.startswith(LEAKY_ENV_PREFIXES) and k not in SECRET_ENV}
    # TMPDIR would leak into the chroot, where that path does not exist.
    env.pop("TMPDIR", None)
    tool_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [str(bin_dir), tool_bin, base.get("PATH", ""), "/usr/sbin", "/sbin"]
    )
    env.update(plan.env)
    return env if package_cache else without_package_cache(env)


def dib_command(plan: BuildPlan) -> list[str]:
    exe = Path(sys.executable).parent / "disk-image-create"
    return [str(exe), *plan.dib_args, *plan.elements]
