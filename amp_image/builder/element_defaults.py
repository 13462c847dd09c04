"""Defaults written once, in an element, and read from it when first needed.

The sriov-vf-drivers element's environment.d holds the default VF driver list a plain
DIB build uses too; amp-image reads it from there (lazily: importing the plan reads
no file)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from amp_image import PACKAGE_DIR

# Kernel modules for SR-IOV Virtual Functions and the PFs operators pass through;
# checked against the image's kernel at build time.
VF_DRIVERS_ENVIRONMENT = (PACKAGE_DIR / "elements" / "sriov-vf-drivers" / "environment.d"
                          / "13-sriov-vf-drivers.bash")


def element_vf_drivers(environment: Path = VF_DRIVERS_ENVIRONMENT) -> tuple[str, ...]:
    """The element's default DIB_AMP_VF_DRIVERS (``${DIB_AMP_VF_DRIVERS:-"..."}``)."""
    match = re.search(r'DIB_AMP_VF_DRIVERS:-"([^"]*)"', environment.read_text())
    if not match or not match.group(1).split():
        raise RuntimeError(f"{environment}: no default DIB_AMP_VF_DRIVERS")
    return tuple(match.group(1).split())


@functools.cache
def default_vf_drivers() -> tuple[str, ...]:
    """The element's default VF drivers, read on first use."""
    return element_vf_drivers()
