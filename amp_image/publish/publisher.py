"""Publish an image the way operators consume it: the flow over manifest.py,
sbom.py, provenance.py, checksums.py, folder.py, cloud/glance.py and cloud/connection.py.

``DEST`` receives the image (hard-linked where possible, else copied) and,
read from the image itself offline:

* ``manifest.json``: what the image is and how it was built;
* ``sbom.cdx.json``: a CycloneDX SBOM of its packages (see sbom.py);
* ``glance.json``: the Glance image properties Octavia deployments use and the
  matching ``openstack image create`` command; with a signing key, the
  image's Glance signature properties (see signing.py);
* ``provenance.json``: an in-toto statement with SLSA provenance v1 of the
  build (see provenance.py); with a signing key also ``provenance.dsse.json``,
  the statement in a DSSE envelope signed with that key;
* ``SHA256SUMS``: checksums of every other file, for ``sha256sum -c``.

Publishing never deletes what amp-image did not create.  DEST may be new,
empty, or a folder amp-image published into before: ``.amp-image-published.json``
in it lists the files amp-image put there, and only those are replaced (files
of an earlier publication that this one does not write are removed); every
other file stays.  A non-empty folder without that record is refused, unless
``--force`` asks to publish beside its files (which are still kept, and never
overwritten).

Everything is first written into a staging folder inside DEST
(``.amp-image-staging.*``), so a failure while writing leaves DEST as it was.
Then each file is renamed into place (an atomic replace per file: a reader
sees the old file or the new one, never a partial one), SHA256SUMS last.  The
record lists the old and new files while they are swapped, so even a publish
killed half-way leaves every file it wrote to the next publish to replace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from amp_image import version
from amp_image.builder.digests import sha256_file
from amp_image.cloud import connection as cloud
from amp_image.cloud.glance import DEFAULT_TAG, DISK_FORMATS, GLANCE_FILE, glance_spec
from amp_image.cloud.rotation import Rotation
from amp_image.errors import AmpImageError, PublishError
from amp_image.image import imagefs, qemuimg
from amp_image.image.inventory import ImageInventory, read_inventory
from amp_image.image.records import default_manifests, image_stem
from amp_image.publish import provenance, sbom, signing
from amp_image.publish.checksums import SUMS_FILE, write_sums
from amp_image.publish.folder import (
    MARKER_FILE,
    STAGING_PREFIX,
    check_dest,
    place_image,
    remove_stale_staging,
    swap_into_place,
)
from amp_image.publish.manifest import MANIFEST_FILE, build_manifest
from amp_image.publish.signing import Signer

SAFE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclasses.dataclass(frozen=True)
class PublishResult:
    dest: Path
    image: Path
    files: dict[str, int]          # file name -> size in bytes, as published
    manifest: dict
    glance: dict
    glance_image_id: str = ""
    uploaded_to: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)


def published_names(image_name: str, prefix: str, signed: bool = False) -> list[str]:
    """The files a publication writes, in the order they are put in place."""
    envelope = [prefix + provenance.ENVELOPE_FILE] if signed else []
    return [image_name, prefix + MANIFEST_FILE, prefix + sbom.SBOM_FILE, prefix + GLANCE_FILE,
            prefix + provenance.PROVENANCE_FILE, *envelope, prefix + SUMS_FILE]


def check_inputs(image: Path, dest: Path, *, prefix: str, name: str, force: bool,
                 option: str = "--dest", signed: bool = False) -> str:
    """Validate before touching anything; return the Glance disk format."""
    if not image.is_file():
        raise PublishError(f"{image}: no such image; pass the .qcow2 (or .raw/.vhd) file "
                           "amp-image build wrote")
    if image.name.endswith(".tar"):
        raise PublishError(f"{image} is a tar archive, not a bootable disk; publish a qcow2, "
                           "raw or vhd image")
    if prefix and not SAFE_PREFIX.fullmatch(prefix):
        raise PublishError(f"--prefix '{prefix}': use letters, digits, '.', '_' or '-'")
    if not name.strip() or len(name) > 255:
        raise PublishError(f"image name '{name}': give 1 to 255 characters")
    check_dest(dest, published_names(image.name, prefix, signed), force=force, option=option)
    if dest.resolve() == image.parent.resolve() or image.resolve().is_relative_to(dest.resolve()):
        raise PublishError(f"--dest {dest} holds the image itself; publish to another folder")
    if os.geteuid() != 0:
        raise PublishError("publishing reads the image's file system through a loop mount, "
                           "which needs root; rerun as root")
    fmt = qemuimg.image_format(image)
    if fmt not in DISK_FORMATS:
        raise PublishError(f"{image}: qemu-img sees format '{fmt}', which Glance images for "
                           f"Octavia do not use; publish one of {', '.join(DISK_FORMATS)}")
    return DISK_FORMATS[fmt]


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def publish_files(image: Path, folder: Path, inventory: ImageInventory, *, disk_format: str,
                  name: str, tag: str, prefix: str, copy: bool, signer: Signer | None = None,
                  emit: Callable[[str], None] = lambda _: None) -> tuple[dict, dict]:
    """Write every published file into folder; return (manifest, glance spec)."""
    published = folder / image.name
    place_image(image, published, copy)
    sha256 = sha256_file(published)
    vsize = qemuimg.virtual_size(published)
    manifest = build_manifest(inventory, image_file=image.name, disk_format=disk_format,
                              size=published.stat().st_size, virtual_size=vsize, sha256=sha256)
    signature = None
    if signer:
        emit(f"signing {image.name} ({signer.key_type}, {signer.hash_method})")
        signature = signer.image_properties(signer.sign_file(published))
    glance = glance_spec(inventory, image_file=image.name, name=name, disk_format=disk_format,
                         virtual_size=vsize, sha256=sha256, tag=tag, signature=signature)
    manifest["signature"] = signer.describe() if signer else None
    manifest["published"] = {
        "manifest": prefix + MANIFEST_FILE, "sbom": prefix + sbom.SBOM_FILE,
        "sbom_format": f"CycloneDX {sbom.SCHEMA_VERSION.to_version()} JSON",
        "glance": prefix + GLANCE_FILE, "provenance": prefix + provenance.PROVENANCE_FILE,
        "provenance_envelope": prefix + provenance.ENVELOPE_FILE if signer else None,
        "checksums": prefix + SUMS_FILE,
    }
    statement = provenance.build_statement(
        inventory, image_name=image.name, sha256=sha256,
        constraints=manifest["agent"]["constraints"],
        environment=manifest["build_environment"],
        build_log=image.with_name(image.name + ".log"))
    statement_text = provenance.statement_bytes(statement)
    built = inventory.built or datetime.fromtimestamp(int(image.stat().st_mtime), UTC)
    sbom_text = sbom.sbom_json(inventory, image_name=image_stem(image), image_sha256=sha256,
                               tool_version=version.version(), timestamp=built)
    write_json(folder / (prefix + MANIFEST_FILE), manifest)
    (folder / (prefix + sbom.SBOM_FILE)).write_text(sbom_text)
    write_json(folder / (prefix + GLANCE_FILE), glance)
    (folder / (prefix + provenance.PROVENANCE_FILE)).write_bytes(statement_text)
    if signer:
        write_json(folder / (prefix + provenance.ENVELOPE_FILE),
                   signing.dsse_envelope(signer, statement_text))
    names = published_names(image.name, prefix, bool(signer))[:-1]
    write_sums(folder, names, prefix + SUMS_FILE)
    return manifest, glance


def publish_image(image: Path, dest: Path, *, upload: bool = False, cloud_name: str | None = None,
                  rotate: Rotation | None = None, name: str = "", tag: str = DEFAULT_TAG,
                  manifests: Path | None = None,
                  prefix: str = "", copy: bool = False, force: bool = False,
                  option: str = "--dest", signer: Signer | None = None,
                  emit: Callable[[str], None] = lambda _: None) -> PublishResult:
    """Publish image into dest (see the module docstring); upload it to Glance if asked.

    The cloud is checked (SDK installed, OS_CLOUD or --cloud resolvable) before
    anything is written.  A failed upload leaves the complete published folder.
    signer (signing.load_signer: the key is read and checked before this) signs
    the image for Glance and the provenance.  rotate: after the upload, amp-image's
    older images of that name and tag (cloud/rotation.py).
    """
    image, dest = Path(image).absolute(), Path(dest).absolute()
    name = name or image_stem(image)
    disk_format = check_inputs(image, dest, prefix=prefix, name=name, force=force, option=option,
                               signed=bool(signer))
    if rotate and not upload:
        raise PublishError("--rotate needs --upload (it rotates the images in Glance after "
                           "an upload); add --upload or drop --rotate")
    if upload:
        cloud.check_glance(cloud_name)
    manifests = manifests or default_manifests(image)
    emit(f"reading {image.name} (read-only loop mount)")
    with imagefs.mounted_image(image) as root:
        inventory = read_inventory(root, manifests)
    if not inventory.packages:
        raise PublishError(f"{image} has no dpkg database (var/lib/dpkg/status); publish an "
                           "image built by amp-image")
    warnings = [] if inventory.elements else [
        f"no DIB manifests in the image or at {manifests}: elements and build environment "
        "are left empty; pass --manifests NAME.d/dib-manifests"]
    if signer and not signer.cert_uuid:
        warnings.append(
            "signed without --cert-uuid: glance.json has no img_signature_certificate_uuid, "
            "and Nova with verify_glance_signatures refuses the image until it is set "
            "(openstack image set --property img_signature_certificate_uuid=ID)")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    if created:
        dest.chmod(0o755)
    remove_stale_staging(dest)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    names = published_names(image.name, prefix, bool(signer))
    try:
        emit(f"writing {dest}")
        manifest, glance = publish_files(image, staging, inventory, disk_format=disk_format,
                                         name=name, tag=tag, prefix=prefix, copy=copy,
                                         signer=signer, emit=emit)
        swap_into_place(staging, dest, names)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(p.name != MARKER_FILE for p in dest.iterdir()):
            shutil.rmtree(dest, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    files = {n: (dest / n).stat().st_size for n in sorted(names)}
    result = PublishResult(dest=dest, image=dest / image.name, files=files, manifest=manifest,
                           glance=glance, warnings=warnings)
    if not upload:
        return result
    emit(f"uploading {image.name} to Glance as '{name}'")
    try:
        image_id = cloud.upload_to_glance(glance, result.image, cloud_name, rotate=rotate,
                                          emit=emit)
    except AmpImageError:
        raise
    except Exception as exc:
        raise PublishError(f"published {dest}, but the Glance upload failed: "
                           f"{cloud.one_line(exc)}; the files are complete: upload with the "
                           "command in glance.json, or publish again with --upload"
                           ) from None
    return dataclasses.replace(result, glance_image_id=image_id,
                               uploaded_to=cloud_name or "OS_* variables")
