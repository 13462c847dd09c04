"""DIB's elements: where amp-image's and diskimage-builder's are, and what
disk-image-create adds to the elements on its command line. Pure: no file is read."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import diskimage_builder

from amp_image import PACKAGE_DIR


def elements_dir() -> Path:
    """The project's elements, shipped inside the package (amp_image/elements)."""
    return PACKAGE_DIR / "elements"


def dib_elements_dir() -> Path:
    """diskimage-builder's own elements (after amp-image's on the element path)."""
    return Path(diskimage_builder.__file__).parent / "elements"


def dib_elements(elements: Iterable[str], arch: str, *, skip_base: bool = False) -> list[str]:
    """The elements disk-image-create expands (common-functions' arg_to_elements): the
    base element unless skipped (-n, SKIP_BASE=1) and, for a vm without a block-device
    element, the default one for arch (DIB's ARCH)."""
    listed = list(elements)
    if "vm" in listed and not any(e.startswith("block-device-") for e in listed):
        listed.append("block-device-efi" if _uefi_only(arch) else "block-device-mbr")
    return listed if skip_base else ["base", *listed]


def _uefi_only(arch: str) -> bool:
    """DIB's own test: [[ "arm64 aarch64" =~ $ARCH ]]."""
    try:
        return re.search(arch, "arm64 aarch64") is not None
    except re.error:
        return False
