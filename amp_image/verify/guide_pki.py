"""The controller's PKI as operators make it: with the ``openssl`` command line,
following Octavia's certificate guide (doc/source/admin/guides/certificates.rst).

:func:`make_guide_pki` makes, in a directory of its own:

* ``server_ca/`` and ``client_ca/``: two CAs, each ``openssl genpkey`` then
  ``openssl req -new -x509 -extensions v3_ca``, prepared for ``openssl ca``
  (``index.txt``, ``serial`` 1000, ``newcerts/``, ``private/`` mode 0700);
* the controller's client certificate: ``openssl req -new``, then
  ``openssl ca -extensions usr_cert`` by the client CA, and
  ``client_ca/private/client.cert-and-key.pem`` (key, then certificate) as the
  guide's step 14 makes it: Octavia's ``[haproxy_amphora] client_cert``;
* a bare v1 client certificate: ``openssl x509 -req`` by the same client CA
  without ``-extfile``, so without any extension;
* an "other CA" client certificate: ``usr_cert``, but issued by the server CA
  (the agent must refuse it: its ``client_ca.pem`` is the client CA);
* a legacy client CA made like ``openssl req -x509`` with a stock
  ``openssl.cnf`` (basicConstraints, key identifiers, but no keyUsage) and a
  ``usr_cert`` client certificate from it.

What Python's ``ssl`` (the agent's gunicorn) does with them, measured on
OpenSSL 3.0 and 3.5 with :mod:`amp_image.verify.certs.handshake`:

==============================  =================  ================
client certificate               Python 3.11 agent  Python 3.13 agent
==============================  =================  ================
guide (``client``)               accepted           accepted
bare v1 (``v1_client``)          accepted           accepted
other CA (``other_ca_client``)   refused            refused
legacy CA (``legacy_client``)    accepted           refused
==============================  =================  ================

Private keys are written into files created with mode 0600 (their directory
0700) and are never on a command line; with ``passphrase`` the keys are
encrypted as the guide's are (``-aes-128-cbc``), and openssl reads the
passphrase from a 0600 file (``-pass file:`` / ``-passin file:``). The files
the amphora and the controller use (certificates, and the client's
cert-and-key file) are always unencrypted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from amp_image.errors import AmpImageError, HostError

SUBJECT = "/C=US/ST=Oregon/O=OpenStack/OU=Octavia"

# Our openssl.cnf: the sections the guide's commands name (v3_ca, usr_cert,
# server_cert) with the extensions the guide gives them, and a CA section for
# `openssl ca` run from inside a CA's directory.
OPENSSL_CNF = """\
# amp-image: openssl configuration for a controller PKI per Octavia's certificate guide.

[ ca ]
default_ca = CA_default

[ CA_default ]
dir           = .
certs         = $dir/certs
new_certs_dir = $dir/newcerts
database      = $dir/index.txt
serial        = $dir/serial
private_key   = $dir/private/ca.key.pem
certificate   = $dir/certs/ca.cert.pem
default_md    = sha256
default_days  = 3650
preserve      = no
policy        = policy_strict
unique_subject = no

[ policy_strict ]
countryName            = match
stateOrProvinceName    = match
organizationName       = match
organizationalUnitName = optional
commonName             = supplied
emailAddress           = optional

[ req ]
default_bits       = 2048
distinguished_name = req_distinguished_name
string_mask        = utf8only
default_md         = sha256
x509_extensions    = v3_ca

[ req_distinguished_name ]
countryName            = Country Name (2 letter code)
stateOrProvinceName    = State or Province Name
localityName           = Locality Name
0.organizationName     = Organization Name
organizationalUnitName = Organizational Unit Name
commonName             = Common Name

[ v3_ca ]
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints       = critical, CA:true
keyUsage               = critical, digitalSignature, cRLSign, keyCertSign

[ usr_cert ]
basicConstraints       = CA:FALSE
nsCertType             = client, email
nsComment              = "amp-image: client certificate per Octavia's certificate guide"
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid,issuer
keyUsage               = critical, nonRepudiation, digitalSignature, keyEncipherment
extendedKeyUsage       = clientAuth, emailProtection

[ server_cert ]
basicConstraints       = CA:FALSE
nsCertType             = server
nsComment              = "amp-image: server certificate per Octavia's certificate guide"
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid,issuer:always
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth

# Not the guide's: a CA as a stock openssl.cnf's v3_ca makes it (no keyUsage).
[ v3_ca_stock ]
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints       = critical, CA:true
"""


@dataclass(frozen=True)
class GuidePKI:
    """Paths of what :func:`make_guide_pki` made."""

    directory: Path
    openssl_cnf: Path
    server_ca: Path              # [certificates] ca_certificate / [haproxy_amphora] server_ca
    server_ca_key: Path          # [certificates] ca_private_key
    client_ca: Path              # [controller_worker] client_ca: the amphora's client_ca.pem
    client_ca_key: Path
    client_cert: Path
    client_key: Path
    client_cert_and_key: Path    # [haproxy_amphora] client_cert
    v1_client_cert: Path
    v1_client_key: Path
    v1_client_cert_and_key: Path
    other_ca_client_cert_and_key: Path   # usr_cert, but issued by the server CA
    legacy_client_ca: Path               # CA without keyUsage
    legacy_client_cert_and_key: Path     # usr_cert from the legacy CA
    passphrase_file: Path | None = None  # set when the keys are encrypted


Runner = Callable[[Sequence[str], Path], None]


def run_openssl(args: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise AmpImageError(f"{' '.join(args[:2])} failed in {cwd}: {detail}")


def _secret_file(path: Path, data: bytes = b"") -> Path:
    """An empty (or given) file only its owner may read, for openssl to write a key into."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def _ca_dir(path: Path) -> Path:
    for sub in ("certs", "crl", "csr", "newcerts"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "private").mkdir(mode=0o700, exist_ok=True)
    os.chmod(path / "private", 0o700)
    (path / "index.txt").write_text("")
    (path / "serial").write_text("1000\n")
    return path


def make_guide_pki(directory: Path, *, passphrase: str | None = None, ca_bits: int = 4096,
                   client_bits: int = 2048, days: int = 7300, openssl: str = "openssl",
                   client_cn: str = "octavia-controller", run: Runner = run_openssl
                   ) -> GuidePKI:
    """Make the guide's controller PKI (and the variants above) in ``directory``.

    ``directory`` is created (mode 0700) and must be empty. The defaults are the
    guide's: 4096-bit CA keys, 2048-bit client keys, 20 years. ``run`` runs one
    openssl command in a directory (tests pass a recorder). Raises
    :class:`HostError` without ``openssl``, :class:`AmpImageError` if a command fails.
    """
    exe = shutil.which(openssl)
    if exe is None:
        raise HostError(f"{openssl} not found: install the openssl package")
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise AmpImageError(f"{directory} is not empty; give make_guide_pki a new directory")
    os.chmod(directory, 0o700)
    cnf = directory / "openssl.cnf"
    cnf.write_text(OPENSSL_CNF)

    secret = _secret_file(directory / "passphrase.txt", passphrase.encode() + b"\n") \
        if passphrase else None
    encrypt = ["-aes-128-cbc", "-pass", f"file:{secret}"] if secret else []
    passin = ["-passin", f"file:{secret}"] if secret else []

    def genkey(ca: Path, name: str, bits: int, encrypted: bool = True) -> Path:
        key = _secret_file(ca / "private" / name)
        run([exe, "genpkey", "-algorithm", "RSA", "-out", str(key),
             *(encrypt if encrypted else []), "-pkeyopt", f"rsa_keygen_bits:{bits}"], ca)
        os.chmod(key, 0o600)
        return key

    def make_ca(name: str, cn: str, extensions: str = "v3_ca") -> tuple[Path, Path]:
        ca = _ca_dir(directory / name)
        key = genkey(ca, "ca.key.pem", ca_bits)
        cert = ca / "certs" / "ca.cert.pem"
        run([exe, "req", "-config", str(cnf), "-key", str(key), *passin, "-new", "-x509",
             "-days", str(days), "-sha256", "-extensions", extensions,
             "-subj", f"{SUBJECT}/CN={cn}", "-out", str(cert)], ca)
        return cert, key

    def request(ca: Path, name: str, cn: str, encrypted: bool = True) -> tuple[Path, Path]:
        key = genkey(ca, f"{name}.key.pem", client_bits, encrypted)
        csr = ca / "csr" / f"{name}.csr.pem"
        run([exe, "req", "-config", str(cnf), "-new", "-sha256", "-key", str(key),
             *(passin if encrypted else []), "-subj", f"{SUBJECT}/CN={cn}", "-out", str(csr)],
            ca)
        return csr, key

    def sign(ca: Path, csr: Path, name: str) -> Path:
        cert = ca / "certs" / f"{name}.cert.pem"
        run([exe, "ca", "-config", str(cnf), "-batch", *passin, "-extensions", "usr_cert",
             "-days", str(days), "-notext", "-md", "sha256", "-in", str(csr),
             "-out", str(cert)], ca)
        return cert

    def cert_and_key(ca: Path, name: str, cert: Path, key: Path, encrypted: bool = True
                     ) -> Path:
        """Step 14: the key without its passphrase, then the certificate."""
        both = _secret_file(ca / "private" / f"{name}.cert-and-key.pem")
        if secret and encrypted:
            run([exe, "rsa", "-in", str(key), *passin, "-out", str(both)], ca)
        else:
            _secret_file(both, key.read_bytes())
        with both.open("ab") as f:
            f.write(cert.read_bytes())
        os.chmod(both, 0o600)
        return both

    server_ca, server_ca_key = make_ca("server_ca", "Octavia server CA")
    client_ca, client_ca_key = make_ca("client_ca", "Octavia client CA")
    cdir = client_ca.parent.parent

    csr, client_key = request(cdir, "client", client_cn)
    client_cert = sign(cdir, csr, "client")
    client_both = cert_and_key(cdir, "client", client_cert, client_key)

    # The bare `openssl x509 -req`: no -extfile, so a v1 certificate.
    v1_csr, v1_key = request(cdir, "v1-client", f"{client_cn}-v1", encrypted=False)
    v1_cert = cdir / "certs" / "v1-client.cert.pem"
    run([exe, "x509", "-req", "-in", str(v1_csr), "-CA", str(client_ca), "-CAkey",
         str(client_ca_key), *passin, "-set_serial", "0x2000", "-days", str(days), "-sha256",
         "-out", str(v1_cert)], cdir)
    v1_both = cert_and_key(cdir, "v1-client", v1_cert, v1_key, encrypted=False)

    sdir = server_ca.parent.parent
    other_csr, other_key = request(sdir, "client", client_cn, encrypted=False)
    other_cert = sign(sdir, other_csr, "client")
    other_both = cert_and_key(sdir, "client", other_cert, other_key, encrypted=False)

    legacy_ca, _ = make_ca("legacy_client_ca", "Legacy client CA", "v3_ca_stock")
    ldir = legacy_ca.parent.parent
    legacy_csr, legacy_key = request(ldir, "client", client_cn, encrypted=False)
    legacy_cert = sign(ldir, legacy_csr, "client")
    legacy_both = cert_and_key(ldir, "client", legacy_cert, legacy_key, encrypted=False)

    return GuidePKI(
        directory=directory, openssl_cnf=cnf,
        server_ca=server_ca, server_ca_key=server_ca_key,
        client_ca=client_ca, client_ca_key=client_ca_key,
        client_cert=client_cert, client_key=client_key, client_cert_and_key=client_both,
        v1_client_cert=v1_cert, v1_client_key=v1_key, v1_client_cert_and_key=v1_both,
        other_ca_client_cert_and_key=other_both,
        legacy_client_ca=legacy_ca, legacy_client_cert_and_key=legacy_both,
        passphrase_file=secret,
    )
