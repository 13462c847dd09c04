"""The agent's Python in a built image, which decides whether its TLS is X509_STRICT."""

from __future__ import annotations

from pathlib import Path

from amp_image.image import imagefs
from amp_image.image.dpkg import parse_dpkg_status
from amp_image.image.python_version import python3_version
from amp_image.image.records import default_manifests, read_record
from amp_image.verify.certs.files import CertInputError


def python_version_of_image(image: Path) -> tuple[int, int]:
    """The agent's Python in a built image: the version of its ``python3`` package.

    Read from DIB's dpkg manifest beside the image (``NAME.d/dib-manifests``, via
    :func:`amp_image.image.records.read_record`) when it is there, else from the image's
    own dpkg database (a read-only loop mount with :func:`amp_image.image.imagefs.mounted_image`,
    which needs root).
    """
    image = Path(image)
    if not image.is_file():
        raise CertInputError(f"--image {image}: no such image")
    try:
        found = python3_version(read_record(default_manifests(image).parent).packages)
    except (ValueError, KeyError) as exc:
        raise CertInputError(f"--image {image}: unreadable DIB manifest beside it ({exc})"
                             ) from None
    if found:
        return found
    with imagefs.mounted_image(image) as root:
        status = root / "var/lib/dpkg/status"
        text = status.read_text(errors="replace") if status.is_file() else ""
    found = python3_version({p.name: p.version for p in parse_dpkg_status(text)})
    if not found:
        raise CertInputError(f"--image {image}: no python3 package in the image's dpkg "
                             "database; pass --agent-python")
    return found
