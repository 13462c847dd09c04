"""amp-image check-certs: the controller's PKI as operators make it, judged by a real TLS
handshake against a server configured as the agent's gunicorn is on Python 3.11 and 3.13.

The PKI is made with the openssl command line as Octavia's certificate guide makes it
(amp_image.verify.guide_pki); the broken variants are made with cryptography here.
"""

from __future__ import annotations

import datetime
import json
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amp_image.cli.certs import check_certs
from amp_image.errors import AmpImageError
from amp_image.image.python_version import parse_python_version
from amp_image.verify.certs.check import check_client
from amp_image.verify.certs.handshake import agent_context
from amp_image.verify.certs.image_python import python_version_of_image
from amp_image.verify.guide_pki import make_guide_pki, run_openssl
from amp_image.verify.pki import ThrowawayPKI

AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")
PY311, PY313 = (3, 11), (3, 13)


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's PKI with the guide's key sizes (4096-bit CAs), made once."""
    return make_guide_pki(tmp_path_factory.mktemp("guide") / "pki")


def _pem(cert: x509.Certificate, key) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.fixture(scope="module")
def issue(guide, tmp_path_factory):
    """issue(name, ...) -> a cert-and-key file for a client certificate signed by the guide's
    client CA key, with the extensions asked for (not the guide's)."""
    ca_cert = x509.load_pem_x509_certificate(guide.client_ca.read_bytes())
    ca_key = serialization.load_pem_private_key(guide.client_ca_key.read_bytes(), None)
    out = tmp_path_factory.mktemp("issued")

    def make(name, *, aki=True, eku=ExtendedKeyUsageOID.CLIENT_AUTH, days=(-1, 30)):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now + datetime.timedelta(days=days[0]))
                   .not_valid_after(now + datetime.timedelta(days=days[1]))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  False)
                   .add_extension(x509.ExtendedKeyUsage([eku]), False))
        if aki:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        path = out / f"{name}.pem"
        path.write_bytes(_pem(builder.sign(ca_key, hashes.SHA256()), key))
        return path

    return make


def check(guide, client, version, ca=None, key=None):
    return check_client(ca or guide.client_ca, client, key, agent_python=version)


# -- the guide's PKI, as openssl made it ----------------------------------------------------

def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_guide_pki_is_made_as_the_guide_says(guide):
    ca = _cert(guide.client_ca)
    assert ca.version == x509.Version.v3
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ca.public_key().key_size == 4096

    client = _cert(guide.client_cert)
    assert client.version == x509.Version.v3
    client.verify_directly_issued_by(ca)
    assert client.serial_number == 0x1000                        # `openssl ca`, serial 1000
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    aki = client.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    v1 = _cert(guide.v1_client_cert)
    assert v1.version == x509.Version.v1 and len(v1.extensions) == 0
    v1.verify_directly_issued_by(ca)

    # Step 14's file: the key without passphrase first, then the certificate.
    both = guide.client_cert_and_key.read_text()
    assert both.index("PRIVATE KEY-----") < both.index("BEGIN CERTIFICATE")
    assert "ENCRYPTED" not in both

    _cert(guide.other_ca_client_cert_and_key).verify_directly_issued_by(_cert(guide.server_ca))
    legacy = _cert(guide.legacy_client_ca)
    with pytest.raises(x509.ExtensionNotFound):
        legacy.extensions.get_extension_for_class(x509.KeyUsage)


def test_guide_pki_keys_are_private(guide):
    keys = [p for p in guide.directory.rglob("*") if p.is_file() and "PRIVATE KEY" in
            p.read_text(errors="replace")]
    assert len(keys) == 11      # 3 CA keys, 4 client keys, 4 cert-and-key files
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    assert stat.S_IMODE(guide.directory.stat().st_mode) == 0o700


def test_passphrase_is_never_on_a_command_line(tmp_path):
    secret = "correct horse battery staple"
    argvs = []

    def recording(args, cwd):
        argvs.append(list(args))
        run_openssl(args, cwd)

    pki = make_guide_pki(tmp_path / "pki", passphrase=secret, ca_bits=2048, run=recording)
    assert argvs and not [a for a in argvs if any(secret in word for word in a)]
    assert any(f"file:{pki.passphrase_file}" in a for a in argvs)
    assert stat.S_IMODE(pki.passphrase_file.stat().st_mode) == 0o600
    assert "ENCRYPTED PRIVATE KEY" in pki.client_ca_key.read_text()
    assert "ENCRYPTED PRIVATE KEY" in pki.client_key.read_text()
    assert "ENCRYPTED" not in pki.client_cert_and_key.read_text()
    assert check_client(pki.client_ca, pki.client_cert_and_key).accepted
    # The encrypted client key as the controller's key: refused before any handshake.
    result = check_client(pki.client_ca, pki.client_cert, pki.client_key)
    assert not result.accepted
    assert "encrypted" in result.message() and "step 14" in result.message()


def test_make_guide_pki_wants_an_empty_directory(tmp_path):
    (tmp_path / "old").write_text("x")
    with pytest.raises(AmpImageError, match="not empty"):
        make_guide_pki(tmp_path)


# -- verdicts -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [PY311, PY313])
def test_guide_client_is_accepted(guide, version):
    result = check(guide, guide.client_cert_and_key, version)
    assert result.accepted, result.message()
    assert result.advice() == []
    assert result.message().startswith("accepted: an agent on Python 3.1")
    assert "CN=octavia-controller" in result.message()


@pytest.mark.parametrize("version", [PY311, PY313])
def test_guide_client_with_separate_key_is_accepted(guide, version):
    assert check(guide, guide.client_cert, version, key=guide.client_key).accepted


@pytest.mark.parametrize("version", [PY311, PY313])
def test_bare_v1_client_is_accepted_but_named(guide, version):
    # Measured, OpenSSL 3.0 and 3.5: X509_STRICT does not refuse a v1 leaf from a
    # proper CA. The check says so, and still names the v1 certificate.
    result = check(guide, guide.v1_client_cert_and_key, version)
    assert result.accepted, result.message()
    [advice] = result.advice()
    assert "v1 certificate" in advice and "no X.509v3 extensions" in advice
    assert "usr_cert" in advice


def test_ca_without_key_usage_is_refused_by_python_313_only(guide):
    strict = check(guide, guide.legacy_client_cert_and_key, PY313, ca=guide.legacy_client_ca)
    assert not strict.accepted
    assert strict.verify_code == 92
    assert strict.reason == "CA cert does not include key usage extension"
    assert "CN=Legacy client CA has no keyUsage" in strict.message()
    assert "v3_ca" in strict.message()

    lax = check(guide, guide.legacy_client_cert_and_key, PY311, ca=guide.legacy_client_ca)
    assert lax.accepted, lax.message()
    assert any("no keyUsage" in line for line in lax.advice())


def test_the_fix_for_a_ca_without_key_usage_works(guide, tmp_path):
    """As the message says: the CA certificate re-issued from the same key and subject with
    v3_ca, and the client certificate it issued before is accepted."""
    legacy = _cert(guide.legacy_client_ca)
    reissued = tmp_path / "ca.pem"
    run_openssl(["openssl", "req", "-config", str(guide.openssl_cnf), "-new", "-x509",
                 "-key", str(guide.legacy_client_ca.parent.parent / "private/ca.key.pem"),
                 "-days", "30", "-sha256", "-extensions", "v3_ca",
                 "-subj", "/" + "/".join(legacy.subject.rfc4514_string().split(",")[::-1]),
                 "-out", str(reissued)], tmp_path)
    assert _cert(reissued).subject == legacy.subject
    result = check(guide, guide.legacy_client_cert_and_key, PY313, ca=reissued)
    assert result.accepted, result.message()
    assert result.advice() == []


@pytest.mark.parametrize("version", [PY311, PY313])
def test_client_from_another_ca_is_refused(guide, version):
    result = check(guide, guide.other_ca_client_cert_and_key, version)
    assert not result.accepted
    assert result.verify_code == 20
    assert "issued by CN=Octavia server CA, not by the CA in" in result.message()
    assert "client_ca.pem" in result.message()


def test_client_without_authority_key_id_is_refused_by_python_313_only(guide, issue):
    client = issue("no-aki", aki=False)
    strict = check(guide, client, PY313)
    assert not strict.accepted and strict.verify_code == 85
    assert "has no authority key identifier" in strict.message()
    assert "usr_cert" in strict.message()
    assert check(guide, client, PY311).accepted


@pytest.mark.parametrize("version", [PY311, PY313])
def test_server_only_certificate_is_refused(guide, issue, version):
    result = check(guide, issue("server-only", eku=ExtendedKeyUsageOID.SERVER_AUTH), version)
    assert not result.accepted and result.reason == "unsuitable certificate purpose"
    assert "extendedKeyUsage without clientAuth" in result.message()


@pytest.mark.parametrize("version", [PY311, PY313])
def test_expired_client_is_refused(guide, issue, version):
    result = check(guide, issue("expired", days=(-30, -1)), version)
    assert not result.accepted and result.verify_code == 10
    assert "CN=expired expired on" in result.message()


def test_key_that_does_not_match_is_refused_without_handshake(guide):
    result = check(guide, guide.client_cert, PY313, key=guide.v1_client_key)
    assert not result.accepted and result.verify_code is None
    assert "does not match the client certificate CN=octavia-controller" in result.message()


def test_agent_context_is_gunicorns(guide):
    server = ThrowawayPKI.create("x")
    pem = guide.directory / "server-for-context.pem"
    pem.write_bytes(server.server_pem())
    strict = agent_context(guide.client_ca, pem, PY313)
    lax = agent_context(guide.client_ca, pem, PY311)
    assert strict.verify_mode == lax.verify_mode == ssl.CERT_REQUIRED
    assert strict.verify_flags & ssl.VERIFY_X509_STRICT
    assert strict.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert not lax.verify_flags & (ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN)


# -- the image's Python ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("3.13", (3, 13)), ("3.13.5-1", (3, 13)), ("3.11.2-1+b1", (3, 11)), ("1:3.12.1-2", (3, 12)),
])
def test_parse_python_version(text, expected):
    assert parse_python_version(text) == expected


@pytest.mark.parametrize("text", ["3", "three", "2.7", ""])
def test_parse_python_version_refuses(text):
    with pytest.raises(ValueError):
        parse_python_version(text)


def fake_image(tmp_path: Path, packages: dict[str, str]) -> Path:
    """An image file with DIB's dpkg manifest beside it (NAME.d/dib-manifests)."""
    image = tmp_path / "amphora-x64-haproxy.qcow2"
    image.write_bytes(b"")
    manifests = tmp_path / "amphora-x64-haproxy.d" / "dib-manifests"
    manifests.mkdir(parents=True)
    entries = [{"package": name, "version": version, "status": "ii "}
               for name, version in packages.items()]
    (manifests / "dib-manifest-dpkg-amphora-x64-haproxy").write_text(
        json.dumps({"packages": entries}))
    return image


def test_python_version_of_image_from_its_manifest(tmp_path):
    image = fake_image(tmp_path, {"python3": "3.11.2-1+b1", "python3.11": "3.11.2-6"})
    assert python_version_of_image(image) == PY311


def test_python_version_of_image_from_versioned_packages(tmp_path):
    image = fake_image(tmp_path, {"python3.13-minimal": "3.13.5-2", "libc6": "2.41-12"})
    assert python_version_of_image(image) == PY313


# -- the command ----------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(check_certs, [str(a) for a in args])


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("amp-image: error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_cli_accepted(guide):
    result = invoke("--ca", guide.client_ca, "--client-cert", guide.client_cert_and_key)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accepted: an agent on Python 3.13 (X509_STRICT) accepts ")
    assert result.stderr == ""


def test_cli_refused_names_problem_and_fix(guide):
    line = one_error_line(invoke("--ca", guide.legacy_client_ca, "--client-cert",
                                 guide.legacy_client_cert_and_key), 1)
    assert "Python 3.13" in line and "has no keyUsage extension" in line
    assert "re-issue the CA certificate" in line


def test_cli_python_311_warns_about_313(guide):
    result = invoke("--ca", guide.legacy_client_ca, "--client-cert",
                    guide.legacy_client_cert_and_key, "--agent-python", "3.11")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accepted: an agent on Python 3.11 accepts")
    warnings = result.stderr.splitlines()
    assert warnings[0].startswith("amp-image: warning: an agent on Python 3.13 (X509_STRICT) "
                                  "refuses the client certificate")
    assert len(warnings) == 1, warnings     # the keyUsage problem is said once


def test_cli_other_ca(guide):
    line = one_error_line(invoke("--ca", guide.client_ca, "--client-cert",
                                 guide.other_ca_client_cert_and_key), 1)
    assert "not by the CA in" in line


def test_cli_image_option(guide, tmp_path):
    image = fake_image(tmp_path, {"python3": "3.11.2-1+b1"})
    result = invoke("--ca", guide.client_ca, "--client-cert", guide.client_cert_and_key,
                    "--image", image)
    assert result.exit_code == 0, result.output
    assert "Python 3.11" in result.stdout


@pytest.mark.parametrize(("content", "expected"), [
    (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
     "malformed PEM certificate"),
    (b"\x00\x01 not PEM at all", "no PEM certificate"),
])
def test_cli_malformed_ca(guide, tmp_path, content, expected):
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    line = one_error_line(invoke("--ca", bad, "--client-cert", guide.client_cert_and_key), 2)
    assert f"--ca {bad}: {expected}" in line


def test_cli_malformed_key(guide, tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    line = one_error_line(invoke("--ca", guide.client_ca, "--client-cert", guide.client_cert,
                                 "--client-key", bad), 2)
    assert "malformed private key" in line


@pytest.mark.parametrize("args", [
    ["--client-cert", "{client_cert}"],                           # no key anywhere
    ["--client-cert", "{missing}"],
    ["--client-cert", "{both}", "--agent-python", "three"],
    ["--client-cert", "{both}", "--agent-python", "3.13", "--image", "{both}"],
    ["--client-cert", "{both}", "--image", "{missing}"],
])
def test_cli_input_errors_exit_2(guide, tmp_path, args):
    values = {"client_cert": guide.client_cert, "both": guide.client_cert_and_key,
              "missing": tmp_path / "missing.pem"}
    line = one_error_line(invoke("--ca", guide.client_ca,
                                 *[a.format(**values) for a in args]), 2)
    assert len(line) < 400


def test_entry_point(guide):
    ok = subprocess.run([AMP_IMAGE, "check-certs", "--ca", str(guide.client_ca),
                         "--client-cert", str(guide.client_cert_and_key)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("accepted: ")
    refused = subprocess.run([AMP_IMAGE, "check-certs", "--ca", str(guide.client_ca),
                              "--client-cert", str(guide.other_ca_client_cert_and_key),
                              "--agent-python", "3.11"], capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("amp-image: error: ")
