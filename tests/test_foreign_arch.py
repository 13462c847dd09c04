"""arm64 on an amd64 host (issue 12): the binfmt_misc handler a build registers, the QEMU
command an arm64 image boots with, and the one-line errors when the host cannot.

The binfmt tests register a real handler in the kernel (root, as CI runs) and remove it;
the QEMU tests only map a spec to argv (nothing boots: the arm64 boot is
scripts/test-arm64)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amp_image.builder import binfmt
from amp_image.errors import HostError
from amp_image.image.records import architecture_of
from amp_image.verify import platforms, vm
from amp_image.verify.vmspec import MachineSpec

pytestmark = pytest.mark.skipif(binfmt.host_arch() != "amd64", reason="amd64 host tests")


def test_registration_line_matches_the_kernels_format():
    line = binfmt.registration("amp-image-aarch64-7", binfmt.FOREIGN_ARCHES["arm64"],
                               Path("/usr/bin/qemu-aarch64"))
    name, kind, offset, magic, mask, interpreter, flags = line.split(":")[1:]
    assert (name, kind, offset, interpreter, flags) == (
        "amp-image-aarch64-7", "M", "", "/usr/bin/qemu-aarch64", "OCF")
    # 20 bytes each: the ELF header up to e_machine (0xb7 = EM_AARCH64).
    assert magic.count("\\x") == mask.count("\\x") == 20
    assert magic.endswith("\\x02\\x00\\xb7\\x00")


def test_the_host_architecture_needs_no_emulation(tmp_path):
    binfmt.check_emulation("amd64", tmp_path)
    with binfmt.foreign_binaries("amd64", tmp_path) as handler:
        assert handler is None
    assert list(tmp_path.iterdir()) == []


def test_an_architecture_amp_image_cannot_emulate_is_one_line():
    with pytest.raises(HostError, match=r"cannot build ppc64el images .* build on a "
                                        r"ppc64el host") as err:
        binfmt.check_emulation("ppc64el")
    assert "\n" not in str(err.value)


def test_a_missing_emulator_names_setup_host(monkeypatch):
    monkeypatch.setattr(binfmt.shutil, "which", lambda name: None)
    with pytest.raises(HostError, match=r"no static qemu-aarch64 found.*setup-host --arm64"):
        binfmt.check_emulation("arm64")


def _mounted(path: Path) -> bool:
    return subprocess.run(["findmnt", str(path)], capture_output=True).returncode == 0


# QEMU's scripts/qemu-binfmt-conf.sh, aarch64, as the kernel prints them back.
AARCH64_MAGIC = "7f454c460201010000000000000000000200b700"
AARCH64_MASK = "ffffffffffffff00fffffffffffffffffeffffff"


@pytest.mark.skipif(os.geteuid() != 0 or not binfmt.shutil.which("qemu-aarch64"),
                    reason="registers a kernel handler: needs root and qemu-user")
def test_the_handler_lives_for_the_build_only():
    was_mounted = _mounted(binfmt.BINFMT_MISC)
    with binfmt.foreign_binaries("arm64") as handler:
        entry = binfmt.BINFMT_MISC / handler
        lines = entry.read_text().splitlines()
        assert lines[0] == "enabled" and "flags: OCF" in lines
        assert f"magic {AARCH64_MAGIC}" in lines and f"mask {AARCH64_MASK}" in lines
        assert (binfmt.LOCK_DIR / f"{handler}.lock").is_file()
        # A live build's handler is not stale.
        assert handler not in binfmt.remove_stale_handlers()
    assert not entry.exists() and not (binfmt.LOCK_DIR / f"{handler}.lock").exists()
    assert _mounted(binfmt.BINFMT_MISC) == was_mounted


def test_a_killed_builds_handler_is_removed_by_the_next(tmp_path, monkeypatch):
    """A killed build left its handler and lock file, the lock no longer held: the next
    foreign build removes it.  One without a lock file here (another container's) stays."""
    monkeypatch.setattr(binfmt, "LOCK_DIR", tmp_path / "locks")
    binfmt.LOCK_DIR.mkdir()
    handlers = tmp_path / "binfmt"
    handlers.mkdir()
    stale, foreign, other = (handlers / "amp-image-aarch64-dead", handlers /
                             "amp-image-aarch64-elsewhere", handlers / "qemu-aarch64")
    for entry in (stale, foreign, other):
        entry.write_text("enabled\n")
    (binfmt.LOCK_DIR / f"{stale.name}.lock").write_text("")
    assert binfmt.remove_stale_handlers(handlers) == [stale.name]
    # The kernel removes an entry written -1; this folder only records the write.
    assert stale.read_text() == "-1"
    assert foreign.read_text() == other.read_text() == "enabled\n"
    assert not (binfmt.LOCK_DIR / f"{stale.name}.lock").exists()


def test_a_dynamic_emulator_is_refused(tmp_path, monkeypatch):
    """A dynamically linked qemu-aarch64 (bookworm's qemu-user 7.2) cannot run inside
    the chroot, which has no host loader."""
    dynamic = tmp_path / "qemu-aarch64"
    dynamic.write_bytes(Path("/bin/true").read_bytes())
    dynamic.chmod(0o755)
    assert binfmt.needs_loader(dynamic)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HostError, match=r"no static qemu-aarch64 found.*setup-host --arm64"):
        binfmt.emulator("arm64")


@pytest.mark.skipif(not binfmt.shutil.which("qemu-aarch64"), reason="needs qemu-user")
def test_qemu_users_emulator_is_static():
    assert not binfmt.needs_loader(Path(binfmt.shutil.which("qemu-aarch64")))


def test_arm64_boots_on_virt_with_uefi_and_a_scsi_config_drive(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "platform_for", lambda arch: platforms.PLATFORMS[arch])
    machine = vm.Machine(MachineSpec(image=tmp_path / "a.qcow2", workdir=tmp_path,
                                     config_drive=tmp_path / "cd.iso", arch="arm64"))
    machine.ports = {22: 2222, 9443: 9444}
    machine.console_dir = tmp_path
    cmd = machine.command()
    assert cmd[0] == "qemu-system-aarch64"
    assert cmd[cmd.index("-machine") + 1] == "virt,accel=tcg"
    assert cmd[cmd.index("-cpu") + 1] == "max,pauth-impdef=on"
    drives = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-drive"]
    assert "if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd" in drives
    assert f"if=pflash,format=raw,file={tmp_path / 'efivars.fd'}" in drives
    assert f"file={tmp_path / 'cd.iso'},if=none,id=cdrom,media=cdrom,readonly=on" in drives
    assert "virtio-scsi-pci,id=scsi" in cmd and "scsi-cd,drive=cdrom,bus=scsi.0" in cmd
    # UEFI with fresh variables boots the root disk first, not the network.
    assert f"file={tmp_path / 'overlay.qcow2'},if=none,id=root,format=qcow2,cache=unsafe" \
        in drives
    assert "virtio-blk-pci,drive=root,bootindex=0" in cmd


def test_arm64_under_kvm_takes_the_hosts_cpu(tmp_path, monkeypatch):
    """pauth-impdef is a TCG property: QEMU refuses it under KVM (an arm64 host)."""
    monkeypatch.setattr(vm, "platform_for", lambda arch: platforms.PLATFORMS[arch])
    machine = vm.Machine(MachineSpec(image=tmp_path / "a.qcow2", workdir=tmp_path,
                                     arch="arm64", accel="kvm"))
    machine.ports = {22: 2222, 9443: 9444}
    machine.console_dir = tmp_path
    cmd = machine.command()
    assert cmd[cmd.index("-cpu") + 1] == "host"


def test_amd64_keeps_q35_seabios_and_an_ide_config_drive(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "platform_for", lambda arch: platforms.PLATFORMS[arch])
    machine = vm.Machine(MachineSpec(image=tmp_path / "a.qcow2", workdir=tmp_path,
                                     config_drive=tmp_path / "cd.iso"))
    machine.ports = {22: 2222, 9443: 9444}
    machine.console_dir = tmp_path
    cmd = machine.command()
    assert cmd[:3] == ["qemu-system-x86_64", "-machine", "q35,accel=tcg"]
    assert "-cpu" not in cmd and not any("pflash" in arg for arg in cmd)
    assert f"file={tmp_path / 'cd.iso'},media=cdrom,readonly=on" in cmd
    assert f"file={tmp_path / 'overlay.qcow2'},if=virtio,format=qcow2,cache=unsafe" in cmd


def test_a_foreign_guest_is_always_emulated():
    def never(accel):
        raise AssertionError("no KVM probe for a foreign guest")
    assert platforms.choose_accel(never, "auto", "arm64")[0] == "tcg"
    with pytest.raises(HostError, match="KVM cannot run arm64 guests.*--accel tcg"):
        platforms.choose_accel(never, "kvm", "arm64")


def test_missing_arm64_qemu_names_setup_host(monkeypatch):
    monkeypatch.setattr(platforms.shutil, "which", lambda name: None)
    with pytest.raises(HostError, match=r"qemu-system-aarch64 .*not found.*"
                                        r"scripts/setup-host --arm64"):
        platforms.platform_for("arm64")


@pytest.mark.parametrize(("recorded", "kernels", "arch"), [
    ("arm64", ["6.12.57+deb13-arm64"], "arm64"),
    ("", ["6.1.0-56-amd64"], "amd64"),               # an image older than the record
    ("", ["6.12.57+deb13-cloud-arm64"], "arm64"),
    ("", [], ""),
])
def test_the_architecture_comes_from_the_record_or_the_kernel(recorded, kernels, arch):
    assert architecture_of(recorded, kernels) == arch


def test_setup_host_refuses_an_unknown_argument():
    done = subprocess.run(["bash", str(Path(__file__).parent.parent / "scripts/setup-host"),
                           "--arm65"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == ("setup-host: error: unknown argument --arm65; "
                                   "use --arm64, --cloud or nothing")


@pytest.mark.skipif(os.geteuid() != 0, reason="the build command checks root first")
def test_an_architecture_this_host_cannot_build_fails_before_the_build(tmp_path):
    """One line, exit 1, nothing written: no work dir, no image, no handler."""
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([str(Path(sys.executable).parent / "amp-image"), "build", "--arch",
                           "ppc64le", "-o", str(out / "x.qcow2"), "--work-dir",
                           str(tmp_path / "work")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr == ("amp-image: error: this amd64 host cannot build ppc64le images "
                           "(amp-image emulates arm64 only); build on a ppc64le host\n")
    assert list(out.iterdir()) == [] and not (tmp_path / "work").exists()
