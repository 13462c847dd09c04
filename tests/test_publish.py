"""amp-image publish: a really built image, published and checked against itself.

The image tests read the image offline (read-only loop mount, root) and compare
what was published with the image's own dpkg database, using dpkg-query.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import AMP_IMAGE
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers import STOP_SECONDS, no_cloud_env, with_default_sigint

from amp_image import version
from amp_image.cli import main
from amp_image.cloud.glance import glance_spec
from amp_image.errors import PublishError
from amp_image.image import imagefs, qemuimg
from amp_image.image.dpkg import parse_dpkg_status
from amp_image.image.inventory import (
    ImageInventory,
    elements_from_arguments,
    parse_dib_environment,
)
from amp_image.publish import publisher, sbom
from amp_image.publish.checksums import sha256_file
from amp_image.publish.folder import MARKER_FILE, STAGING_PREFIX, write_marker
from amp_image.publish.manifest import redact_environment

STATUS = """\
Package: acl
Status: install ok installed
Architecture: amd64
Source: acl (2.3.2-2)
Version: 2.3.2-2+b1
Description: access control list - utilities
 This package contains the getfacl and setfacl utilities.

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.3.dfsg+really1.3.1-1+b1
"""


def test_parse_dpkg_status():
    packages = parse_dpkg_status(STATUS)
    assert [(p.name, p.version, p.source, p.source_version) for p in packages] == [
        ("acl", "2.3.2-2+b1", "acl", "2.3.2-2"),
        ("zlib1g", "1:1.3.dfsg+really1.3.1-1+b1", "zlib", "1:1.3.dfsg+really1.3.1-1+b1"),
    ]
    assert packages[0].summary == "access control list - utilities"


def test_parse_dib_files():
    env = parse_dib_environment('declare -x DIB_RELEASE="trixie"\n'
                                'declare -x DIB_ARGS="-a amd64 -t qcow2 vm"\n')
    assert env == {"DIB_RELEASE": "trixie", "DIB_ARGS": "-a amd64 -t qcow2 vm"}
    args = "-a amd64 -o /w/out/x -t qcow2 --image-size 2 -x --no-tmpfs debian-minimal vm sriov"
    assert elements_from_arguments(args) == ["debian-minimal", "vm", "sriov"]


def test_build_environment_is_redacted():
    env = redact_environment({
        "DIB_PASSWORD": "hunter2", "http_proxy": "http://user:pw@proxy:3128",
        "DIB_RELEASE": "trixie"})
    assert env == {"DIB_PASSWORD": "<redacted>", "DIB_RELEASE": "trixie",
                   "http_proxy": "http://<redacted>@proxy:3128"}


def test_glance_spec_rejects_unknown_architecture():
    with pytest.raises(PublishError, match="unknown image architecture 'm68k'"):
        glance_spec(ImageInventory(architecture="m68k"), image_file="x.qcow2",
                            name="x", disk_format="qcow2", virtual_size=2**31, sha256="0")


@pytest.mark.parametrize(("arch", "hw_arch", "firmware"), [
    ("amd64", "x86_64", None), ("arm64", "aarch64", "uefi")])
def test_glance_spec_names_the_architecture_and_its_firmware(arch, hw_arch, firmware):
    properties = glance_spec(ImageInventory(architecture=arch), image_file="x.qcow2",
                             name="x", disk_format="qcow2", virtual_size=2**31,
                             sha256="0")["properties"]
    assert properties["hw_architecture"] == hw_arch
    assert properties.get("hw_firmware_type") == firmware


# --- the real image ---------------------------------------------------------


def run_publish(*args, env=None):
    return CliRunner().invoke(main, ["publish", *args], env=env)


@pytest.fixture
def scratch(tmp_path):
    """tmp_path, emptied afterwards: published images are hard links to the test image,
    which pytest's kept temporary folders would otherwise pin after a rebuild."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def published(built_image, tmp_path_factory):
    dest = tmp_path_factory.mktemp("publish") / "out"
    result = run_publish(str(built_image), "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert f"published {dest}" in result.stdout
    yield dest
    shutil.rmtree(dest.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def image_dpkg(built_image) -> set[tuple[str, str, str]]:
    """(package, version, architecture) installed, per dpkg-query on the image's database."""
    with imagefs.mounted_image(built_image) as root:
        out = subprocess.run(
            ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
             "-f", "${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\n"],
            capture_output=True, text=True, check=True).stdout
    return {tuple(line.split("\t")[:3]) for line in out.splitlines()
            if line.endswith("\tinstalled")}


def load(dest: Path, name: str) -> dict:
    return json.loads((dest / name).read_text())


@pytest.mark.image
def test_published_files(published, built_image):
    assert sorted(p.name for p in published.iterdir()) == sorted(
        [built_image.name, "SHA256SUMS", "manifest.json", "sbom.cdx.json", "glance.json",
         "provenance.json", MARKER_FILE])
    assert not list(published.parent.glob(".out.*"))


@pytest.mark.image
def test_checksums_verify(published):
    listed = [line.split("  ", 1)[1] for line in
              (published / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(p.name for p in published.iterdir()
                                    if p.name not in ("SHA256SUMS", MARKER_FILE))
    result = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=published,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.image
def test_manifest_packages_match_the_images_dpkg_database(published, image_dpkg):
    manifest = load(published, "manifest.json")
    listed = {(p["name"], p["version"], p["architecture"]) for p in manifest["packages"]}
    assert listed == image_dpkg
    assert len(manifest["packages"]) == len(image_dpkg) > 100


@pytest.mark.image
def test_manifest_describes_the_image(published, built_image):
    manifest = load(published, "manifest.json")
    image = manifest["image"]
    assert image["file"] == built_image.name
    assert image["size"] == built_image.stat().st_size
    assert image["sha256"] == sha256_file(published / built_image.name)
    assert image["disk_format"] == qemuimg.image_format(built_image)
    assert manifest["tool"] == {"name": "amp-image", "version": version.version()}
    assert manifest["os"]["distro"] == "debian"
    assert manifest["os"]["release"] in ("trixie", "bookworm")
    assert manifest["architecture"] == "amd64"
    assert manifest["kernels"] and all(re.match(r"\d+\.\d+", k) for k in manifest["kernels"])
    assert manifest["elements"][0] == "debian-minimal"
    assert {"amphora-agent", "amphora-nftables", "sriov-vf-drivers"} <= set(manifest["elements"])
    assert manifest["build_environment"]["DIB_RELEASE"] == manifest["os"]["release"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["build_date"])
    agent = manifest["agent"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", agent["version"]) and agent["source_type"]
    assert re.fullmatch(r"[0-9a-f]{64}", agent["constraints"]["sha256"])
    assert "octavia" in {p["name"].lower() for p in agent["python_packages"]}
    assert manifest["sriov"]["enabled"] is True
    assert {d["module"] for d in manifest["sriov"]["vf_drivers"]} >= {"iavf", "ixgbevf"}
    assert manifest["firewall"]["backend"] == "nftables" and manifest["firewall"]["nftables"]


@pytest.mark.image
def test_sbom_validates_and_lists_every_package(published, image_dpkg):
    text = (published / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    debs = {(c["name"], c["version"]) for c in doc["components"]
            if c["purl"].startswith("pkg:deb/debian/")}
    assert debs == {(name, version) for name, version, _ in image_dpkg}
    assert any(c["purl"].startswith("pkg:pypi/octavia@") for c in doc["components"])
    manifest = load(published, "manifest.json")
    assert doc["metadata"]["component"]["hashes"] == [
        {"alg": "SHA-256", "content": manifest["image"]["sha256"]}]


def test_invalid_sbom_is_rejected():
    with pytest.raises(sbom.SbomError, match="does not validate against CycloneDX 1.6"):
        sbom.validate('{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": 3}')


@pytest.mark.image
def test_glance_json(published, built_image):
    glance = load(published, "glance.json")
    manifest = load(published, "manifest.json")
    assert glance["tags"] == ["amphora"]
    assert glance["disk_format"] == "qcow2" and glance["container_format"] == "bare"
    assert glance["properties"] == {
        "hw_architecture": "x86_64", "hw_rng_model": "virtio", "os_distro": "debian",
        "os_version": manifest["os"]["version"], "amp_image_sha256": manifest["image"]["sha256"],
        "amp_image_vf_drivers": ",".join(
            dict.fromkeys(d["module"] for d in manifest["sriov"]["vf_drivers"])),
        "amp_image_agent_python": "3.13"}
    assert "ixgbevf" in glance["properties"]["amp_image_vf_drivers"].split(",")
    argv = shlex.split(glance["command"])
    assert argv[:3] == ["openstack", "image", "create"]
    assert argv[-3:] == ["--file", built_image.name, built_image.name.rsplit(".", 1)[0]]
    pairs = list(zip(argv, argv[1:], strict=False))
    assert ("--tag", "amphora") in pairs and ("--disk-format", "qcow2") in pairs
    assert ("--property", "hw_rng_model=virtio") in pairs


@pytest.mark.image
def test_prefix_and_force_publish_beside_other_files(built_image, scratch):
    dest = scratch / "rel"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    result = publisher.publish_image(built_image, dest, prefix="trixie-", force=True,
                                   name="amphora-trixie", tag="amp")
    assert sorted(result.files) == sorted([
        built_image.name, "trixie-SHA256SUMS", "trixie-manifest.json", "trixie-sbom.cdx.json",
        "trixie-glance.json", "trixie-provenance.json"])
    assert (dest / "notes.txt").read_text() == "mine"
    assert subprocess.run(["sha256sum", "-c", "trixie-SHA256SUMS"], cwd=dest,
                          capture_output=True).returncode == 0
    glance = load(dest, "trixie-glance.json")
    assert glance["name"] == "amphora-trixie" and glance["tags"] == ["amp"]
    assert list(scratch.iterdir()) == [dest]




def assert_one_line_error(result, message):
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("amp-image: error: "), result.stderr
    assert message in lines[0]


@pytest.mark.image
def test_upload_without_a_cloud_writes_nothing(built_image, scratch):
    dest = scratch / "out"
    result = run_publish(str(built_image), "--dest", str(dest), "--upload",
                         env=no_cloud_env(scratch))
    assert_one_line_error(result, "no OpenStack cloud configured; set OS_CLOUD")
    assert not dest.exists()


@pytest.mark.image
def test_upload_with_an_unknown_cloud(built_image, scratch):
    result = run_publish(str(built_image), "--dest", str(scratch / "out"), "--upload",
                         env={**no_cloud_env(scratch), "OS_CLOUD": "nowhere"})
    assert_one_line_error(result, "OpenStack cloud 'nowhere' is not usable")


@pytest.mark.image
def test_an_unreachable_cloud_is_found_before_anything_is_published(built_image, scratch):
    """A cloud whose Keystone is a closed port on this machine: publish asks it before
    writing (an upload that fails later, in Glance, keeps the complete publication:
    tests/test_cloud_glance.py's signed upload)."""
    clouds = scratch / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  closed:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
        "      username: u\n      password: p\n      project_name: x\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
        "    connect_retries: 0\n")
    env = {**no_cloud_env(scratch), "OS_CLIENT_CONFIG_FILE": str(clouds)}
    dest = scratch / "out"
    result = run_publish(str(built_image), "--dest", str(dest), "--upload", "--cloud", "closed",
                         env=env)
    assert_one_line_error(result, "Keystone at http://127.0.0.1:9/v3 does not answer")
    assert not dest.exists()


@pytest.mark.parametrize("setup,args,message", [
    ("missing", [], "no such image"),
    ("tar", [], "is a tar archive, not a bootable disk"),
    ("nonempty", [], "holds files amp-image did not publish ('keep'); choose a new or empty "
                     "folder (or pass --force to publish beside them; they are kept)"),
    ("destfile", [], "is a file; give a folder"),
    ("image", ["--prefix", "../x"], "--prefix '../x'"),
    ("image", ["--name", " "], "image name ' '"),
    ("notimage", [], "qemu-img sees format"),
])
def test_bad_input_is_one_line_error_and_writes_nothing(setup, args, message, tmp_path):
    image, dest = tmp_path / "amp.qcow2", tmp_path / "out"
    if setup == "tar":
        image = tmp_path / "amp.tar"
        image.write_bytes(b"\0" * 1024)
    elif setup == "notimage":
        image.write_bytes(b"\x00\x01not an image" * 64)
        subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(image), "1M"], check=True)
    elif setup != "missing":
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    if setup == "nonempty":
        dest.mkdir()
        (dest / "keep").write_text("x")
    if setup == "destfile":
        dest.write_text("x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_publish(str(image), "--dest", str(dest), *args)
    assert_one_line_error(result, message)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_image_without_dpkg_database_is_refused(tmp_path):
    """A real disk image with an empty ext4 file system: mounted, found wanting."""
    raw = tmp_path / "empty.raw"
    subprocess.run(["truncate", "-s", "16M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(raw)], check=True)
    dest = tmp_path / "out"
    result = run_publish(str(raw), "--dest", str(dest))
    assert_one_line_error(result, "has no dpkg database")
    assert not dest.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.image
def test_failure_while_writing_leaves_nothing(built_image, scratch, monkeypatch):
    def broken(*args, **kw):
        raise sbom.SbomError("the SBOM does not validate (simulated)")

    monkeypatch.setattr(sbom, "sbom_json", broken)
    dest = scratch / "out"
    with pytest.raises(sbom.SbomError):
        publisher.publish_image(built_image, dest)
    assert list(scratch.iterdir()) == []


# --- where publishing writes: a small real disk image, real folders -----------------------

SMALL_STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 13.8
Description: Debian base system miscellaneous files

Package: haproxy
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1
Description: fast and reliable load balancing reverse proxy
"""
OS_RELEASE = ('ID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
              'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')


def make_small_image(folder: Path, name: str = "amp.qcow2", label: str = "one", *,
                     status: str = SMALL_STATUS, files: dict[str, str] | None = None,
                     links: dict[str, str] | None = None) -> Path:
    """A real qcow2 disk image of an ext4 file system holding a dpkg database and
    os-release: enough for publish to mount, read and publish it (no DIB).  files
    (path -> content) and links (path -> target) add to its root file system."""
    root = folder / f"root-{label}"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "var/lib/dpkg/status").write_text(status)
    (root / "etc/os-release").write_text(OS_RELEASE)
    (root / "etc/label").write_text(label)  # a different image per label
    for path, content in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    for path, target in (links or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).symlink_to(target)
    raw = folder / f"{label}.raw"
    subprocess.run(["truncate", "-s", "8M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(raw)], check=True)
    image = folder / name
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    shutil.rmtree(root)
    return image


@pytest.fixture
def images(tmp_path):
    """Two different small images of the same name, and a place to publish them."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    return make_small_image(first, label="one"), make_small_image(second, label="two")


def ours(dest: Path) -> list[str]:
    return json.loads((dest / MARKER_FILE).read_text())["files"]


def sums_verify(dest: Path, sums: str = "SHA256SUMS") -> bool:
    return subprocess.run(["sha256sum", "--strict", "-c", sums], cwd=dest,
                          capture_output=True).returncode == 0


def test_republish_replaces_only_what_amp_image_published(images, tmp_path):
    one, two = images
    dest = tmp_path / "dist"
    assert run_publish(str(one), "--dest", str(dest)).exit_code == 0
    assert sorted(ours(dest)) == sorted(publisher.published_names("amp.qcow2", ""))
    (dest / "notes.txt").write_text("the operator's")
    (dest / "old-release").mkdir()
    (dest / "old-release" / "amp.qcow2").write_text("an older image, kept by hand")

    result = run_publish(str(two), "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert (dest / "notes.txt").read_text() == "the operator's"
    assert (dest / "old-release" / "amp.qcow2").read_text() == "an older image, kept by hand"
    assert sha256_file(dest / "amp.qcow2") == sha256_file(two)
    assert load(dest, "manifest.json")["image"]["sha256"] == sha256_file(two)
    assert sums_verify(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*publisher.published_names("amp.qcow2", ""), MARKER_FILE, "notes.txt",
         "old-release"])
    assert "notes.txt" not in result.stdout  # the summary lists only what was published


def test_republish_with_another_prefix_removes_only_the_earlier_publication(images, tmp_path):
    one, two = images
    dest = tmp_path / "dist"
    dest.mkdir()
    (dest / "README").write_text("kept")
    assert run_publish(str(one), "--dest", str(dest), "--force",
                       "--prefix", "a-").exit_code == 0
    assert run_publish(str(two), "--dest", str(dest), "--prefix", "b-").exit_code == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["README", MARKER_FILE, "amp.qcow2", "b-SHA256SUMS", "b-manifest.json",
         "b-sbom.cdx.json", "b-glance.json", "b-provenance.json"])
    assert (dest / "README").read_text() == "kept"
    assert sums_verify(dest, "b-SHA256SUMS")


def test_folder_of_other_files_is_refused_and_left_alone(images, tmp_path):
    one, _ = images
    dest = tmp_path / "Downloads"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    (dest / "SHA256SUMS").write_text("someone else's sums\n")
    result = run_publish(str(one), "--dest", str(dest))
    assert_one_line_error(result, f"--dest {dest} holds files amp-image did not publish "
                                  "('SHA256SUMS', 'holiday.jpg'); choose a new or empty folder")
    assert sorted(p.name for p in dest.iterdir()) == ["SHA256SUMS", "holiday.jpg"]
    # --force publishes beside them, but never overwrites one of them.
    result = run_publish(str(one), "--dest", str(dest), "--force")
    assert_one_line_error(result, "already has 'SHA256SUMS', which amp-image did not publish "
                                  "and will not overwrite; move it away or use --prefix")
    assert (dest / "SHA256SUMS").read_text() == "someone else's sums\n"
    assert sorted(p.name for p in dest.iterdir()) == ["SHA256SUMS", "holiday.jpg"]


def test_force_publishes_beside_other_files_and_keeps_them(images, tmp_path):
    one, two = images
    dest = tmp_path / "Downloads"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    assert run_publish(str(one), "--dest", str(dest), "--force").exit_code == 0
    assert "holiday.jpg" not in ours(dest)
    # From now on the folder is amp-image's too: a republish needs no --force.
    assert run_publish(str(two), "--dest", str(dest)).exit_code == 0
    assert (dest / "holiday.jpg").read_bytes() == b"\xff\xd8 a photo"
    assert sums_verify(dest)


def test_failure_while_writing_leaves_the_earlier_publication(images, tmp_path, monkeypatch):
    one, two = images
    dest = tmp_path / "dist"
    assert run_publish(str(one), "--dest", str(dest)).exit_code == 0
    (dest / "notes.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    def broken(*args, **kw):
        raise sbom.SbomError("the SBOM does not validate (simulated)")

    monkeypatch.setattr(sbom, "sbom_json", broken)
    with pytest.raises(sbom.SbomError):
        publisher.publish_image(two, dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_a_killed_publish_is_finished_by_the_next(images, tmp_path):
    """What a publish killed in the middle of the swap leaves (a staging folder, both
    publications' files in the record) is amp-image's: the next publish replaces it."""
    one, two = images
    dest = tmp_path / "dist"
    assert run_publish(str(one), "--dest", str(dest)).exit_code == 0
    staging = dest / (STAGING_PREFIX + "killed")
    staging.mkdir()
    (staging / "amp.qcow2").write_text("half a copy")
    (dest / "x-SHA256SUMS").write_text("from the killed publish\n")
    write_marker(dest, [*ours(dest), "x-SHA256SUMS"])
    result = run_publish(str(two), "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*publisher.published_names("amp.qcow2", ""), MARKER_FILE])
    assert sums_verify(dest)


def test_build_publish_dir_checks_the_folder_before_building(tmp_path):
    """A folder of other files is refused at once (here with --dry-run: nothing builds)."""
    dest = tmp_path / "Downloads"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"a photo")
    result = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "amp.qcow2"),
                                       "--publish-dir", str(dest), "--dry-run"])
    assert_one_line_error(result, f"--publish-dir {dest} holds files amp-image did not publish "
                                  "('holiday.jpg'); choose a new or empty folder")
    assert "--force" not in result.stderr
    assert [p.name for p in dest.iterdir()] == ["holiday.jpg"]


def test_build_publish_dir_keeps_other_files(images, tmp_path, monkeypatch):
    """build --publish-dir after a (stubbed: no DIB) build into a folder amp-image published
    into, where the operator keeps a file of their own: only amp-image's files change."""
    from amp_image.builder import dib, host
    from amp_image.builder import run as build_run

    one, two = images
    dest = tmp_path / "dist"
    assert run_publish(str(one), "--dest", str(dest)).exit_code == 0
    (dest / "notes.txt").write_text("kept")
    built = tmp_path / "out" / "amp.qcow2"
    built.parent.mkdir()
    shutil.copyfile(two, built)
    monkeypatch.setattr(build_run, "stop_on_sigterm", lambda: None)
    monkeypatch.setattr(host, "check_tools", lambda: None)
    monkeypatch.setattr(dib, "run_build", lambda plan, **kw: dib.BuildResult(
        built, None, 1.0, tmp_path / "build.log"))
    result = CliRunner().invoke(main, ["build", "-o", str(built), "--publish-dir", str(dest),
                                       "--work-dir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert (dest / "notes.txt").read_text() == "kept"
    assert sha256_file(dest / "amp.qcow2") == sha256_file(two)
    assert sums_verify(dest)


SLOW_PUBLISH = """
import sys, time
from amp_image.publish import publisher
from amp_image.cli import main

def slow_read(root, manifests):
    print("MOUNTED", root, flush=True)
    time.sleep(120)

publisher.read_inventory = slow_read
main(["publish", sys.argv[1], "--dest", sys.argv[2]])
"""


def loops_backed_by(prefix: str) -> list[str]:
    out = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if prefix in line]


def release_test_leftovers(root: str, tmp: Path) -> None:
    if os.path.ismount(root):
        subprocess.run(["umount", root], check=False)
    for line in loops_backed_by(str(tmp)):
        subprocess.run(["losetup", "-d", line.split()[0]], check=False)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_publish_stopped_by_a_signal_leaves_nothing(images, tmp_path, signame):
    """A real publish process, stopped while the image is loop-mounted.  The seam: the
    image is read by a stand-in for read_inventory that waits, so the signal lands while
    the raw copy, the loop device and the mount exist; all three are real."""
    _, image = images
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dest = tmp_path / "dist"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PUBLISH, str(image), str(dest)],
                            env={**os.environ, "TMPDIR": str(tmp)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=with_default_sigint)
    try:
        line = proc.stdout.readline()  # "reading amp.qcow2 (read-only loop mount)"
        while line and not line.startswith("MOUNTED "):
            line = proc.stdout.readline()
        assert line, proc.stderr.read()
        root = line.split(" ", 1)[1].strip()
        assert os.path.ismount(root) and loops_backed_by(str(tmp))
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=STOP_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [root] if os.path.ismount(root) else []
    leftovers += loops_backed_by(str(tmp))
    release_test_leftovers(root, tmp)  # so a failure here leaves this host clean
    assert proc.returncode == 130, err
    assert err.strip() == "amp-image: error: interrupted; nothing was published"
    assert leftovers == []
    assert list(tmp.iterdir()) == []  # no raw copy of the image, no mount point
    assert not dest.exists()


def _naming(folder: Path) -> list[str]:
    """Processes whose command line names folder (a left qemu-storage-daemon)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) + "/" in args:
            found.append(f"{cmdline.parent.name}: {args[:120]}")
    return found


def test_what_a_killed_publish_left_is_released_by_the_next_run(images, tmp_path):
    """kill -9 while the image is exported over FUSE, loop-mounted and mounted: nothing
    of amp-image's runs to undo it.  The next amp-image run that reads an image in the
    same temporary folder finds the view's lock free and releases all three."""
    _, image = images
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PUBLISH, str(image),
                             str(tmp_path / "dist")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("MOUNTED "):
            line = proc.stdout.readline()
        assert line, proc.stderr.read()
        root = line.split(" ", 1)[1].strip()
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)
        left = [root] if os.path.ismount(root) else []
        left += loops_backed_by(str(tmp)) + _naming(tmp)
        assert left, "expected the killed publish to leave its view behind"
        again = subprocess.run([AMP_IMAGE, "publish", str(image), "--dest",
                                str(tmp_path / "dist-2")], env=env, capture_output=True,
                               text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "released what an earlier, killed amp-image left" in again.stderr
        assert not os.path.ismount(root)
        assert loops_backed_by(str(tmp)) == []
        assert _naming(tmp) == []
        assert list(tmp.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        release_test_leftovers(root if "root" in locals() else "", tmp)
        for pid_line in _naming(tmp):
            os.kill(int(pid_line.split(":")[0]), signal.SIGKILL)
        for export in tmp.glob("amp-image-fs.*/image.raw"):
            subprocess.run(["umount", "-l", str(export)], check=False)
