"""``qemu-img info``: the one place amp-image asks qemu-img what an image is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from amp_image.errors import AmpImageError


def info(image: Path) -> dict:
    """qemu-img's JSON description of IMAGE (format, virtual-size, ...)."""
    cmd = ["qemu-img", "info", "--output=json", str(image)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AmpImageError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def image_format(image: Path) -> str:
    """qcow2, raw, vpc, ...: qemu-img's name for IMAGE's format."""
    return info(image)["format"]


def virtual_size(image: Path) -> int:
    """The size of the disk IMAGE holds, in bytes."""
    return int(info(image)["virtual-size"])
