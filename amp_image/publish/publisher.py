"""Publish an image the way operators consume it.

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
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from amp_image import version
from amp_image.build import constraints
from amp_image.errors import AmpImageError
from amp_image.image import imagefs, qemuimg
from amp_image.image.records import image_stem, manifests_beside
from amp_image.publish import cloud, provenance, sbom, signing
from amp_image.publish.inventory import ImageInventory, read_inventory
from amp_image.publish.signing import Signer

MANIFEST_FILE = "manifest.json"
GLANCE_FILE = "glance.json"
SUMS_FILE = "SHA256SUMS"
# What amp-image published into DEST (see the module docstring).
MARKER_FILE = ".amp-image-published.json"
MARKER_SCHEMA = "amp-image-published/1"
STAGING_PREFIX = ".amp-image-staging."
MANIFEST_SCHEMA = "amp-image-manifest/1"
DEFAULT_TAG = "amphora"

# qemu-img's format names -> Glance disk formats.
DISK_FORMATS = {"qcow2": "qcow2", "raw": "raw", "vpc": "vhd", "vhdx": "vhdx", "vmdk": "vmdk"}
# dpkg architectures -> Glance/Nova hw_architecture.
HW_ARCHITECTURES = {
    "amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "ppc64el": "ppc64le",
    "s390x": "s390x", "i386": "i686",
}
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
SAFE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class PublishError(AmpImageError):
    """The image cannot be published as asked."""


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


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def default_manifests(image: Path) -> Path:
    """DIB leaves NAME.d/dib-manifests beside NAME.FORMAT."""
    return manifests_beside(image) / "dib-manifests"


def redact_environment(env: dict[str, str]) -> dict[str, str]:
    """The build environment without secrets: passwords, tokens, proxy credentials."""
    clean = {}
    for key, value in sorted(env.items()):
        if SECRET_NAME.search(key):
            clean[key] = "<redacted>"
        else:
            clean[key] = URL_CREDENTIALS.sub("<redacted>@", value)
    return clean


def constraints_record(inventory: ImageInventory) -> dict:
    """Which upper-constraints file the agent was installed under, and its SHA-256.

    The image's record names the hash when the element wrote one; otherwise the
    file is looked up on this host (the build host, for a build-and-publish),
    then among amp-image's vendored files by name.
    """
    recorded = inventory.agent.get("AMPHORA_AGENT_CONSTRAINTS_SHA256", "")
    path = inventory.dib_environment.get("DIB_AMP_AGENT_CONSTRAINTS", "")
    record = {"file": Path(path).name if path else None, "sha256": None, "hashed_from": None}
    if recorded:
        record.update(sha256=recorded, hashed_from="image record")
    elif path and Path(path).is_file():
        record.update(sha256=sha256_file(Path(path)), hashed_from=path)
    elif path and (constraints.DATA_DIR / Path(path).name).is_file():
        vendored = constraints.DATA_DIR / Path(path).name
        record.update(sha256=sha256_file(vendored), hashed_from=f"vendored {vendored.name}")
    return record


def build_manifest(inventory: ImageInventory, *, image_file: str, disk_format: str,
                   size: int, virtual_size: int, sha256: str) -> dict:
    osr = inventory.os_release
    env = inventory.dib_environment
    return {
        "schema": MANIFEST_SCHEMA,
        "tool": {"name": "amp-image", "version": version.version()},
        "image": {"file": image_file, "disk_format": disk_format, "size": size,
                  "virtual_size": virtual_size, "sha256": sha256},
        "build_date": inventory.built.isoformat().replace("+00:00", "Z")
        if inventory.built else None,
        "os": {"distro": osr.get("ID", ""), "release": osr.get("VERSION_CODENAME", ""),
               "version": osr.get("VERSION_ID", ""), "pretty_name": osr.get("PRETTY_NAME", "")},
        "architecture": inventory.architecture,
        "kernels": inventory.kernels,
        "elements": inventory.elements,
        "build_environment": redact_environment(env),
        "agent": {
            "version": inventory.agent.get("AMPHORA_AGENT_VERSION", ""),
            "source_type": inventory.agent.get("AMPHORA_AGENT_SOURCE_TYPE", ""),
            "source": inventory.agent.get("AMPHORA_AGENT_SOURCE", ""),
            "git_ref": inventory.agent.get("AMPHORA_AGENT_GIT_REF"),
            "constraints": constraints_record(inventory),
            "python_packages": [{"name": d.name, "version": d.version}
                                for d in inventory.agent_python],
        },
        "sriov": {
            "enabled": "sriov-vf-drivers" in inventory.elements or bool(inventory.vf_drivers),
            "vf_drivers_requested": env.get("DIB_AMP_VF_DRIVERS", "").split(),
            "vf_drivers": [{"module": d.module, "kernel": d.kernel, "path": d.path}
                           for d in inventory.vf_drivers],
        },
        "enabled_units": inventory.enabled_units,
        "firewall": {
            "backend": inventory.firewall,
            "nftables": inventory.firewall == "nftables",
            "DIB_OCTAVIA_AMP_USE_NFTABLES": env.get("DIB_OCTAVIA_AMP_USE_NFTABLES"),
        },
        "packages": [{"name": p.name, "version": p.version, "architecture": p.architecture,
                      "source": p.source, "source_version": p.source_version}
                     for p in inventory.packages],
    }


def glance_spec(inventory: ImageInventory, *, image_file: str, name: str, disk_format: str,
                virtual_size: int, tag: str = DEFAULT_TAG,
                signature: dict[str, str] | None = None) -> dict:
    """The Glance image Octavia looks for (by tag, private to its project); signature:
    the img_signature* properties of a signed image."""
    try:
        hw_architecture = HW_ARCHITECTURES[inventory.architecture]
    except KeyError:
        raise PublishError(
            f"unknown image architecture '{inventory.architecture}' (from the image's dpkg "
            f"database); publish images of {', '.join(HW_ARCHITECTURES)}"
        ) from None
    properties = {
        "hw_architecture": hw_architecture,
        "hw_rng_model": "virtio",
        "os_distro": inventory.os_release.get("ID", ""),
        "os_version": inventory.os_release.get("VERSION_ID", ""),
        **(signature or {}),
    }
    spec = {
        "name": name,
        "file": image_file,
        "disk_format": disk_format,
        "container_format": "bare",
        "visibility": "private",
        "tags": [tag],
        "min_disk": max(1, math.ceil(virtual_size / 2**30)),
        "properties": properties,
    }
    spec["command"] = shlex.join(image_create_argv(spec))
    return spec


def image_create_argv(spec: dict) -> list[str]:
    argv = ["openstack", "image", "create", "--disk-format", spec["disk_format"],
            "--container-format", spec["container_format"], f"--{spec['visibility']}"]
    for tag in spec["tags"]:
        argv += ["--tag", tag]
    argv += ["--min-disk", str(spec["min_disk"])]
    for key, value in spec["properties"].items():
        argv += ["--property", f"{key}={value}"]
    return [*argv, "--file", spec["file"], spec["name"]]


def write_sums(folder: Path, names: list[str], sums_file: str) -> None:
    """sha256sum's text format: ``HEX  NAME`` per line."""
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)]
    (folder / sums_file).write_text("".join(lines))


def place_image(image: Path, dest: Path, copy: bool) -> None:
    """A hard link where the file systems allow it (fast, no space), else a copy."""
    if not copy:
        try:
            os.link(image, dest)
            return
        except OSError:
            pass
    shutil.copyfile(image, dest)
    shutil.copystat(image, dest)


def published_names(image_name: str, prefix: str, signed: bool = False) -> list[str]:
    """The files a publication writes, in the order they are put in place."""
    envelope = [prefix + provenance.ENVELOPE_FILE] if signed else []
    return [image_name, prefix + MANIFEST_FILE, prefix + sbom.SBOM_FILE, prefix + GLANCE_FILE,
            prefix + provenance.PROVENANCE_FILE, *envelope, prefix + SUMS_FILE]


def read_marker(dest: Path) -> list[str]:
    """The files amp-image published into dest, from its record there (none: [])."""
    try:
        data = json.loads((dest / MARKER_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise PublishError(f"{dest / MARKER_FILE} is unreadable ({exc}); move it away and "
                           "publish into a new or empty folder") from None
    if not isinstance(data, dict) or data.get("schema") != MARKER_SCHEMA \
            or not isinstance(data.get("files"), list):
        raise PublishError(f"{dest / MARKER_FILE} is not amp-image's record; move it away and "
                           "publish into a new or empty folder")
    return [name for name in data["files"] if isinstance(name, str) and "/" not in name]


def write_marker(dest: Path, files: list[str]) -> None:
    tmp = dest / f"{MARKER_FILE}.new"
    tmp.write_text(json.dumps({"schema": MARKER_SCHEMA, "files": sorted(set(files))},
                              indent=2) + "\n")
    os.replace(tmp, dest / MARKER_FILE)


def foreign_entries(dest: Path) -> list[str]:
    """What dest holds that amp-image did not publish there (its own record and staging
    folders aside)."""
    ours = set(read_marker(dest)) | {MARKER_FILE, f"{MARKER_FILE}.new"}
    return sorted(p.name for p in dest.iterdir()
                  if p.name not in ours and not p.name.startswith(STAGING_PREFIX))


def check_dest(dest: Path, names: list[str], *, force: bool, option: str = "--dest") -> None:
    """DEST may be new, empty or one amp-image published into; other files there are
    never touched.  A non-empty folder amp-image did not publish into needs force."""
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{option} {dest} is a file; give a folder")
    if not dest.is_dir():
        return
    foreign = foreign_entries(dest)
    if foreign and not force and not (dest / MARKER_FILE).is_file():
        shown = ", ".join(f"'{n}'" for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        hint = " (or pass --force to publish beside them; they are kept)" \
            if option == "--dest" else ""
        raise PublishError(f"{option} {dest} holds files amp-image did not publish ({shown}); "
                           f"choose a new or empty folder{hint}")
    clash = sorted(set(foreign) & set(names))
    if clash:
        raise PublishError(f"{option} {dest} already has '{clash[0]}', which amp-image did not "
                           "publish and will not overwrite; move it away or use --prefix")


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


def swap_into_place(staging: Path, dest: Path, names: list[str]) -> None:
    """Rename the staged files into dest, replacing amp-image's earlier ones only."""
    earlier = read_marker(dest)
    # While swapping, the record covers both publications: whatever happens,
    # the next publish knows every file here that is amp-image's.
    write_marker(dest, [*earlier, *names])
    for name in names:
        os.replace(staging / name, dest / name)
    for name in sorted(set(earlier) - set(names)):
        (dest / name).unlink(missing_ok=True)
    write_marker(dest, names)


def remove_stale_staging(dest: Path) -> None:
    """Staging folders a killed publish left (only amp-image's, by their name)."""
    for path in dest.glob(STAGING_PREFIX + "*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


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
                         virtual_size=vsize, tag=tag, signature=signature)
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


def upload_to_glance(spec: dict, image_path: Path, cloud_name: str | None) -> str:
    """Create the Glance image described by spec; return its ID."""
    conn = cloud.connect(cloud_name)
    image = conn.image.create_image(
        spec["name"], filename=str(image_path), disk_format=spec["disk_format"],
        container_format=spec["container_format"], tags=spec["tags"],
        visibility=spec["visibility"], min_disk=spec["min_disk"], wait=True,
        **spec["properties"],
    )
    return image.id


def publish_image(image: Path, dest: Path, *, upload: bool = False, cloud_name: str | None = None,
                  name: str = "", tag: str = DEFAULT_TAG, manifests: Path | None = None,
                  prefix: str = "", copy: bool = False, force: bool = False,
                  option: str = "--dest", signer: Signer | None = None,
                  emit: Callable[[str], None] = lambda _: None) -> PublishResult:
    """Publish image into dest (see the module docstring); upload it to Glance if asked.

    The cloud is checked (SDK installed, OS_CLOUD or --cloud resolvable) before
    anything is written.  A failed upload leaves the complete published folder.
    signer (signing.load_signer: the key is read and checked before this) signs
    the image for Glance and the provenance.
    """
    image, dest = Path(image).absolute(), Path(dest).absolute()
    name = name or image_stem(image)
    disk_format = check_inputs(image, dest, prefix=prefix, name=name, force=force, option=option,
                               signed=bool(signer))
    if upload:
        cloud.check_cloud(cloud_name)
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
        image_id = upload_to_glance(glance, result.image, cloud_name)
    except AmpImageError:
        raise
    except Exception as exc:
        raise PublishError(f"published {dest}, but the Glance upload failed: "
                           f"{cloud.one_line(exc)}; the files are complete: upload with the "
                           "command in glance.json, or publish again with --upload"
                           ) from None
    return dataclasses.replace(result, glance_image_id=image_id,
                               uploaded_to=cloud_name or "OS_* variables")
