"""Glance image signatures, verified the way Nova and Glance verify them: with cursive.

Nova (``[glance] verify_glance_signatures = True``, nova/image/glance.py) and
Glance (glance/location.py) call ``cursive.signature_utils.get_verifier(context=...,
img_signature_certificate_uuid=..., img_signature_hash_method=...,
img_signature=..., img_signature_key_type=...)`` with the image's properties,
feed it the image data chunk by chunk (``verifier.update``) and call
``verifier.verify()``.  The tests do exactly that, with the properties amp-image
published in glance.json and a certificate made here.

The one stand-in is the key manager.  cursive fetches the certificate by its
UUID through castellan (``signature_utils.get_certificate`` calls
``castellan.key_manager.API().get(context, uuid)``); in a cloud that is
Barbican.  cursive's own tests replace ``castellan.key_manager.API`` at this
seam (test_get_certificate), and Nova's and Glance's replace the layers above
it (``get_certificate`` / ``get_verifier``).  Here ``castellan.key_manager.API``
returns castellan's own in-memory key manager (castellan's MockKeyManager),
holding the certificate as castellan's X509 object, so everything from the
lookup by UUID onwards (the certificate format check, DER decoding, public key
type check, verifier) is cursive's real code.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import subprocess
from pathlib import Path

import castellan.key_manager
import pytest
from castellan.common.objects.x_509 import X509
from castellan.tests.unit.key_manager.mock_key_manager import MockKeyManager
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID
from cursive import certificate_utils, signature_utils
from cursive import exception as cursive_exception
from oslo_context.context import RequestContext
from test_publish import assert_one_line_error, make_small_image, run_publish, sums_verify

from amp_image.cli import main
from amp_image.cli import publish as publish_cli
from amp_image.publish import signing

CHUNK = 65536  # Glance streams image data in 64 KiB chunks


# --- keys, certificates and the key manager ------------------------------------------------


def make_key(kind: str):
    if kind == "RSA-PSS":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "DSA":
        return dsa.generate_private_key(key_size=2048)
    return ec.generate_private_key(signing.ECC_CURVES[kind]())


def make_cert(key, *, issuer_key=None, issuer_name: str = "", name: str = "amphora image "
              "signing", ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) \
        if issuer_key else subject
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                          encipher_only=False, decipher_only=False)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(usage, critical=True))
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_key(path: Path, key, passphrase: bytes | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)
    return path


@pytest.fixture
def barbican(monkeypatch) -> MockKeyManager:
    """castellan's in-memory key manager in Barbican's place (see the module docstring)."""
    manager = MockKeyManager()
    monkeypatch.setattr(castellan.key_manager, "API", lambda configuration=None: manager)
    return manager


CONTEXT = RequestContext(user_id="nova", project_id="octavia")


def store_cert(manager: MockKeyManager, cert: x509.Certificate) -> str:
    return manager.store(CONTEXT, X509(cert.public_bytes(serialization.Encoding.DER)))


def nova_verifies(props: dict, image: Path) -> None:
    """What Nova does before booting an image with verify_glance_signatures on
    (nova.image.glance.GlanceImageServiceV2.download); raises if it does not verify."""
    verifier = signature_utils.get_verifier(
        context=CONTEXT,
        img_signature_certificate_uuid=props.get("img_signature_certificate_uuid"),
        img_signature_hash_method=props.get("img_signature_hash_method"),
        img_signature=props.get("img_signature"),
        img_signature_key_type=props.get("img_signature_key_type"),
    )
    with image.open("rb") as f:
        while chunk := f.read(CHUNK):
            verifier.update(chunk)
    verifier.verify()


def tampered_copy(image: Path, dest: Path) -> Path:
    shutil.copyfile(image, dest)
    with dest.open("r+b") as f:
        f.seek(dest.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    return dest


# --- what cursive registers ----------------------------------------------------------------


def test_key_types_and_hash_methods_are_cursives():
    assert set(signing.KEY_TYPES) == set(signature_utils.SignatureKeyType.REGISTERED_TYPES)
    assert set(signing.HASH_METHODS) == set(signature_utils.HASH_METHODS)
    assert signing.DEFAULT_KEY_TYPE == signature_utils.RSA_PSS


@pytest.mark.parametrize("key_type,hash_method", [
    ("RSA-PSS", "SHA-224"), ("RSA-PSS", "SHA-256"), ("RSA-PSS", "SHA-384"),
    ("RSA-PSS", "SHA-512"), ("ECC_SECP384R1", "SHA-256"), ("ECC_SECP521R1", "SHA-512"),
    ("DSA", "SHA-256"),
])
def test_signatures_verify_with_cursive(key_type, hash_method, barbican, tmp_path):
    key = make_key(key_type)
    uuid = store_cert(barbican, make_cert(key))
    data = tmp_path / "image"
    data.write_bytes(os.urandom(300_000))
    signer = signing.Signer(key=key, key_type=key_type, hash_method=hash_method, cert_uuid=uuid)
    props = signer.image_properties(signer.sign_file(data))
    nova_verifies(props, data)
    with pytest.raises(InvalidSignature):
        nova_verifies(props, tampered_copy(data, tmp_path / "tampered"))
    other = store_cert(barbican, make_cert(make_key(key_type)))
    with pytest.raises(InvalidSignature):
        nova_verifies({**props, "img_signature_certificate_uuid": other}, data)


# --- publish --sign-key -----------------------------------------------------------------------


@pytest.fixture
def small_image(tmp_path) -> Path:
    folder = tmp_path / "build"
    folder.mkdir()
    return make_small_image(folder)


def key_material(key) -> list[bytes]:
    """What of a private key must not appear anywhere: its PEM body and its numbers."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = b"".join(pem.splitlines()[1:-1])
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    numbers = key.private_numbers()
    secret = getattr(numbers, "d", None) or getattr(numbers, "private_value", None) or numbers.x
    return [body[20:80], der[-40:], str(secret).encode(), b"%x" % secret]


@pytest.mark.parametrize("key_type", ["RSA-PSS", "ECC_SECP384R1"])
def test_published_image_verifies_with_cursive(key_type, small_image, barbican, tmp_path):
    key = make_key(key_type)
    uuid = store_cert(barbican, make_cert(key))
    key_file = write_key(tmp_path / "signing.pem", key)
    dest = tmp_path / "dist"
    result = run_publish(str(small_image), "--dest", str(dest), "--sign-key", str(key_file),
                         "--cert-uuid", uuid)
    assert result.exit_code == 0, result.output
    glance = json.loads((dest / "glance.json").read_text())
    props = glance["properties"]
    assert props["img_signature_key_type"] == key_type
    assert props["img_signature_hash_method"] == "SHA-256"
    assert props["img_signature_certificate_uuid"] == uuid
    nova_verifies(props, dest / "amp.qcow2")
    # Glance's own check on upload (glance.location) runs the same verifier.
    assert signature_utils.should_create_verifier(props)

    with pytest.raises(InvalidSignature):
        nova_verifies(props, tampered_copy(dest / "amp.qcow2", tmp_path / "tampered.qcow2"))
    wrong = store_cert(barbican, make_cert(make_key(key_type)))
    with pytest.raises(InvalidSignature):
        nova_verifies({**props, "img_signature_certificate_uuid": wrong}, dest / "amp.qcow2")

    # The printed command carries the same properties.
    argv = glance["command"].split()
    for name in ("img_signature", "img_signature_hash_method", "img_signature_key_type",
                 "img_signature_certificate_uuid"):
        assert f"{name}={props[name]}" in argv
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["signature"] == {
        "img_signature_hash_method": "SHA-256", "img_signature_key_type": key_type,
        "img_signature_certificate_uuid": uuid,
        "public_key_sha256": signing.Signer(key, key_type, "SHA-256").key_id}
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["amp.qcow2", "manifest.json", "sbom.cdx.json", "glance.json", "provenance.json",
         "provenance.dsse.json", "SHA256SUMS", ".amp-image-published.json"])
    assert sums_verify(dest)
    # The key is in no published file and in no output.
    published = b"".join(p.read_bytes() for p in dest.iterdir() if p.name != "amp.qcow2")
    for secret in key_material(key):
        assert secret not in published
        assert secret not in result.output.encode()
    assert "signed: " + key_type in result.stdout


def test_cursive_certificate_validation_of_the_signing_certificate(small_image, barbican,
                                                                    tmp_path):
    """Nova's [glance] enable_certificate_validation: the signing certificate must chain
    to one of the trusted certificates (cursive.certificate_utils.verify_certificate)."""
    ca_key = make_key("RSA-PSS")
    ca = make_cert(ca_key, name="image signing CA", ca=True)
    key = make_key("RSA-PSS")
    cert = make_cert(key, issuer_key=ca_key, issuer_name="image signing CA")
    ca_uuid, uuid = store_cert(barbican, ca), store_cert(barbican, cert)
    dest = tmp_path / "dist"
    result = run_publish(str(small_image), "--dest", str(dest), "--sign-key",
                         str(write_key(tmp_path / "k.pem", key)), "--cert-uuid", uuid,
                         "--hash-method", "SHA-512")
    assert result.exit_code == 0, result.output
    props = json.loads((dest / "glance.json").read_text())["properties"]
    certificate_utils.verify_certificate(CONTEXT, uuid, [ca_uuid])
    nova_verifies(props, dest / "amp.qcow2")
    stranger = store_cert(barbican, make_cert(make_key("RSA-PSS"), name="other CA", ca=True))
    with pytest.raises(cursive_exception.SignatureVerificationError):
        certificate_utils.verify_certificate(CONTEXT, uuid, [stranger])


def test_without_cert_uuid_it_warns(small_image, tmp_path):
    key_file = write_key(tmp_path / "k.pem", make_key("RSA-PSS"))
    result = run_publish(str(small_image), "--dest", str(tmp_path / "dist"),
                         "--sign-key", str(key_file))
    assert result.exit_code == 0, result.output
    assert "signed without --cert-uuid" in result.stderr
    props = json.loads((tmp_path / "dist" / "glance.json").read_text())["properties"]
    assert "img_signature" in props and "img_signature_certificate_uuid" not in props


def test_encrypted_key_from_the_environment(small_image, barbican, tmp_path):
    key = make_key("ECC_SECP521R1")
    uuid = store_cert(barbican, make_cert(key))
    key_file = write_key(tmp_path / "k.pem", key, b"correct horse")
    dest = tmp_path / "dist"
    result = run_publish(str(small_image), "--dest", str(dest), "--sign-key", str(key_file),
                         "--cert-uuid", uuid, env={"AMP_SIGN_KEY_PASSPHRASE": "correct horse"})
    assert result.exit_code == 0, result.output
    props = json.loads((dest / "glance.json").read_text())["properties"]
    assert props["img_signature_key_type"] == "ECC_SECP521R1"
    nova_verifies(props, dest / "amp.qcow2")
    published = b"".join(p.read_bytes() for p in dest.iterdir() if p.is_file())
    assert b"correct horse" not in published and "correct horse" not in result.output


def test_encrypted_key_prompt_on_a_terminal_does_not_echo(small_image, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(publish_cli, "_interactive", lambda: True)
    key_file = write_key(tmp_path / "k.pem", make_key("RSA-PSS"), b"s3cret-phrase")
    dest = tmp_path / "dist"
    result = CliRunner().invoke(main, ["publish", str(small_image), "--dest", str(dest),
                                       "--sign-key", str(key_file)],
                                input="s3cret-phrase\n")
    assert result.exit_code == 0, result.output
    assert "Passphrase for k.pem" in result.stderr
    assert "s3cret-phrase" not in result.output
    assert "img_signature" in json.loads((dest / "glance.json").read_text())["properties"]


def test_passphrase_variable_is_taken_out_of_the_environment():
    env = {"AMP_SIGN_KEY_PASSPHRASE": "x", "HOME": "/root"}
    assert signing.take_passphrase_env(env) == {"AMP_SIGN_KEY_PASSPHRASE": "x"}
    assert env == {"HOME": "/root"}


def test_signer_repr_hides_the_key():
    signer = signing.Signer(key=make_key("RSA-PSS"), key_type="RSA-PSS", hash_method="SHA-256")
    assert "key=" not in repr(signer) and "RSAPrivateKey" not in repr(signer)


# --- bad input: one line, nothing written ------------------------------------------------------


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], dict, str]]:
    rsa_key = make_key("RSA-PSS")
    good = write_key(tmp_path / "rsa.pem", rsa_key)
    encrypted = write_key(tmp_path / "enc.pem", rsa_key, b"right")
    p256 = write_key(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot base64!\n"
                                          "-----END PRIVATE KEY-----\n")
    (tmp_path / "cert.pem").write_bytes(make_cert(rsa_key).public_bytes(
        serialization.Encoding.PEM))
    (tmp_path / "pub.pem").write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    k = "--sign-key"
    return {
        "missing key": ([k, str(tmp_path / "nope.pem")], {}, "nope.pem: no such file"),
        "key is a folder": ([k, str(tmp_path)], {}, "is a folder; give the private key"),
        "malformed key": ([k, str(tmp_path / "garbage.pem")], {},
                          "not a PEM or DER private key"),
        "certificate": ([k, str(tmp_path / "cert.pem")], {}, "a certificate, not a private key"),
        "public key": ([k, str(tmp_path / "pub.pem")], {}, "a public key; sign with the "
                                                           "private key"),
        "wrong passphrase": ([k, str(encrypted)], {"AMP_SIGN_KEY_PASSPHRASE": "wrong"},
                             "enc.pem: wrong passphrase"),
        "no passphrase": ([k, str(encrypted)], {}, "is encrypted; set AMP_SIGN_KEY_PASSPHRASE "
                                                   "or run on a terminal"),
        "hash method": ([k, str(good), "--hash-method", "MD5"], {},
                        "--hash-method MD5: Glance and Nova verify SHA-224, SHA-256"),
        "key type": ([k, str(good), "--key-type", "RSA-PKCS1"], {},
                     "--key-type RSA-PKCS1: Glance and Nova verify RSA-PSS, DSA, ECC_SECP384R1"),
        "binary curve": ([k, str(good), "--key-type", "ECC_SECT571K1"], {},
                         "binary curves are gone from cryptography 47"),
        "key type mismatch": ([k, str(good), "--key-type", "ECC_SECP384R1"], {},
                              "does not match --sign-key"),
        "P-256 key": ([k, str(p256)], {}, "an EC key on secp256r1, which Nova and Glance"),
        "cert uuid": ([k, str(good), "--cert-uuid", "my-cert"], {},
                      "--cert-uuid my-cert: not a UUID"),
        "no key": (["--cert-uuid", "0b3d7ad9-5b8f-4c11-9d4e-2c9f1d7e8a10"], {},
                   "--cert-uuid is for a signed image; give --sign-key"),
    }


BAD = ["missing key", "key is a folder", "malformed key", "certificate", "public key",
       "wrong passphrase", "no passphrase", "hash method", "key type", "binary curve",
       "key type mismatch", "P-256 key", "cert uuid", "no key"]


@pytest.mark.parametrize("case", BAD)
def test_bad_signing_input_is_one_line_and_writes_nothing(case, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    args, env, message = bad_inputs(keys)[case]
    image = tmp_path / "amp.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    dest = tmp_path / "dist"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_publish(str(image), "--dest", str(dest), *args, env=env)
    assert_one_line_error(result, message)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_bad_key_in_an_earlier_publication_leaves_it_as_it_was(small_image, tmp_path):
    dest = tmp_path / "dist"
    assert run_publish(str(small_image), "--dest", str(dest)).exit_code == 0
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    garbage = tmp_path / "k.pem"
    garbage.write_text("nonsense")
    result = run_publish(str(small_image), "--dest", str(dest), "--sign-key", str(garbage))
    assert_one_line_error(result, "not a PEM or DER private key")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_a_signing_failure_while_writing_leaves_nothing(small_image, tmp_path, monkeypatch):
    def broken(self, path):
        raise signing.SigningError("the key cannot sign (simulated)")

    monkeypatch.setattr(signing.Signer, "sign_file", broken)
    key_file = write_key(tmp_path / "k.pem", make_key("RSA-PSS"))
    dest = tmp_path / "dist"
    result = run_publish(str(small_image), "--dest", str(dest), "--sign-key", str(key_file))
    assert_one_line_error(result, "the key cannot sign (simulated)")
    assert not dest.exists()


# --- --upload and build --publish-dir ----------------------------------------------------------


def test_build_sign_key_needs_publish_dir(tmp_path):
    key_file = write_key(tmp_path / "k.pem", make_key("RSA-PSS"))
    result = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "amp.qcow2"),
                                       "--sign-key", str(key_file), "--dry-run"])
    assert_one_line_error(result, "--sign-key signs what --publish-dir publishes")


def test_build_checks_the_key_before_building(tmp_path):
    garbage = tmp_path / "k.pem"
    garbage.write_text("nonsense")
    result = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "amp.qcow2"),
                                       "--publish-dir", str(tmp_path / "dist"),
                                       "--sign-key", str(garbage), "--dry-run"])
    assert_one_line_error(result, "not a PEM or DER private key")
    assert not (tmp_path / "dist").exists()


def test_build_publish_dir_signs(small_image, barbican, tmp_path, monkeypatch):
    """build --publish-dir --sign-key after a (stubbed: no DIB) build."""
    from amp_image.builder import dib, host
    from amp_image.builder import run as build_run

    built = tmp_path / "out" / "amp.qcow2"
    built.parent.mkdir()
    shutil.copyfile(small_image, built)
    monkeypatch.setattr(build_run, "stop_on_sigterm", lambda: None)
    monkeypatch.setattr(host, "check_tools", lambda: None)
    seen_env = {}

    def fake_build(plan, **kw):
        seen_env.update(os.environ)  # what DIB would inherit
        return dib.BuildResult(built, None, 1.0, tmp_path / "build.log")

    monkeypatch.setattr(dib, "run_build", fake_build)
    key = make_key("RSA-PSS")
    uuid = store_cert(barbican, make_cert(key))
    dest = tmp_path / "dist"
    result = CliRunner().invoke(main, [
        "build", "-o", str(built), "--publish-dir", str(dest), "--work-dir", str(tmp_path / "w"),
        "--sign-key", str(write_key(tmp_path / "k.pem", key, b"pw")), "--cert-uuid", uuid],
        env={"AMP_SIGN_KEY_PASSPHRASE": "pw"})
    assert result.exit_code == 0, result.output
    assert "AMP_SIGN_KEY_PASSPHRASE" not in seen_env
    nova_verifies(json.loads((dest / "glance.json").read_text())["properties"],
                  dest / "amp.qcow2")
    assert (dest / "provenance.dsse.json").is_file() and sums_verify(dest)


def test_signature_is_base64_of_the_raw_signature(tmp_path):
    key = make_key("RSA-PSS")
    data = tmp_path / "d"
    data.write_bytes(b"amphora" * 1000)
    signer = signing.Signer(key=key, key_type="RSA-PSS", hash_method="SHA-256")
    raw = signer.sign_file(data)
    assert len(raw) == 256  # RSA-2048
    props = signer.image_properties(raw)
    assert base64.b64decode(props["img_signature"]) == raw
