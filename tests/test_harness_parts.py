"""The boot-test harness's building blocks that need no VM: PKI, config drive, shims."""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pycdlib
import pytest
import test_conformance as conformance_suite
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from amp_image.builder.leftovers import release_leftovers
from amp_image.builder.shims import SHIMS_WITHOUT_DM, install_shims
from amp_image.verify import configdrive
from amp_image.verify.pki import ThrowawayPKI, ssh_keypair


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               ec.ECDSA(cert.signature_hash_algorithm))


def test_pki_chain_and_names():
    pki = ThrowawayPKI.create("amp-1")
    verify_signed_by(pki.server.cert, pki.ca.cert)
    verify_signed_by(pki.client.cert, pki.ca.cert)
    verify_signed_by(pki.rogue_client.cert, pki.rogue_ca.cert)
    with pytest.raises(InvalidSignature):
        verify_signed_by(pki.rogue_client.cert, pki.ca.cert)
    cn = pki.server.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "amp-1"
    pem = pki.server_pem()
    assert pem.index(b"BEGIN CERTIFICATE") < pem.index(b"PRIVATE KEY")


def test_ssh_keypair(tmp_path):
    private, public = ssh_keypair(tmp_path)
    assert public.startswith("ssh-ed25519 ")
    assert oct(private.stat().st_mode & 0o777) == "0o600"


def read_iso(path: Path) -> dict[str, bytes]:
    import io

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    files = {}
    for root, _, names in iso.walk(rr_path="/"):
        for name in names:
            rr = f"{root.rstrip('/')}/{name}"
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=rr)
            files[rr] = buf.getvalue()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return files | {"label": label.encode()}


def test_config_drive_layout(tmp_path):
    files = {configdrive.AGENT_CONF: b"conf", configdrive.SERVER_PEM: b"pem"}
    drive = configdrive.ConfigDrive("amp-1", files, "ssh-ed25519 AAAA test",
                                    "52:54:00:00:00:01")
    content = read_iso(drive.write(tmp_path / "cd.iso"))
    assert content["label"] == b"config-2"
    meta = json.loads(content["/openstack/latest/meta_data.json"])
    assert meta["uuid"] == "amp-1"
    assert meta["public_keys"] == {"amp-image-test": "ssh-ed25519 AAAA test"}
    by_path = {f["path"]: content["/openstack" + f["content_path"]] for f in meta["files"]}
    assert by_path == files
    net = json.loads(content["/openstack/latest/network_data.json"])
    assert net["links"][0]["ethernet_mac_address"] == "52:54:00:00:00:01"
    assert net["networks"][0]["type"] == "ipv4_dhcp"
    assert content["/openstack/latest/user_data"].startswith(b"#cloud-config")


def test_agent_conf_names_the_amphora():
    conf = configdrive.agent_conf("amp-1", "10.0.2.2:5555")
    assert "amphora_id = amp-1" in conf
    assert "bind_port = 9443" in conf
    assert f"agent_server_ca = {configdrive.CLIENT_CA}" in conf
    assert f"base_cert_dir = {configdrive.BASE_CERT_DIR}" in conf


def test_agent_conf_renders_octavias_template():
    """The package's Jinja2 template (Octavia's amphora_agent_conf.template), every line."""
    conf = configdrive.agent_conf("a-2", ["192.0.2.1:5555", "192.0.2.2:5555"],
                                  topology="ACTIVE_STANDBY")
    assert conf == textwrap.dedent("""\
    [DEFAULT]
    debug = False
    use_syslog = True
    syslog_log_facility = LOG_LOCAL1

    [haproxy_amphora]
    base_cert_dir = /var/lib/octavia/certs
    base_path = /var/lib/octavia
    bind_host = ::
    bind_port = 9443
    haproxy_cmd = /usr/sbin/haproxy
    respawn_count = 2
    respawn_interval = 2
    user_log_facility = 0
    administrative_log_facility = 1

    [health_manager]
    controller_ip_port_list = 192.0.2.1:5555, 192.0.2.2:5555
    heartbeat_interval = 10
    heartbeat_key = amp-image-test

    [amphora_agent]
    agent_server_ca = /etc/octavia/certs/client_ca.pem
    agent_server_cert = /etc/octavia/certs/server.pem
    agent_request_read_timeout = 180
    amphora_id = a-2
    amphora_udp_driver = keepalived_lvs
    agent_tls_protocol = TLSv1.2

    [controller_worker]
    loadbalancer_topology = ACTIVE_STANDBY
    """)


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")
def test_kpartx_shim_maps_partitions_without_device_mapper(tmp_path):
    """The shim maps a real partitioned loop device as DIB expects, and unmaps it."""
    bin_dir = tmp_path / "bin"
    install_shims(bin_dir, device_mapper=False)
    assert {p.name for p in bin_dir.iterdir()} >= set(SHIMS_WITHOUT_DM)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 64 * 2**20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="1MiB,20MiB,L\n,,L\n", text=True,
                   check=True)
    loop = subprocess.run(["losetup", "--show", "-f", str(disk)], capture_output=True,
                          text=True, check=True).stdout.strip()
    name = Path(loop).name
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    try:
        subprocess.run(["kpartx", "-av", loop], env=env, check=True, capture_output=True)
        subprocess.run(["dmsetup", "--noudevsync", "mknodes"], env=env, check=True)
        part1 = Path(f"/dev/mapper/{name}p1")
        part2 = Path(f"/dev/mapper/{name}p2")
        assert part1.exists() and part2.exists()
        size = subprocess.run(["blockdev", "--getsize64", str(part1)], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert int(size) == 20 * 2**20
        subprocess.run(["dmsetup", "remove", f"{name}p2"], env=env, check=True)
        assert not part2.exists()
        subprocess.run(["kpartx", "-d", loop], env=env, check=True, capture_output=True)
        assert not part1.exists()
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
    assert not release_leftovers(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")
def test_release_leftovers_detaches_loops_under_work_dir(tmp_path):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 2**20)
    loop = subprocess.run(["losetup", "--show", "-f", str(disk)], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert release_leftovers(tmp_path) == [f"losetup -d {loop}"]
    assert release_leftovers(tmp_path) == []


def test_fstrim_shim_never_fails(tmp_path):
    bin_dir = tmp_path / "bin"
    install_shims(bin_dir, device_mapper=False)
    result = subprocess.run([str(bin_dir / "fstrim"), "--verbose", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 0


def _handshake(pki, tmp_path, client_pem_name):
    """A real TLS handshake over a socket pair; (the server's errors, the client's)."""
    import socket
    import ssl
    import threading

    files = pki.write_client_files(tmp_path)
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(pki.server_pem())
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(files["ca"])
    server_ctx.load_cert_chain(server_pem)
    client_ctx = ssl.create_default_context(cafile=str(files["ca"]))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx.load_cert_chain(files[client_pem_name])
    a, b = socket.socketpair()
    server_errors, client_errors = [], []

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True) as conn:
                conn.recv(1)
        except (ssl.SSLError, OSError) as exc:
            server_errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=pki.amphora_id) as conn:
            conn.sendall(b"x")
            conn.recv(1)
    except (ssl.SSLError, OSError) as exc:
        client_errors.append(exc)
    thread.join(5)
    return server_errors, client_errors


def test_pki_handshake_under_strict_verification(tmp_path):
    """The agent runs on Python >= 3.13, whose TLS verifies with X509_STRICT."""
    assert _handshake(ThrowawayPKI.create("amp-1"), tmp_path, "client") == ([], [])


def test_pki_rogue_client_refused(tmp_path):
    """The server (the agent's side) refuses the rogue CA's client certificate, and for
    that reason only: the client verified the server (no hostname or CA error there)."""
    import ssl

    server_errors, client_errors = _handshake(ThrowawayPKI.create("amp-1"), tmp_path,
                                              "rogue_client")
    assert len(server_errors) == 1, (server_errors, client_errors)
    refused = server_errors[0]
    assert isinstance(refused, ssl.SSLCertVerificationError), refused
    assert refused.verify_message in ("unable to get local issuer certificate",
                                      "certificate signature failure"), refused
    assert not [e for e in client_errors if isinstance(e, ssl.SSLCertVerificationError)]


def test_scenario_count_follows_the_modules(tmp_path):
    """tests/test_conformance.py reads the number of conformance scenarios from the
    modules: each test function once per parametrized case, helpers not at all."""
    module = tmp_path / "test_example.py"
    module.write_text("import pytest\n\n"
                      "def test_one():\n    pass\n\n"
                      "@pytest.mark.parametrize('a', [1, 2, 3])\n"
                      "def test_three(a):\n    pass\n\n"
                      "def helper():\n    pass\n")
    assert conformance_suite.scenarios_in(module) == 4
    computed = tmp_path / "test_computed.py"
    computed.write_text("import pytest\nVALUES = [1, 2]\n\n"
                        "@pytest.mark.parametrize('a', VALUES)\n"
                        "def test_two(a):\n    pass\n")
    with pytest.raises(ValueError, match="literal list"):
        conformance_suite.scenarios_in(computed)
    modules = conformance_suite.default_modules()
    assert modules and all(m.is_file() and conformance_suite.scenarios_in(m) > 0 for m in modules)

