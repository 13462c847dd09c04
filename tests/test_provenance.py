"""provenance.json (in-toto Statement v1, SLSA provenance v1) and its DSSE envelope,
published from a small real qcow2 image that carries what an amp-image build records."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from test_publish import make_small_image, run_publish, sums_verify
from test_signing import make_key, write_key

from amp_image.builder import dib_elements
from amp_image.builder.digests import tree_digest
from amp_image.image.inventory import enabled_units
from amp_image.image.records import AptIndex, parse_apt_indexes
from amp_image.publish import signing

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "6.12.118+deb13-amd64"
AGENT_COMMIT = "4c2b1a8e9f0d7c6b5a4e3d2c1b0a9f8e7d6c5b4a"
CONSTRAINTS_SHA = "3c372cf25bbcaa5dedb4cdd6f0a9c33c056148b17eb2b3b3bab8f27b51cd3f5d"

STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 13.8+deb13u8

Package: haproxy
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1

Package: keepalived
Status: install ok installed
Architecture: amd64
Version: 1:2.3.3-1

Package: linux-image-6.12.118+deb13-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64 (6.12.118+1)
Version: 6.12.118-1
"""

RECORDED = {
    "etc/amp-image/amphora-agent": (
        "AMPHORA_AGENT_VERSION=19.0.0\nAMPHORA_AGENT_SOURCE_TYPE=git\n"
        "AMPHORA_AGENT_SOURCE=https://opendev.example/openstack/octavia\n"
        f"AMPHORA_AGENT_GIT_REF={AGENT_COMMIT}\n"
        f"AMPHORA_AGENT_CONSTRAINTS_SHA256={CONSTRAINTS_SHA}\n"),
    "etc/amp-image/kernels": KERNEL + "\n",
    "etc/amp-image/firewall": "AMP_FIREWALL=nftables\n",
    "etc/amp-image/apt-indexes": (
        "deb.debian.org_debian_dists_trixie Sat, 22 Nov 2025 09:11:12 UTC\n"
        "deb.debian.org_debian-security_dists_trixie-security Mon, 24 Nov 2025 21:03:58 UTC\n"
        "deb.debian.org_debian_dists_trixie-updates Mon, 24 Nov 2025 20:21:44 UTC\n"),
    "etc/dib-manifests/dib_arguments": (
        "-a amd64 -o /w/out/amp -t qcow2 --image-size 2 debian-minimal vm amphora-base "
        "haproxy-octavia amphora-agent"),
    "etc/dib-manifests/dib_environment": (
        'declare -x DIB_RELEASE="trixie"\n'
        'declare -x DIB_DISTRIBUTION_MIRROR="http://deb.debian.org/debian"\n'
        'declare -x DIB_AMP_AGENT_CONSTRAINTS="/x/upper-constraints-2026.2.txt"\n'
        'declare -x DIB_PASSWORD="hunter2"\n'),
    "opt/amphora-agent-venv/lib/python3.13/site-packages/octavia-19.0.0.dist-info/METADATA":
        "Metadata-Version: 2.1\nName: octavia\nVersion: 19.0.0\n",
}
UNITS = {"etc/systemd/system/multi-user.target.wants/amphora-agent.service":
         "/usr/lib/systemd/system/amphora-agent.service",
         "etc/systemd/system/timers.target.wants/logrotate.timer":
         "/usr/lib/systemd/system/logrotate.timer"}


@pytest.fixture(scope="module")
def recorded_image(tmp_path_factory) -> Path:
    """A small qcow2 with amp-image's records, DIB's manifests and a build log beside it."""
    folder = tmp_path_factory.mktemp("build")
    image = make_small_image(folder, status=STATUS, files=RECORDED, links=UNITS)
    (folder / "amp.qcow2.log").write_text(
        "2026-11-25 14:51:01.690 | Building elements: base debian-minimal vm\n"
        "2026-11-25 14:51:01.698 | diskimage-builder version 3.43.0\n")
    return image


def publish(image: Path, dest: Path, *args: str, env=None) -> Path:
    result = run_publish(str(image), "--dest", str(dest), *args, env=env)
    assert result.exit_code == 0, result.output
    return dest


@pytest.fixture(scope="module")
def statement(recorded_image, tmp_path_factory) -> dict:
    dest = publish(recorded_image, tmp_path_factory.mktemp("pub") / "dist")
    return json.loads((dest / "provenance.json").read_text())


# What in-toto's Statement v1 and SLSA's provenance v1 require, as a JSON schema.
DIGEST = {"type": "object", "minProperties": 1,
          "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}}
RESOURCE = {"type": "object",
            "anyOf": [{"required": ["uri"]}, {"required": ["digest"]},
                      {"required": ["content"]}],
            "properties": {"uri": {"type": "string", "minLength": 1}, "digest": DIGEST,
                           "name": {"type": "string"}, "annotations": {"type": "object"}}}
SCHEMA = {
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "subject": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "digest"],
            "properties": {"name": {"type": "string"}, "digest": DIGEST}}},
        "predicateType": {"const": "https://slsa.dev/provenance/v1"},
        "predicate": {
            "type": "object", "required": ["buildDefinition", "runDetails"],
            "properties": {
                "buildDefinition": {
                    "type": "object", "required": ["buildType", "externalParameters"],
                    "properties": {
                        "buildType": {"type": "string", "format": "uri",
                                      "pattern": "^[a-z][a-z0-9+.-]*:"},
                        "externalParameters": {"type": "object"},
                        "internalParameters": {"type": "object"},
                        "resolvedDependencies": {"type": "array", "items": RESOURCE}}},
                "runDetails": {
                    "type": "object", "required": ["builder"],
                    "properties": {
                        "builder": {"type": "object", "required": ["id"],
                                    "properties": {"id": {"type": "string",
                                                          "pattern": "^[a-z][a-z0-9+.-]*:"},
                                                   "version": {"type": "object"}}},
                        "metadata": {"type": "object"},
                        "byproducts": {"type": "array", "items": RESOURCE}}}}},
    },
}


def deps(statement: dict, name: str) -> list[dict]:
    return [d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            if d["name"] == name]


def test_statement_validates(statement):
    jsonschema.validate(statement, SCHEMA)


def test_subject_is_the_published_image(recorded_image, tmp_path):
    dest = publish(recorded_image, tmp_path / "dist")
    statement = json.loads((dest / "provenance.json").read_text())
    manifest = json.loads((dest / "manifest.json").read_text())
    sha = hashlib.sha256((dest / "amp.qcow2").read_bytes()).hexdigest()
    assert statement["subject"] == [{"name": "amp.qcow2", "digest": {"sha256": sha}}]
    assert manifest["image"]["sha256"] == sha
    assert manifest["published"]["provenance"] == "provenance.json"
    assert "provenance.json" in (dest / "SHA256SUMS").read_text()
    assert sums_verify(dest)
    assert not (dest / "provenance.dsse.json").exists()


def test_amp_image_version_and_commit(statement):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (source,) = deps(statement, "amp-image")
    assert source["digest"] == {"gitCommit": head}
    assert source["annotations"]["version"] == "0.1.0"
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder["version"] == {"amp-image": "0.1.0", "diskimage-builder": "3.43.0"}


def test_elements_with_their_content_hashes(statement):
    elements = {d["name"].removeprefix("element:"): d for d in statement["predicate"]
                ["buildDefinition"]["resolvedDependencies"] if d["name"].startswith("element:")}
    requested = ["debian-minimal", "vm", "amphora-base", "haproxy-octavia", "amphora-agent"]
    assert {n for n, d in elements.items() if d["annotations"]["requested"]} == set(requested)
    # What DIB adds and what element-deps pull in are there too.
    deps_of_base = (ROOT / "amp_image/elements/amphora-base/element-deps").read_text().split()
    assert {"base", "block-device-mbr", "dpkg", *deps_of_base} <= set(elements)
    base = elements["amphora-base"]
    assert base["annotations"]["origin"] == "amp-image"
    assert base["digest"]["sha256"] == tree_digest(dib_elements.elements_dir() / "amphora-base",
                                                   element=True)
    assert elements["debian-minimal"]["annotations"]["origin"] == "diskimage-builder"
    assert all(len(d["digest"]["sha256"]) == 64 for d in elements.values())
    assert statement["predicate"]["buildDefinition"]["externalParameters"]["elements"] == \
        requested


def test_diskimage_builder_version_from_the_build_log(statement):
    (item,) = deps(statement, "diskimage-builder")
    assert item["uri"] == "pkg:pypi/diskimage-builder@3.43.0"
    assert item["annotations"]["observed"] == "build log"


def test_mirror_and_index_dates(statement):
    mirrors = {d["uri"]: d["annotations"] for d in deps(statement, "debian-mirror")}
    assert mirrors == {
        "http://deb.debian.org/debian/dists/trixie": {
            "suite": "trixie", "index_date": "2025-11-22T09:11:12Z",
            "release_file_date": "Sat, 22 Nov 2025 09:11:12 UTC"},
        "http://deb.debian.org/debian-security/dists/trixie-security": {
            "suite": "trixie-security", "index_date": "2025-11-24T21:03:58Z",
            "release_file_date": "Mon, 24 Nov 2025 21:03:58 UTC"},
        "http://deb.debian.org/debian/dists/trixie-updates": {
            "suite": "trixie-updates", "index_date": "2025-11-24T20:21:44Z",
            "release_file_date": "Mon, 24 Nov 2025 20:21:44 UTC"},
    }


def test_agent_constraints_and_kernel(statement):
    (agent,) = deps(statement, "amphora-agent")
    assert agent["uri"] == f"git+https://opendev.example/openstack/octavia@{AGENT_COMMIT}"
    assert agent["digest"] == {"gitCommit": AGENT_COMMIT}
    assert agent["annotations"]["version"] == "19.0.0"
    (constraints,) = deps(statement, "upper-constraints")
    assert constraints["digest"] == {"sha256": CONSTRAINTS_SHA}
    assert constraints["annotations"]["file"] == "upper-constraints-2026.2.txt"
    (kernel,) = deps(statement, "kernel")
    assert kernel["uri"] == f"pkg:deb/debian/linux-image-{KERNEL}@6.12.118-1?arch=amd64"
    assert kernel["annotations"]["release"] == KERNEL


def test_secrets_stay_out(statement):
    env = statement["predicate"]["buildDefinition"]["externalParameters"]["environment"]
    assert env["DIB_PASSWORD"] == "<redacted>"
    assert "hunter2" not in json.dumps(statement)


def test_image_without_records_says_what_is_missing(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    dest = publish(make_small_image(folder), tmp_path / "dist")
    statement = json.loads((dest / "provenance.json").read_text())
    jsonschema.validate(statement, SCHEMA)
    (mirror,) = deps(statement, "debian-mirror")
    assert mirror["annotations"]["index_date"] is None
    assert "records no package index dates" in mirror["annotations"]["observed"]


# --- signed: the DSSE envelope ---------------------------------------------------------------


def verify_envelope(envelope: dict, public_key, key_type: str, hash_method: str) -> bytes:
    """DSSE verification with cryptography alone: the signature is over PAE(type, payload),
    made with the image signature's key type and hash method."""
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    (sig,) = envelope["signatures"]
    algorithm = signing.HASH_METHODS[hash_method]()
    signature = base64.b64decode(sig["sig"])
    if key_type == "RSA-PSS":
        public_key.verify(signature, pae, padding.PSS(padding.MGF1(algorithm),
                                                      padding.PSS.MAX_LENGTH), algorithm)
    else:
        digest = hashes.Hash(algorithm)
        digest.update(pae)
        public_key.verify(signature, digest.finalize(), ec.ECDSA(utils.Prehashed(algorithm)))
    return payload


@pytest.mark.parametrize("key_type,hash_method", [("RSA-PSS", "SHA-256"),
                                                  ("ECC_SECP384R1", "SHA-384")])
def test_signed_provenance_envelope(key_type, hash_method, recorded_image, tmp_path):
    key = make_key(key_type)
    dest = publish(recorded_image, tmp_path / "dist", "--sign-key",
                   str(write_key(tmp_path / "k.pem", key)), "--hash-method", hash_method)
    envelope = json.loads((dest / "provenance.dsse.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = verify_envelope(envelope, key.public_key(), key_type, hash_method)
    assert payload == (dest / "provenance.json").read_bytes()
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert envelope["signatures"][0]["keyid"] == "sha256:" + hashlib.sha256(spki).hexdigest()
    sums = (dest / "SHA256SUMS").read_text()
    assert "provenance.json" in sums and "provenance.dsse.json" in sums and sums_verify(dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["published"]["provenance_envelope"] == "provenance.dsse.json"

    # Another statement under the same signature, or another key: no.
    forged = dict(envelope, payload=base64.b64encode(payload.replace(b"19.0.0", b"19.0.1"))
                  .decode())
    with pytest.raises(InvalidSignature):
        verify_envelope(forged, key.public_key(), key_type, hash_method)
    with pytest.raises(InvalidSignature):
        verify_envelope(envelope, make_key(key_type).public_key(), key_type, hash_method)


# --- the parts --------------------------------------------------------------------------------


def test_tree_digest(tmp_path):
    element = tmp_path / "el"
    (element / "install.d").mkdir(parents=True)
    script = element / "install.d" / "10-x"
    script.write_text("#!/bin/bash\necho x\n")
    script.chmod(0o755)
    (element / "README.rst").write_text("x")
    first = tree_digest(element)
    os.utime(script, (1, 1))
    (element / "__pycache__").mkdir()
    (element / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (element / "b.pyc").write_bytes(b"\0")
    assert tree_digest(element) == first  # times and caches do not count
    script.chmod(0o744)
    assert tree_digest(element) == first  # any execute bit is the executable bit
    script.chmod(0o644)
    assert tree_digest(element) != first  # the executable bit does
    script.chmod(0o755)
    (element / "element-deps").symlink_to("README.rst")
    with_link = tree_digest(element)
    assert with_link != first
    (element / "README.rst").write_text("y")
    assert tree_digest(element) != with_link
    changed = tree_digest(element)
    (element / "static" / "var" / "empty").mkdir(parents=True)
    assert tree_digest(element) != changed  # DIB copies an empty folder too
    # An element's tests and .git are left out; any folder's .git and tests/ count.
    as_element = tree_digest(element, element=True)
    (element / "tests").mkdir()
    (element / "tests" / "test_el.py").write_text("x")
    (element / ".git").mkdir()
    (element / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert tree_digest(element, element=True) == as_element
    assert tree_digest(element) != tree_digest(element, element=True)
    (element / "install.d" / "tests").mkdir()  # only the top-level tests/ is DIB's
    assert tree_digest(element, element=True) != as_element


def test_apt_index_names():
    (index, security, odd) = parse_apt_indexes(
        "deb.debian.org_debian_dists_trixie Sat, 22 Nov 2025 09:11:12 UTC\n"
        "mirror.example:8080_debian-security_dists_trixie-security Mon, 24 Nov 2025 "
        "21:03:58 +0000\n"
        "mirror.example_my%5fmirror_dists_trixie_updates not a date\n")
    assert index == AptIndex("deb.debian.org_debian_dists_trixie",
                             "Sat, 22 Nov 2025 09:11:12 UTC")
    assert index.location == "deb.debian.org/debian/dists/trixie" and index.suite == "trixie"
    assert security.date_iso == "2025-11-24T21:03:58Z"
    assert odd.location == "mirror.example/my_mirror/dists/trixie/updates"
    assert odd.date_iso is None


def test_enabled_units(tmp_path):
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "haproxy.service").symlink_to("/usr/lib/systemd/system/haproxy.service")
    (tmp_path / "etc/systemd/system/sshd.service").symlink_to("/lib/systemd/system/ssh.service")
    assert enabled_units(tmp_path) == ["multi-user.target.wants/haproxy.service"]
