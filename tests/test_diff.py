"""amp-image diff: published folders (manifests written here), small real qcow2 images,
and the real build against its own publication."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_publish import assert_one_line_error, make_small_image, run_publish

from amp_image.cli import main
from amp_image.diff.files import Entry, compare_files
from amp_image.diff.read import read_side
from amp_image.diff.versions import compare_debian_versions


def run_diff(*args):
    return CliRunner().invoke(main, ["diff", *args])


def package(name, version, arch="amd64"):
    return {"name": name, "version": version, "architecture": arch, "source": name,
            "source_version": version}


OLD = {
    "schema": "amp-image-manifest/1",
    "tool": {"name": "amp-image", "version": "0.1.0"},
    "image": {"file": "amphora-x64-haproxy.qcow2", "disk_format": "qcow2",
              "size": 383_534_592, "virtual_size": 2 * 2**30, "sha256": "a" * 64},
    "build_date": "2026-11-24T02:00:00Z",
    "os": {"distro": "debian", "release": "trixie", "version": "13",
           "pretty_name": "Debian GNU/Linux 13 (trixie)"},
    "architecture": "amd64",
    "kernels": ["6.12.118+deb13-amd64"],
    "agent": {"version": "19.0.0", "source_type": "pypi", "source": "pypi", "git_ref": None,
              "python_packages": [{"name": "octavia", "version": "19.0.0"},
                                  {"name": "cryptography", "version": "46.0.1"},
                                  {"name": "Flask", "version": "3.1.0"}]},
    "enabled_units": ["multi-user.target.wants/amphora-agent.service",
                      "timers.target.wants/apt-daily.timer"],
    "packages": [package("base-files", "13.8+deb13u8"), package("haproxy", "3.0.11-1"),
                 package("keepalived", "1:2.3.3-1"), package("libssl3t64", "3.5.1-1"),
                 package("openssl", "3.5.1-1"), package("tzdata", "2025b-4+deb13u1", "all"),
                 package("libc6", "2.41-12", "i386"),
                 package("linux-image-6.12.118+deb13-amd64", "6.12.118-1"),
                 package("gone", "1.0")],
}


def newer(old: dict) -> dict:
    """The nightly rebuild: security updates, a new kernel, an agent bump."""
    new = copy.deepcopy(old)
    new["image"].update(size=old["image"]["size"] + 3 * 2**20, sha256="b" * 64)
    new["build_date"] = "2026-11-25T02:00:00Z"
    new["kernels"] = ["6.12.119+deb13-amd64"]
    new["agent"]["version"] = "19.0.1"
    new["agent"]["python_packages"] = [{"name": "octavia", "version": "19.0.1"},
                                       {"name": "cryptography", "version": "46.0.1"},
                                       {"name": "flask", "version": "3.0.3"},
                                       {"name": "pyroute2", "version": "0.9.4"}]
    new["enabled_units"] = ["multi-user.target.wants/amphora-agent.service",
                            "multi-user.target.wants/haproxy.service"]
    versions = {"haproxy": "3.0.11-1+deb13u1", "libssl3t64": "3.5.1-1+deb13u1",
                "openssl": "3.5.1-1~bpo13+1", "tzdata": "2025b-4+deb13u1"}
    new["packages"] = [
        {**p, "version": versions.get(p["name"], p["version"])} for p in old["packages"]
        if p["name"] not in ("gone", "linux-image-6.12.118+deb13-amd64")
    ] + [package("linux-image-6.12.119+deb13-amd64", "6.12.119-1"), package("new-tool", "2.0")]
    return new


def write_folder(folder: Path, manifest: dict, name: str = "manifest.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    return (write_folder(tmp_path / "2026-11-24", OLD),
            write_folder(tmp_path / "2026-11-25", newer(OLD)))


def test_json_diff_of_two_published_folders(folders):
    old, new = folders
    result = run_diff(str(old), str(new), "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    assert diff["old"]["path"] == str(old) and diff["new"]["kind"] == "published"
    assert not diff["identical"]
    assert diff["size"] == {"old": 383_534_592, "new": 383_534_592 + 3 * 2**20,
                            "changed": True, "change": 3 * 2**20}
    assert diff["kernel"] == {"old": ["6.12.118+deb13-amd64"], "new": ["6.12.119+deb13-amd64"],
                              "changed": True}
    assert diff["agent"]["old"]["version"] == "19.0.0"
    assert diff["agent"]["new"]["version"] == "19.0.1"
    assert diff["haproxy"] == {"old": "3.0.11-1", "new": "3.0.11-1+deb13u1", "changed": True}
    assert diff["keepalived"] == {"old": "1:2.3.3-1", "new": "1:2.3.3-1", "changed": False}
    packages = diff["packages"]
    assert packages["old_count"] == 9 and packages["new_count"] == 9
    assert packages["added"] == [
        {"name": "linux-image-6.12.119+deb13-amd64", "version": "6.12.119-1"},
        {"name": "new-tool", "version": "2.0"}]
    assert packages["removed"] == [
        {"name": "gone", "version": "1.0"},
        {"name": "linux-image-6.12.118+deb13-amd64", "version": "6.12.118-1"}]
    assert packages["upgraded"] == [
        {"name": "haproxy", "old": "3.0.11-1", "new": "3.0.11-1+deb13u1"},
        {"name": "libssl3t64", "old": "3.5.1-1", "new": "3.5.1-1+deb13u1"}]
    # ~ sorts before anything: a backport is older than the release it backports.
    assert packages["downgraded"] == [{"name": "openssl", "old": "3.5.1-1",
                                       "new": "3.5.1-1~bpo13+1"}]
    python = diff["agent_python_packages"]
    assert python["upgraded"] == [{"name": "octavia", "old": "19.0.0", "new": "19.0.1"}]
    assert python["downgraded"] == [{"name": "flask", "old": "3.1.0", "new": "3.0.3"}]
    assert python["added"] == [{"name": "pyroute2", "version": "0.9.4"}]
    assert diff["enabled_units"] == {
        "recorded": True, "added": ["multi-user.target.wants/haproxy.service"],
        "removed": ["timers.target.wants/apt-daily.timer"]}


def test_foreign_architecture_packages_are_their_own(folders):
    old, new = folders
    diff = json.loads(run_diff(str(old), str(new), "--json").stdout)
    assert "libc6:i386" not in [e["name"] for k in ("added", "removed")
                                for e in diff["packages"][k]]
    sides = [read_side(p) for p in folders]
    assert sides[0].packages["libc6:i386"] == "2.41-12" and "tzdata" in sides[0].packages


def test_table(folders):
    old, new = folders
    result = run_diff(str(old), str(new))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"old  {old} (published amphora-x64-haproxy.qcow2, built 2026-11-24T02:00:00Z)" in out
    lines = out.splitlines()
    row = {line[2:16].strip(): line for line in lines if line[:1] in ("*", " ")
           and len(line.split()) > 2}
    assert row["size"].startswith("*") and "(+3.0 MiB)" in row["size"]
    assert row["kernel"].startswith("*") and "6.12.118+deb13-amd64" in row["kernel"] \
        and "6.12.119+deb13-amd64" in row["kernel"]
    assert "octavia 19.0.0 (pypi)" in row["agent"] and "octavia 19.0.1 (pypi)" in row["agent"]
    assert row["haproxy"].startswith("*") and row["keepalived"].startswith(" ")
    assert "packages (9 -> 9): 2 upgraded, 1 downgraded, 2 added, 2 removed" in out
    assert any(line.split() == ["upgraded", "libssl3t64", "3.5.1-1", "->", "3.5.1-1+deb13u1"]
               for line in lines)
    assert any(line.split() == ["added", "new-tool", "2.0"] for line in lines)
    assert "agent Python packages (3 -> 4): 1 upgraded, 1 downgraded, 1 added" in out
    assert "enabled units: 1 added, 1 removed" in out
    assert "  added      multi-user.target.wants/haproxy.service" in out


def test_same_folder_twice_has_no_changes(folders):
    old, _ = folders
    result = run_diff(str(old), str(old / "manifest.json"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "the images are identical (same SHA-256)" in out
    assert "packages (9 -> 9): no changes" in out
    assert "enabled units: no changes" in out
    assert not any(line.startswith("*") for line in out.splitlines())


def test_older_manifest_without_units(tmp_path):
    old = {k: v for k, v in OLD.items() if k != "enabled_units"}
    result = run_diff(str(write_folder(tmp_path / "a", old)),
                      str(write_folder(tmp_path / "b", newer(OLD))))
    assert result.exit_code == 0, result.output
    assert "enabled units: not recorded" in result.stdout


def test_prefixed_publication(tmp_path):
    folder = write_folder(tmp_path / "release", OLD, "trixie-manifest.json")
    assert read_side(folder).image_file == "amphora-x64-haproxy.qcow2"


@pytest.mark.parametrize("setup,message", [
    ("missing", "no such image or published folder"),
    ("text", "is neither an image (no partition table or file system in it) nor a published "
             "folder"),
    ("empty dir", "is a folder without a manifest.json: not a folder amp-image published"),
    ("two manifests", "holds 2 manifests (a-manifest.json, b-manifest.json); give the one"),
    ("other json", "is not an amp-image manifest"),
    ("bad json", "is not readable JSON"),
    ("tar", "is a tar archive, not a disk image"),
])
def test_bad_input_is_one_line(setup, message, tmp_path):
    things = []
    for n in ("old", "new"):
        path = tmp_path / n
        if setup == "text":
            path.write_text("hello\n")
        elif setup == "empty dir":
            path.mkdir()
        elif setup == "two manifests":
            write_folder(path, OLD, "a-manifest.json")
            write_folder(path, OLD, "b-manifest.json")
        elif setup == "other json":
            path = tmp_path / f"{n}.json"
            path.write_text(json.dumps({"bomFormat": "CycloneDX"}))
        elif setup == "bad json":
            path = tmp_path / f"{n}.json"
            path.write_text("{")
        elif setup == "tar":
            path = tmp_path / f"{n}.tar"
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "1M"],
                           check=True)
        things.append(str(path))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_diff(*things)
    assert_one_line_error(result, message)
    assert things[0] in result.stderr  # OLD is the first one named
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# --- small real images ------------------------------------------------------------------------

STATUS_ONE = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 13.8

Package: haproxy
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1

Package: keepalived
Status: install ok installed
Architecture: amd64
Version: 1:2.3.3-1
"""
STATUS_TWO = STATUS_ONE.replace("3.0.11-1", "3.0.11-1+deb13u1").replace(
    "Version: 1:2.3.3-1", "Version: 1:2.3.3-1\n\nPackage: tcpdump\nStatus: install ok installed\n"
    "Architecture: amd64\nVersion: 4.99.5-2")
AGENT = ("AMPHORA_AGENT_VERSION={v}\nAMPHORA_AGENT_SOURCE_TYPE=pypi\n"
         "AMPHORA_AGENT_SOURCE=pypi\n")
DIST = "opt/amphora-agent-venv/lib/python3.13/site-packages/octavia-{v}.dist-info/METADATA"


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> tuple[Path, Path]:
    images = []
    for label, status, version, units in (
            ("one", STATUS_ONE, "19.0.0", ["amphora-agent.service"]),
            ("two", STATUS_TWO, "19.0.1", ["amphora-agent.service", "haproxy.service"])):
        folder = tmp_path_factory.mktemp(label)
        images.append(make_small_image(folder, label=label, status=status, files={
            "etc/amp-image/amphora-agent": AGENT.format(v=version),
            "etc/amp-image/kernels": "6.12.118+deb13-amd64\n",
            DIST.format(v=version): f"Name: octavia\nVersion: {version}\n"},
            links={f"etc/systemd/system/multi-user.target.wants/{u}": f"/usr/lib/{u}"
                   for u in units}))
    return images[0], images[1]


def test_diff_of_two_images(small_images):
    one, two = small_images
    result = run_diff(str(one), str(two), "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    assert diff["old"]["kind"] == diff["new"]["kind"] == "image"
    assert diff["haproxy"] == {"old": "3.0.11-1", "new": "3.0.11-1+deb13u1", "changed": True}
    assert diff["packages"]["added"] == [{"name": "tcpdump", "version": "4.99.5-2"}]
    assert diff["agent"]["old"]["version"] == "19.0.0"
    assert diff["agent_python_packages"]["upgraded"] == [
        {"name": "octavia", "old": "19.0.0", "new": "19.0.1"}]
    assert diff["enabled_units"]["added"] == ["multi-user.target.wants/haproxy.service"]
    assert diff["size"]["old"] == one.stat().st_size
    assert diff["virtual_size"] == {"old": 8 * 2**20, "new": 8 * 2**20, "changed": False}


def test_image_against_its_own_publication(small_images, tmp_path):
    one, two = small_images
    dest = tmp_path / "dist"
    assert run_publish(str(one), "--dest", str(dest)).exit_code == 0
    result = run_diff(str(dest), str(one))
    assert result.exit_code == 0, result.output
    assert "the images are identical (same SHA-256)" in result.stdout
    assert "packages (3 -> 3): no changes" in result.stdout
    assert "enabled units: no changes" in result.stdout
    # and a published folder against a newer image
    diff = json.loads(run_diff(str(dest), str(two), "--json").stdout)
    assert diff["old"]["kind"] == "published" and diff["new"]["kind"] == "image"
    assert diff["packages"]["upgraded"] == [
        {"name": "haproxy", "old": "3.0.11-1", "new": "3.0.11-1+deb13u1"}]


def test_file_by_file_diff_of_two_images(small_images):
    """Real ext4 images (root): --files walks both trees."""
    one, two = small_images
    result = run_diff(str(one), str(two), "--files", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    site = "opt/amphora-agent-venv/lib/python3.13/site-packages/"
    assert files["content_changed"] == ["etc/amp-image/amphora-agent", "etc/label",
                                        "var/lib/dpkg/status"]
    assert files["metadata_changed"] == []
    assert files["only_in_old"] == [site + "octavia-19.0.0.dist-info",
                                    DIST.format(v="19.0.0")]
    assert files["only_in_new"] == [
        "etc/systemd/system/multi-user.target.wants/haproxy.service",
        site + "octavia-19.0.1.dist-info", DIST.format(v="19.0.1")]
    assert files["by_group"] == {"etc/amp-image": 1, "etc/label": 1, "var/lib": 1,
                                 "opt/amphora-agent-venv": 4, "etc/systemd": 1}
    assert files["same"] == files["old_paths"] - 5 > 5
    table = run_diff(str(one), str(two), "--files").stdout
    assert "3 content, 0 mode/owner, 2 only old, 3 only new" in table
    assert "  only new   etc/systemd/system/multi-user.target.wants/haproxy.service" in table


def test_an_image_against_itself_file_by_file(small_images):
    one, _ = small_images
    files = json.loads(run_diff(str(one), str(one), "--files", "--json").stdout)["files"]
    assert files["same"] == files["old_paths"] == files["new_paths"]
    assert files["by_group"] == {}


def test_file_by_file_needs_two_images(small_images, tmp_path):
    one, _ = small_images
    folder = write_folder(tmp_path / "published", OLD)
    result = run_diff(str(folder), str(one), "--files")
    assert_one_line_error(result, "is a published folder, whose manifest lists no files")


def test_mode_and_owner_changes_are_told_from_content():
    """compare_files on its own (a pure function)."""
    entry = Entry("file", 0o644, (0, 0), 3, "abc")
    old = {"a": entry, "b": entry, "c": entry}
    new = {"a": entry, "b": dataclasses.replace(entry, mode=0o600),
           "c": dataclasses.replace(entry, size=4, content="abcd")}
    result = compare_files(old, new)
    assert (result["same"], result["content_changed"], result["metadata_changed"]) == (
        1, ["c"], ["b"])


# --- the real build ---------------------------------------------------------------------------


@pytest.mark.image
def test_real_image_against_its_publication(built_image, tmp_path):
    dest = tmp_path / "dist"
    assert run_publish(str(built_image), "--dest", str(dest)).exit_code == 0
    result = run_diff(str(built_image), str(dest), "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    assert diff["identical"]
    assert diff["packages"]["old_count"] == diff["packages"]["new_count"] > 100
    assert not any(diff["packages"][k] for k in ("added", "removed", "upgraded", "downgraded"))
    assert diff["haproxy"]["old"] and diff["keepalived"]["old"]
    assert "multi-user.target.wants/amphora-agent.service" in json.loads(
        (dest / "manifest.json").read_text())["enabled_units"]
    assert "octavia" in {p["name"].lower() for p in json.loads(
        (dest / "manifest.json").read_text())["agent"]["python_packages"]}
    (dest / "amphora-x64-haproxy.qcow2").unlink(missing_ok=True)


# --- dpkg's ordering --------------------------------------------------------------------------

PAIRS = [("1.0", "1.0"), ("1.0", "1.1"), ("1.0-1", "1.0-2"), ("1:1.0", "2.0"),
         ("1.0~rc1", "1.0"), ("1.0", "1.0+b1"), ("3.0.11-1", "3.0.11-1+deb13u1"),
         ("3.5.1-1", "3.5.1-1~bpo13+1"), ("1.0a", "1.0"), ("1.0.0", "1.0"), ("2.41-12", "2.41-9"),
         ("1:1.3.dfsg+really1.3.1-1+b1", "1:1.3.dfsg-1"), ("0.9", "0.10"), ("1.0-1", "1.0"),
         ("6.12.118-1", "6.12.119-1"), ("1.01", "1.1"), ("1~~", "1~~a"), ("1~", "1"),
         ("2025b-4+deb13u1", "2025b-4"), ("7.88.1-10+deb12u12", "8.14.1-2")]


@pytest.mark.parametrize("a,b", PAIRS)
def test_debian_version_order_is_dpkgs(a, b):
    def dpkg(op):
        return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0

    ours = compare_debian_versions(a, b)
    assert (ours < 0, ours == 0, ours > 0) == (dpkg("lt"), dpkg("eq"), dpkg("gt"))
