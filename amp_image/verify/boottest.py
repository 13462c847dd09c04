"""Boot an amphora image the way Nova and the Octavia controller would, and reach it.

One context manager, :func:`booted_amphora`, owns the whole life of the test
VM: PKI and config drive, accelerator choice, boot, readiness on the SSH
banner (for an image with sshd) and on the agent's mutual-TLS API, and the
kill at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.image import imagefs
from amp_image.image.records import read_image_record
from amp_image.verify import configdrive
from amp_image.verify.agentapi import AgentClient, Handshake, tls_handshake
from amp_image.verify.emulated_sriov import SriovNetwork
from amp_image.verify.pki import ThrowawayPKI, ssh_keypair
from amp_image.verify.platforms import choose_accel
from amp_image.verify.vm import Machine
from amp_image.verify.vmspec import SEED_FLAVOR, Flavor, MachineSpec, Nic

CONTROLLER = "10.0.2.2:5555"  # QEMU user networking's host address; nothing listens
BOOTLOADER_GRACE_S = 180


@dataclass
class BootReport:
    image: Path
    amphora_id: str
    accel: str = ""
    accel_reason: str = ""
    boot_path: str = ""
    flavor: str = ""
    # False for an image without sshd (-n/--no-sshd): no SSH readiness, no SSH checks.
    ssh: bool = True
    ssh_banner_s: float = 0.0
    agent_ready_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"image             {self.image}",
            f"amphora id        {self.amphora_id}",
            f"accelerator       {self.accel} ({self.accel_reason})",
            f"boot path         {self.boot_path}",
            f"flavor            {self.flavor}",
            (f"QEMU -> SSH       {self.ssh_banner_s:.1f} s" if self.ssh else
             "QEMU -> SSH       not applicable: the image has no sshd"),
            f"QEMU -> agent     {self.agent_ready_s:.1f} s (GET /1.0/info, mutual TLS)",
            *(f"note              {n}" for n in self.notes),
        ]


@dataclass
class BootedAmphora:
    machine: Machine
    report: BootReport
    pki: ThrowawayPKI
    client_files: dict[str, Path]
    ssh_config: Path
    workdir: Path
    sriov: SriovNetwork | None = None

    @property
    def amphora_id(self) -> str:
        return self.report.amphora_id

    def agent(self, client: str | None = "client", expect_id: str = "") -> AgentClient:
        """An API client; client=None presents no certificate.

        expect_id is the name the server certificate must carry (default: this
        amphora's id, as the controller checks).
        """
        pem = self.client_files[client] if client else None
        return AgentClient(self.machine.ports[9443], expect_id or self.amphora_id,
                           self.client_files["ca"], pem, host=self.machine.spec.host_address)

    def handshake(self, client: str | None = "client", expect_id: str = "",
                  timeout: float = 30) -> Handshake:
        """How a TLS connection to the agent ends (see agentapi.Handshake); client=None
        presents no certificate, client="rogue_client" one from an unrelated CA."""
        pem = self.client_files[client] if client else None
        return tls_handshake(self.machine.spec.host_address, self.machine.ports[9443],
                             expect_id or self.amphora_id, self.client_files["ca"], pem,
                             timeout)

    def testinfra_host(self, fresh: bool = False):
        """A testinfra host over SSH; fresh=True opens a new connection (after a reboot)."""
        if not self.report.ssh:
            raise RuntimeError("this amphora was booted without SSH (its image has no sshd)")
        import testinfra
        from testinfra.backend import get_backend
        from testinfra.host import Host

        spec, kw = "paramiko://amphora", {"ssh_config": str(self.ssh_config)}
        return Host(get_backend(spec, **kw)) if fresh else testinfra.get_host(spec, **kw)

    def ssh_password_login(self, user: str, password: str) -> bool:
        """Whether sshd lets user in with password alone (no key offered) to a shell
        that answers."""
        import paramiko

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(self.machine.spec.host_address, self.machine.ports[22],
                           username=user, password=password, look_for_keys=False,
                           allow_agent=False, timeout=30, auth_timeout=30)
            _, out, _ = client.exec_command("id -un", timeout=30)
            return out.read().decode().strip() == user
        except paramiko.AuthenticationException:
            return False
        finally:
            client.close()


def _write_ssh_config(workdir: Path, address: str, port: int, identity: Path) -> Path:
    path = workdir / "ssh_config"
    path.write_text(
        "Host amphora\n"
        f"  HostName {address}\n"
        f"  Port {port}\n"
        "  User root\n"
        f"  IdentityFile {identity}\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
    )
    return path


def _config_drive(workdir: Path, amphora_id: str, pki: ThrowawayPKI, public_key: str,
                  mgmt_mac: str, rsyslog_conf: str | None = None) -> Path:
    """rsyslog_conf: the controller's 10-rsyslog.conf (log offloading); default: the
    hand-written one that keeps the logs on the amphora."""
    files = {
        configdrive.AGENT_CONF: configdrive.agent_conf(amphora_id, CONTROLLER).encode(),
        configdrive.SERVER_PEM: pki.server_pem(),
        configdrive.CLIENT_CA: pki.ca.cert_pem,
        configdrive.RSYSLOG_CONF: (configdrive.RSYSLOG if rsyslog_conf is None
                                   else rsyslog_conf).encode(),
    }
    drive = configdrive.ConfigDrive(amphora_id, files, public_key, mgmt_mac)
    return drive.write(workdir / "config-drive.iso")


def _boot(spec: MachineSpec, grace: float) -> Machine | None:
    """Start a VM; return it once its kernel runs, or None (VM killed) if it never does."""
    machine = Machine(spec)
    machine.start()
    try:
        machine.wait_for(machine.kernel_running, grace, "kernel start")
        return machine
    except TimeoutError:
        machine.stop()
        return None
    except BaseException:
        machine.stop()
        raise


@contextmanager
def booted_amphora(image: Path, *, workdir: Path | None = None, accel: str = "auto",
                   boot: str = "auto", sriov: bool = False,
                   flavor: Flavor = SEED_FLAVOR,
                   extra_nics: list[Nic] | None = None,
                   machine_type: str = "", timeout: float = 900,
                   keep_workdir: bool = False,
                   host_ports: dict[int, int] | None = None,
                   host_address: str = "127.0.0.1",
                   ssh: bool = True,
                   controller_pki: ThrowawayPKI | None = None,
                   rsyslog_conf: str | None = None) -> Iterator[BootedAmphora]:
    """Boot IMAGE and yield it once it is ready.

    ssh=False is for an image without sshd: readiness is the agent's API alone.
    flavor: the VM's vCPUs, RAM and root disk; the seed's (1 vCPU, 1 GiB, 3 GiB) unless
    a test needs more (a multi-vCPU amphora).
    controller_pki: the CA and client of an amphora booted before, so that one
    controller reaches both (ACTIVE_STANDBY); this amphora gets its own server
    certificate from that CA.
    rsyslog_conf: the config drive's /etc/rsyslog.d/10-rsyslog.conf as a controller
    rendered it (log offloading); default: logs kept on the amphora.
    """
    image = image.resolve()
    arch = read_image_record(image).architecture or "amd64"
    own_tmp = workdir is None
    amphora_id = str(uuid.uuid4())
    report = BootReport(image, amphora_id, ssh=ssh, flavor=str(flavor))
    mgmt_mac = "52:54:00:12:34:56"
    machine = None
    # Everything this creates (work dir, PKI, client files, SSH key, config drive)
    # is made inside the try, so the finally removes it on any failure.
    try:
        if own_tmp:
            workdir = Path(tempfile.mkdtemp(prefix="amp-image-vm."))
        workdir.mkdir(parents=True, exist_ok=True)
        pki = (controller_pki.for_amphora(amphora_id) if controller_pki
               else ThrowawayPKI.create(amphora_id))
        client_files = pki.write_client_files(workdir / "pki")
        identity, public_key = ssh_keypair(workdir)
        drive = _config_drive(workdir, amphora_id, pki, public_key, mgmt_mac, rsyslog_conf)
        sriov_net = SriovNetwork.create() if sriov else None
        nics = list(extra_nics or []) + ([sriov_net.nic()] if sriov_net else [])

        def spec(accel_name: str, direct=None) -> MachineSpec:
            return MachineSpec(image=image, workdir=workdir / "vm", config_drive=drive,
                               flavor=flavor, arch=arch, accel=accel_name, machine=machine_type,
                               direct_boot=direct,
                               mgmt_mac=mgmt_mac, extra_nics=nics, host_ports=host_ports,
                               host_address=host_address)

        def probe(accel_name: str) -> bool:
            probe_vm = _boot(spec(accel_name), 90)
            if probe_vm:
                probe_vm.stop()
            return probe_vm is not None

        report.accel, report.accel_reason = choose_accel(probe, accel, arch)
        if boot in ("auto", "bootloader"):
            machine = _boot(spec(report.accel), BOOTLOADER_GRACE_S)
            report.boot_path = "image bootloader (GRUB), as Nova boots it"
            if machine is None and boot == "bootloader":
                raise TimeoutError("the image's bootloader did not start the kernel "
                                   f"within {BOOTLOADER_GRACE_S} s")
        if machine is None:
            with imagefs.mounted_image(image, workdir) as root:
                direct = imagefs.copy_boot_files(root, workdir / "boot")
            if boot == "auto":
                report.notes.append("bootloader did not start the kernel; fell back to "
                                    "direct kernel boot with the image's kernel and initramfs")
            report.boot_path = "direct kernel boot (image's kernel, initramfs, GRUB cmdline)"
            machine = Machine(spec(report.accel, direct))
            machine.start()
        ssh_config = _write_ssh_config(workdir, machine.spec.host_address, machine.ports[22],
                                       identity)
        booted = BootedAmphora(machine, report, pki, client_files, ssh_config, workdir,
                               sriov_net)
        if ssh:
            report.ssh_banner_s = machine.wait_ssh_banner(timeout)
        client = booted.agent()
        report.agent_ready_s = machine.wait_for(client.info_ok, timeout, "agent API", 2.0)
        yield booted
    finally:
        if machine:
            machine.stop()
        if own_tmp and workdir is not None and not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
