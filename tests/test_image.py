"""The real default --sriov image, built with DIB, inspected offline (read-only loop mount)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from amp_image.builder.compat import RELEASE_PYTHON
from amp_image.builder.element_defaults import default_vf_drivers
from amp_image.image.dpkg import parse_dpkg_status
from amp_image.image.imagefs import mounted_image
from amp_image.image.inventory import parse_dib_environment
from amp_image.image.python_version import python3_version
from amp_image.image.records import key_values, read_record

pytestmark = pytest.mark.image

REQUIRED_PACKAGES = ("haproxy", "keepalived", "ipvsadm", "nftables", "cryptsetup-bin",
                     "cloud-init", "rsyslog", "python3", "linux-image-amd64")
BUILD_ONLY = re.compile(r"^(git|perl|gcc(-\d+)?|g\+\+(-\d+)?|make|build-essential|libc6-dev|"
                        r"linux-headers-.*|python3(\.\d+)?-dev)$")
AGENT_TOOLS = ("amphora-agent", "amphora-health-checker", "amphora-interface",
               "haproxy-vrrp-check", "prometheus-proxy")


@pytest.fixture(scope="module")
def root(built_image: Path):
    with mounted_image(built_image) as mounted:
        yield mounted


def installed_packages(root: Path) -> set[str]:
    status = (root / "var/lib/dpkg/status").read_text()
    packages = set()
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^(\w[\w-]*): (.*)$", stanza, re.MULTILINE))
        if fields.get("Status") == "install ok installed":
            packages.add(fields["Package"])
    return packages


@pytest.mark.parametrize("package", REQUIRED_PACKAGES)
def test_package_installed(root, package):
    assert package in installed_packages(root)


def test_no_build_only_packages(root):
    assert not sorted(p for p in installed_packages(root) if BUILD_ONLY.match(p))


@pytest.mark.parametrize("tool", ("gcc", "cc", "g++", "make"))
def test_no_compiler_binaries(root, tool):
    assert not (root / "usr/bin" / tool).exists()


def test_the_releases_python_is_the_one_the_image_ships(root):
    """RELEASE_PYTHON, which decides the agent series a Debian release can take, names
    the Python that release really ships: read from the built image's python3 package
    and os-release (it fails if the table and the archive part)."""
    release = key_values((root / "etc/os-release").read_text())["VERSION_CODENAME"]
    shipped = python3_version({p.name: p.version for p in
                               parse_dpkg_status((root / "var/lib/dpkg/status").read_text())})
    assert RELEASE_PYTHON[("debian", release)] == shipped


def test_kernel_is_the_full_debian_kernel(root):
    kernels = [p.name for p in (root / "lib/modules").iterdir()]
    assert kernels and all(k.endswith("-amd64") and "cloud" not in k for k in kernels)


@pytest.mark.parametrize("tool", AGENT_TOOLS)
def test_agent_console_scripts_linked(root, tool):
    link = root / "usr/local/bin" / tool
    assert link.is_symlink()
    assert os.readlink(link) == f"/opt/amphora-agent-venv/bin/{tool}"
    assert (root / "opt/amphora-agent-venv/bin" / tool).is_file()


def test_agent_help_runs_in_the_image(root):
    result = subprocess.run(["chroot", str(root), "/usr/local/bin/amphora-agent", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--config-file" in result.stdout


def test_agent_version_and_pyroute2(root):
    site = next((root / "opt/amphora-agent-venv/lib").glob("python3*/site-packages"))
    assert list(site.glob("octavia-19.0.0.dist-info"))
    assert list(site.glob("pyroute2-0.8.1.dist-info")), "pyroute2 not at the constrained pin"
    record = (root / "etc/amp-image/amphora-agent").read_text()
    assert "AMPHORA_AGENT_VERSION=19.0.0" in record
    assert "AMPHORA_AGENT_SOURCE_TYPE=pypi" in record
    vendored = Path(__file__).parent.parent / "amp_image/data/upper-constraints-2026.2.txt"
    digest = hashlib.sha256(vendored.read_bytes()).hexdigest()
    assert f"AMPHORA_AGENT_CONSTRAINTS_SHA256={digest}" in record


def test_no_test_suites_in_the_agent_venv(root):
    """A slim image's venv has no distribution's top-level tests package (octavia's,
    oslo's, keystoneauth1's, ...), and the agent's own package is whole."""
    site = next((root / "opt/amphora-agent-venv/lib").glob("python3*/site-packages"))
    assert sorted(p.relative_to(site).as_posix() for p in site.glob("*/tests")) == []
    assert (site / "octavia/amphorae/backends/agent/api_server/server.py").is_file()


def test_octavia_dirs(root):
    assert (root / "etc/octavia/certs").is_dir()
    assert (root / "var/lib/octavia").is_dir()


@pytest.mark.parametrize("unit,target", [
    ("amphora-agent.service", "multi-user.target.wants"),
    ("certs-ramfs.service", "amphora-agent.service.wants"),
])
def test_units_enabled(root, unit, target):
    assert (root / "etc/systemd/system" / target / unit).is_symlink()


def test_agent_unit_requires_certs_ramfs(root):
    unit = (root / "usr/lib/systemd/system/amphora-agent.service").read_text()
    assert "Requires=certs-ramfs.service" in unit


@pytest.mark.parametrize("unit", ("haproxy.service", "keepalived.service"))
def test_packaged_daemons_disabled(root, unit):
    assert not (root / "etc/systemd/system/multi-user.target.wants" / unit).exists()


def test_rsyslog_octavia_socket_configured(root):
    conf = (root / "etc/rsyslog.d/55-octavia-socket.conf").read_text()
    assert 'Socket="/run/rsyslog/octavia/log"' in conf


def test_vf_modules_present_with_pci_aliases(root):
    kernel = next((root / "lib/modules").iterdir())
    aliases = (kernel / "modules.alias").read_text()
    recorded = (root / "etc/amp-image/vf-drivers").read_text().splitlines()
    assert [line.split()[0] for line in recorded] == list(default_vf_drivers())
    for line in recorded:
        module, _, path = line.split()
        assert (root / path.lstrip("/")).is_file(), path
        assert re.search(rf"^alias pci:\S+ {module}$", aliases, re.MULTILINE), module


def test_netfilter_modules_present(root):
    kernel = next((root / "lib/modules").iterdir())
    dep = (kernel / "modules.dep").read_text()
    for module in ("nf_tables", "nft_ct", "nf_conntrack", "nft_reject_inet"):
        assert f"/{module}.ko" in dep, module


def test_nftables_on(root):
    assert (root / "etc/amp-image/firewall").read_text().strip() == "AMP_FIREWALL=nftables"
    assert (root / "usr/sbin/nft").exists()


def test_no_root_password(root):
    root_entry = (root / "etc/shadow").read_text().splitlines()[0].split(":")
    assert root_entry[0] == "root"
    assert root_entry[1] in ("*", "!", "!*") or root_entry[1].startswith("!")


def test_ssh_host_keys_not_baked_in(root):
    assert not list((root / "etc/ssh").glob("ssh_host_*_key"))


def test_runtime_ssh_keygen_unit_masked(root):
    """DIB's ssh-keygen.service fails at DSA on OpenSSH 10; cloud-init makes the keys."""
    unit = root / "etc/systemd/system/ssh-keygen.service"
    assert unit.is_symlink() and os.readlink(unit) == "/dev/null"
    assert not os.path.lexists(root / "etc/systemd/system/multi-user.target.wants"
                               / "ssh-keygen.service")
    cloud_cfg = (root / "etc/cloud/cloud.cfg").read_text()
    assert re.search(r"^\s*-\s*ssh\s*$", cloud_cfg, re.MULTILINE), "cloud-init's ssh module is off"


def test_sshd_recorded(root):
    """amp-image test reads this to know whether it can reach the amphora over SSH."""
    assert (root / "etc/amp-image/sshd").read_text() == "AMP_SSHD=present\n"
    assert (root / "usr/sbin/sshd").exists()


TEST_CA = "amp-image test-only CA"  # scripts/test-ca-bundle


def cert_names(pem: bytes) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem)]


def has_test_ca(names: list[str]) -> bool:
    return any(TEST_CA in name for name in names)


def build_environment(root: Path, image: Path) -> dict[str, str]:
    for manifests in (root / "etc/dib-manifests", image.with_name(image.stem + ".d") /
                      "dib-manifests"):
        if (manifests / "dib_environment").is_file():
            return parse_dib_environment((manifests / "dib_environment").read_text())
    return {}


def test_build_staging_and_host_ca_not_in_image(root, built_image: Path):
    """The image was built with a CA bundle (the host's plus a test-only CA, as the test
    suite builds it), which pip used in the chroot: none of it may stay in the image."""
    bundle = build_environment(root, built_image).get("DIB_AMP_CA_BUNDLE", "")
    assert bundle and has_test_ca(cert_names(Path(bundle).read_bytes())), (
        f"the test image was built without a bundle holding the {TEST_CA} ({bundle or 'none'})"
        ", so this test would check nothing; build it as tests/conftest.py or scripts/test does")
    assert not (root / "tmp/in_target.d").exists()
    assert not [str(p) for p in root.rglob("ca-bundle.pem")]
    assert not (root / "usr/local/share/ca-certificates/amp-image-build-host.crt").exists()
    store = cert_names((root / "etc/ssl/certs/ca-certificates.crt").read_bytes())
    assert len(store) > 100 and not has_test_ca(store)


def test_manifests_beside_the_image(built_image: Path):
    record = read_record(built_image.with_name(built_image.stem + ".d"))
    assert record.vf_drivers == list(default_vf_drivers())
    assert record.agent["AMPHORA_AGENT_VERSION"] == "19.0.0"
    assert record.firewall == "nftables"
    assert record.sshd == "present"
    assert record.packages.get("haproxy")


def test_build_left_no_mounts_or_loops(built_image: Path):
    work = str(Path("~/.cache/amp-image/work").expanduser())
    mounts = Path("/proc/self/mountinfo").read_text()
    assert work not in mounts
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True,
                           text=True).stdout
    assert work not in loops


def test_grub_config_boots_without_build_host_devices(root):
    cfg = (root / "boot/grub/grub.cfg").read_text()
    assert "search --no-floppy --fs-uuid --set=root" in cfg
    assert not re.search(r"\(loop\d+\)|^\s*loopback ", cfg, re.MULTILINE)
    assert re.search(r"^\s*set timeout=0\s*$", cfg, re.MULTILINE)
    assert "console=ttyS0" in cfg


def test_no_state_of_the_build_every_amphora_would_share(root):
    """Each amphora makes its own iSCSI initiator name at first boot; the initrd has no
    copy of the build's, nor ldconfig's cache of the build's inodes."""
    assert "GenerateName=yes" in (root / "etc/iscsi/initiatorname.iscsi").read_text()
    assert not (root / "var/cache/ldconfig/aux-cache").exists()
    assert (root / "etc/initramfs-tools/conf.d/open-iscsi").read_text() == \
        "NO_ISCSI_IN_INITRAMFS=yes\n"
