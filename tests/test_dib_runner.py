"""The DIB runner's environment and progress handling (no DIB run: pure functions)."""

import subprocess
from pathlib import Path

from amp_image.builder import leftovers
from amp_image.builder.dib_env import dib_environment
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.plan import make_plan
from amp_image.builder.progress import Progress, last_error


def test_host_pip_settings_do_not_reach_dib():
    plan = make_plan(BuildOptions(), HostContext(proxies={"https_proxy": "http://p:3128"}),
                     Path("/elements"))
    base = {"PATH": "/usr/bin", "PIP_FIND_LINKS": "/opt/wheels", "PIP_INDEX_URL": "x",
            "TMPDIR": "/somewhere", "VIRTUAL_ENV": "/venv", "PYTHONPATH": "/p",
            "https_proxy": "http://p:3128", "HOME": "/root"}
    env = dib_environment(plan, Path("/work/bin"), base)
    assert not [k for k in env if k.startswith("PIP_")]
    assert "TMPDIR" not in env and "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    assert env["https_proxy"] == "http://p:3128"
    assert env["PATH"].split(":")[0] == "/work/bin"
    assert env["DIB_RELEASE"] == "trixie"


def test_progress_reports_phase_and_script_once():
    lines: list[str] = []
    progress = Progress(lines.append, start=0.0)
    run = "dib-run-parts Running "
    for log_line in [
        "Running hooks from /tmp/dib_build.x/hooks/root.d",
        run + "/tmp/dib_build.x/hooks/root.d/08-debootstrap",
        "some apt output",
        run + "/tmp/in_target.d/install.d/75-amphora-agent-install",
        run + "/tmp/in_target.d/install.d/75-amphora-agent-install",
    ]:
        progress.feed("2026-11-25 09:00:00.000 | " + log_line)
    assert [line.split("] ", 1)[1] for line in lines] == [
        "root.d", "root.d/08-debootstrap", "install.d/75-amphora-agent-install"]


def _log(tmp_path: Path, *lines: str) -> Path:
    log = tmp_path / "build.log"
    log.write_text("".join(f"2026-11-25 10:00:00.000 | {line}\n" for line in lines))
    return log


RUN = "dib-run-parts Running "


def test_last_error_names_the_element_message(tmp_path):
    log = _log(tmp_path,
               "ERROR: an earlier, unrelated error",
               RUN + "/tmp/in_target.d/post-install.d/70-check-vf-drivers",
               "sriov-vf-drivers: VF driver module(s) missing from the image's kernel: foo",
               "sriov-vf-drivers: install a kernel that ships them",
               "Unmount /work/test_missing_thing_failed/mnt/proc")
    assert last_error(log, ("vm", "sriov-vf-drivers")) == (
        ": post-install.d/70-check-vf-drivers failed: sriov-vf-drivers: VF driver module(s) "
        "missing from the image's kernel: foo")


def test_last_error_after_a_restored_layer_names_the_failing_hook(tmp_path):
    """The layer cache's notes on the hooks it skipped are "<element>: " lines of hooks
    that completed; the cause is in the hook that did not (issue 28: a bad --constraints
    file was reported as '74-amp-layer-packages skipped')."""
    log = _log(tmp_path,
               RUN + "/tmp/dib_build.x/hooks/root.d/07-amp-layer-restore",
               "amphora-layer-cache: skipping root.d/75-debian-minimal-baseinstall",
               "dib-run-parts 07-amp-layer-restore completed",
               RUN + "/tmp/in_target.d/install.d/74-amp-layer-packages",
               "amphora-layer-cache: install.d/74-amp-layer-packages skipped: the restored "
               "layer holds its work",
               "dib-run-parts 74-amp-layer-packages completed",
               RUN + "/tmp/in_target.d/install.d/75-amphora-agent-install",
               "Collecting octavia==19.0.0",
               "ERROR: Invalid requirement: 'root:x:0:0:root:/root:/bin/bash': Expected end",
               "ERROR: a later consequence",
               "Unmount /tmp/dib_build.x/mnt/proc")
    assert last_error(log, ("amphora-layer-cache", "amphora-agent")) == (
        ": install.d/75-amphora-agent-install failed: ERROR: Invalid requirement: "
        "'root:x:0:0:root:/root:/bin/bash': Expected end")


def test_last_error_names_gits_fatal_line_in_the_failing_hook(tmp_path):
    log = _log(tmp_path,
               RUN + "/tmp/dib_build.x/hooks/root.d/07-amp-layer-restore",
               "amphora-layer-cache: skipping root.d/75-debian-minimal-baseinstall",
               "dib-run-parts 07-amp-layer-restore completed",
               RUN + "/tmp/dib_build.x/hooks/extra-data.d/98-source-repositories",
               "Cloning into '/root/.cache/image-create/source-repositories/x'...",
               "fatal: '/nonexistent/repo' does not appear to be a git repository",
               "fatal: Could not read from remote repository.")
    assert last_error(log, ("amphora-layer-cache",)) == (
        ": extra-data.d/98-source-repositories failed: fatal: '/nonexistent/repo' does not "
        "appear to be a git repository")


def test_last_error_names_a_hook_that_printed_no_error(tmp_path):
    log = _log(tmp_path, RUN + "/tmp/in_target.d/install.d/10-quiet", "+ false")
    assert last_error(log, ("vm",)) == ": install.d/10-quiet failed"


def test_last_error_shortens_a_long_error_line(tmp_path):
    log = _log(tmp_path, RUN + "/tmp/in_target.d/install.d/10-x", "ERROR: " + "y" * 500)
    error = last_error(log, ())
    assert error.startswith(": install.d/10-x failed: ERROR: yyy") and error.endswith("...")
    assert len(error) < 300


def test_last_error_falls_back_to_error_lines(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("x | E: Unable to locate package nope\nx | Unmount /failed/path\n")
    assert last_error(log, ("vm",)) == ": E: Unable to locate package nope"



def test_last_error_names_a_full_disk_whatever_failed_on_it(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("x | qemu-img: error while writing at byte 0: No space left on device\n"
                   "x | ERROR: qemu-img convert failed\n")
    assert last_error(log, ("vm",)).startswith(": no space left on device; free space where "
                                               "--work-dir and --cache-dir are")

class Commands:
    """A stand-in for subprocess (leftovers._run): records each command; kpartx -d removes
    the mappings it is told to, dmsetup remove removes the one named."""

    def __init__(self, mapper: Path, kpartx_removes: tuple[str, ...] = ()):
        self.mapper, self.kpartx_removes, self.ran = mapper, kpartx_removes, []

    def __call__(self, cmd):
        self.ran.append(cmd)
        if cmd[:2] == ["kpartx", "-d"]:
            for name in self.kpartx_removes:
                (self.mapper / name).unlink()
        if cmd[:2] == ["dmsetup", "remove"]:
            (self.mapper / cmd[2]).unlink()
        return subprocess.CompletedProcess(cmd, 0, "", "")


def released_leftovers(monkeypatch, tmp_path, commands, disk_loops, part_loops=()):
    monkeypatch.setattr(leftovers, "MAPPER_DIR", commands.mapper)
    monkeypatch.setattr(leftovers, "_run", commands)
    monkeypatch.setattr(leftovers, "_mounts_under", lambda root: [f"{root}/tmp/dib/mnt"])
    monkeypatch.setattr(leftovers, "_loops_backed_by", lambda backing: list(
        disk_loops if backing[0].endswith("/") else part_loops))
    return leftovers.release_leftovers(tmp_path)


def test_device_mapper_leftovers_are_removed_with_kpartx_and_dmsetup(monkeypatch, tmp_path):
    """Device-mapper host (no such host here, so subprocess is stubbed): the partition
    mappings of a killed build's loop device are removed with `kpartx -d`, a mapping
    kpartx left with `dmsetup remove`, then the loop device is detached."""
    mapper = tmp_path / "mapper"
    mapper.mkdir()
    for name in ("loop7p1", "loop7p2", "loop70p1"):
        (mapper / name).write_text("")  # device nodes, in real life
    commands = Commands(mapper, kpartx_removes=("loop7p1",))
    released = released_leftovers(monkeypatch, tmp_path, commands, ["/dev/loop7"])
    assert commands.ran == [
        ["umount", "-l", f"{tmp_path}/tmp/dib/mnt"],
        ["kpartx", "-d", "/dev/loop7"],
        ["dmsetup", "remove", "loop7p2"],
        ["losetup", "-d", "/dev/loop7"],
    ]
    assert sorted(p.name for p in mapper.iterdir()) == ["loop70p1"]  # another device's
    assert "dmsetup remove loop7p2" in released


def test_shim_leftovers_are_unlinked_and_their_loops_detached(monkeypatch, tmp_path):
    """Host without device-mapper (subprocess stubbed): the kpartx shim's links are
    removed and its partition loops detached; kpartx and dmsetup are not run."""
    mapper = tmp_path / "mapper"
    mapper.mkdir()
    (mapper / "loop7p1").symlink_to("/dev/loop8")
    commands = Commands(mapper)
    released_leftovers(monkeypatch, tmp_path, commands, ["/dev/loop7"], ["/dev/loop8"])
    assert commands.ran == [
        ["umount", "-l", f"{tmp_path}/tmp/dib/mnt"],
        ["losetup", "-d", "/dev/loop8"],
        ["losetup", "-d", "/dev/loop7"],
    ]
    assert list(mapper.iterdir()) == []


def test_a_failed_removal_is_reported(monkeypatch, tmp_path):
    """subprocess stubbed: dmsetup says the mapping is busy; the cleanup says so."""
    mapper = tmp_path / "mapper"
    mapper.mkdir()
    (mapper / "loop7p1").write_text("")

    def busy(cmd):
        failed = cmd[0] in ("kpartx", "dmsetup")
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, "",
                                           "device-mapper: remove ioctl failed: Device or "
                                           "resource busy\n" if failed else "")

    monkeypatch.setattr(leftovers, "MAPPER_DIR", mapper)
    monkeypatch.setattr(leftovers, "_run", busy)
    assert leftovers.release_partitions("/dev/loop7") == [
        "kpartx -d /dev/loop7 failed: device-mapper: remove ioctl failed: Device or resource "
        "busy",
        "dmsetup remove loop7p1 failed: device-mapper: remove ioctl failed: Device or "
        "resource busy"]


def test_mounts_under_a_work_dir_deepest_first(tmp_path):
    """Real tmpfs mounts (root, as the suite runs), one with a space in its path: the
    mount table comes from findmnt's JSON, unescaped."""
    outer = tmp_path / "work dir"
    inner = outer / "mnt"
    outer.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "amp-test", str(outer)], check=True)
    try:
        inner.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "amp-test", str(inner)], check=True)
        assert leftovers._mounts_under(tmp_path) == [str(inner), str(outer)]
    finally:
        subprocess.run(["umount", str(inner)], capture_output=True)
        subprocess.run(["umount", str(outer)], capture_output=True)
    assert leftovers._mounts_under(tmp_path) == []


def test_a_killed_builds_loops_on_its_tmpfs_are_detached(tmp_path):
    """Real tmpfs, loop device and ext4 mount (root, as the suite runs), laid out as a
    build killed in finalise.d leaves them: the image file on a tmpfs in the work dir,
    a loop on it, its filesystem mounted.  The loop is found before the tmpfs is
    unmounted, when its backing file still names the work dir."""
    image_dir = tmp_path / "work" / "tmp" / "dib_image.x"
    mnt = tmp_path / "work" / "tmp" / "dib_build.x" / "mnt"
    image_dir.mkdir(parents=True)
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "amp-test", str(image_dir)], check=True)
    image = image_dir / "image0.raw"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    loop = subprocess.run(["losetup", "--show", "-f", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, str(mnt)], check=True)
        released = leftovers.release_leftovers(tmp_path / "work")
        attached = subprocess.run(["losetup", "-l", "-n", "-O", "NAME"], check=True,
                                  capture_output=True, text=True).stdout.split()
        assert loop not in attached, released
        assert f"losetup -d {loop}" in released
        assert leftovers._mounts_under(tmp_path) == []
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        subprocess.run(["umount", str(image_dir)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)
