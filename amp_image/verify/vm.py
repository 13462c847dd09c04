"""A QEMU virtual machine owned by one context manager, start to kill.

The tested image is never written: the VM boots a throw-away qcow2 overlay.
Readiness is the SSH banner (QEMU's user networking accepts a forwarded
connection before the guest listens, so a bare TCP accept proves nothing).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amp_image import events
from amp_image.errors import PlanError
from amp_image.image.qemuimg import image_format, virtual_size
from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.platforms import Platform, platform_for
from amp_image.verify.vmspec import MachineSpec

# A guest printing one of these has left the firmware, the bootloader and the
# kernel's decompressor behind: the accelerator works.
KERNEL_RUNNING = ("Run /init as init process", "systemd[1]:", "Welcome to")


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL if the harness dies, so no VM outlives it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machine:
    """Boot a VM; `with Machine(spec) as vm:` guarantees it is killed afterwards."""

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.ports: dict[int, int] = {}
        self.serial_log = spec.workdir / "serial.log"
        # The console's socket (serialconsole.py): in a short private folder of its
        # own, as a Unix socket path must fit in 108 bytes.
        self.console_dir: Path | None = None
        self.overlay = spec.workdir / "overlay.qcow2"
        # UEFI's variable store: a fresh copy of the firmware's template per boot.
        self.firmware_vars = spec.workdir / "efivars.fd"

    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self) -> list[str]:
        spec = self.spec
        platform = platform_for(spec.arch)
        hostfwd = ",".join(f"hostfwd=tcp:{spec.host_address}:{self.ports[p]}-:{p}"
                           for p in spec.forward_ports)
        cmd = [
            platform.qemu, "-machine", f"{spec.machine or platform.machine},accel={spec.accel}",
            *platform.cpu_args(spec.accel), "-m", str(spec.flavor.ram_mb),
            "-smp", str(spec.flavor.vcpus),
            "-display", "none", "-no-user-config", "-nodefaults",
            "-chardev", f"socket,id=ttyS0,path={self.console_socket},server=on,wait=off,"
                        f"logfile={self.serial_log}",
            "-serial", "chardev:ttyS0",
            *self._root_disk(platform),
            "-netdev", f"user,id=mgmt,{hostfwd}",
            "-device", f"virtio-net-pci,netdev=mgmt,mac={spec.mgmt_mac}",
            "-device", "virtio-rng-pci",
        ]
        if platform.firmware:
            cmd += ["-drive", f"if=pflash,format=raw,readonly=on,file={platform.firmware[0]}",
                    "-drive", f"if=pflash,format=raw,file={self.firmware_vars}"]
        if spec.config_drive and platform.scsi_cdrom:
            cmd += ["-device", "virtio-scsi-pci,id=scsi",
                    "-drive", f"file={spec.config_drive},if=none,id=cdrom,media=cdrom,"
                              "readonly=on",
                    "-device", "scsi-cd,drive=cdrom,bus=scsi.0"]
        elif spec.config_drive:
            cmd += ["-drive", f"file={spec.config_drive},media=cdrom,readonly=on"]
        for i, nic in enumerate(spec.extra_nics):
            mac = f",mac={nic.mac}" if nic.mac else ""
            bus = ""
            if nic.own_root_port:
                cmd += ["-device", f"pcie-root-port,id=rp{i},chassis={i + 1},slot={i + 1}"]
                bus = f",bus=rp{i}"
            cmd += ["-netdev", f"{nic.netdev},id=nic{i}",
                    "-device", f"{nic.device},netdev=nic{i}{mac}{bus}"]
        if spec.direct_boot:
            kernel, initrd, cmdline = spec.direct_boot
            cmd += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
        return cmd

    def _root_disk(self, platform: Platform) -> list[str]:
        if platform.disk_bootindex:
            return ["-drive", f"file={self.overlay},if=none,id=root,format=qcow2,cache=unsafe",
                    "-device", "virtio-blk-pci,drive=root,bootindex=0"]
        return ["-drive", f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe"]

    def start(self) -> None:
        spec = self.spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        fmt = image_format(spec.image)
        # The flavor's disk, as Nova sizes the instance's disk: larger than the image, the
        # rest is free space behind the root partition for the image to grow into.
        size = [f"{spec.flavor.disk_gb}G"] if spec.flavor.disk_gb else []
        if size and virtual_size(spec.image) > spec.flavor.disk_gb * 2**30:
            raise PlanError(f"{spec.image.name} ({virtual_size(spec.image) / 2**30:.1f} GiB) "
                            f"does not fit the flavor's {spec.flavor.disk_gb} GiB disk; "
                            "boot it with a larger --flavor disk, as Nova would refuse it")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
                        str(self._pinned_image()), str(self.overlay), *size], check=True)
        self.ports = dict(spec.host_ports or {p: free_port() for p in spec.forward_ports})
        self.serial_log.write_bytes(b"")
        firmware = platform_for(spec.arch).firmware
        if firmware:
            shutil.copyfile(firmware[1], self.firmware_vars)
        self.console_dir = Path(tempfile.mkdtemp(prefix="amp-console-"))
        cmd = self.command()
        (spec.workdir / "qemu.cmd").write_text(" ".join(cmd) + "\n")
        self.started = time.monotonic()
        with open(spec.workdir / "qemu.out", "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        events.record("boot", image=spec.image.name,
                      boot="direct" if spec.direct_boot else "bootloader",
                      arch=spec.arch, accel=spec.accel)

    def _pinned_image(self) -> Path:
        """A hard link to the image, so a rebuild replacing it cannot change a running VM."""
        link = self.spec.workdir / "base-image"
        link.unlink(missing_ok=True)
        try:
            os.link(self.spec.image.resolve(), link)
            return link
        except OSError:
            return self.spec.image.resolve()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.overlay.unlink(missing_ok=True)
        self.firmware_vars.unlink(missing_ok=True)
        (self.spec.workdir / "base-image").unlink(missing_ok=True)
        if self.console_dir:
            shutil.rmtree(self.console_dir, ignore_errors=True)
            self.console_dir = None

    @property
    def console_socket(self) -> Path:
        """The guest's ttyS0 (QEMU listens; the serial log records it either way)."""
        assert self.console_dir is not None, "the VM is not started"
        return self.console_dir / "ttyS0"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serial_text(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def qemu_output(self) -> str:
        path = self.spec.workdir / "qemu.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str,
                 interval: float = 1.0) -> float:
        """Poll until ready(); return seconds since QEMU started.  Raise on timeout or death."""
        def alive_and_ready() -> bool:
            if not self.alive():
                raise TimeoutError(f"QEMU exited while waiting for {what}: "
                                   f"{self.qemu_output().strip()[-300:]}")
            return ready()

        try:
            poll_until(alive_and_ready, timeout=timeout, interval=interval)
        except PollTimeout:
            raise TimeoutError(f"no {what} after {timeout:.0f} s; serial log "
                               f"{self.serial_log}") from None
        return self.elapsed()

    def ssh_banner(self) -> bool:
        try:
            with socket.create_connection((self.spec.host_address, self.ports[22]),
                                          timeout=3) as s:
                s.settimeout(5)
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def wait_ssh_banner(self, timeout: float = 600) -> float:
        return self.wait_for(self.ssh_banner, timeout, "SSH banner")

    def kernel_running(self) -> bool:
        text = self.serial_text()
        return any(marker in text for marker in KERNEL_RUNNING)
