"""`amp-image publish --upload` (and `--rotate`) against the real Glance of the test
cloud (scripts/testcloud, file store), read back with the real `openstack` client.  The
images are small real qcow2 disks with a dpkg database (test_publish.make_small_image),
published as amp-image publishes a built one."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cloud_client import RealCloud
from test_publish import make_small_image
from test_signing import make_key, write_key

pytestmark = pytest.mark.cloud

NAME = "amphora-x64-haproxy"


@pytest.fixture
def cloud(test_cloud: RealCloud) -> RealCloud:
    """No image of the tests' names left from an earlier test."""
    conn = test_cloud.sdk()
    for name in (NAME, "other-name"):
        for image in list(conn.image.images(name=name)):
            conn.image.delete_image(image)
    return test_cloud


def publish(cloud: RealCloud, image: Path, dest: Path, *args: str, env=None):
    return cloud.amp_image("publish", str(image), "--dest", str(dest), "--name", NAME,
                           "--upload", *args, env=env)


def uploaded_id(result) -> str:
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("uploaded to"))
    return line.rsplit(" ", 1)[1]


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_the_uploaded_image_reads_back_as_glance_json_says(cloud, tmp_path):
    image = make_small_image(tmp_path, f"{NAME}.qcow2")
    dest = tmp_path / "dist"
    image_id = uploaded_id(publish(cloud, image, dest))
    spec = json.loads((dest / "glance.json").read_text())
    shown = cloud.read("image", "show", image_id)
    assert shown["name"] == NAME and shown["status"] == "active"
    assert shown["disk_format"] == "qcow2" and shown["container_format"] == "bare"
    assert shown["visibility"] == "private"
    assert shown["tags"] == ["amphora"]
    assert shown["min_disk"] == spec["min_disk"]
    for key, value in spec["properties"].items():
        assert shown["properties"][key] == value, key
    published = dest / image.name
    assert shown["size"] == published.stat().st_size
    assert shown["checksum"] == file_hash(published, "md5")
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == file_hash(published, "sha512")
    # What Glance stored is the published file, byte for byte.
    saved = tmp_path / "saved.qcow2"
    cloud.openstack("image", "save", "--file", str(saved), image_id)
    assert file_hash(saved, "sha256") == spec["properties"]["amp_image_sha256"]


def test_glance_verifies_a_signed_upload_and_refuses_it_without_its_certificate(
        cloud, tmp_path):
    """Glance checks img_signature at upload, with the certificate from the key manager
    (Barbican, not part of the test cloud): the refusal is one line, the published
    folder stays complete, and no half-made image is left in Glance."""
    image = make_small_image(tmp_path, f"{NAME}.qcow2")
    key = write_key(tmp_path / "signing.pem", make_key("RSA-PSS"))
    dest = tmp_path / "dist"
    cert_uuid = "6a3a3a8f-0c4f-4b9e-9d43-1c2b1a1e5d11"
    result = publish(cloud, image, dest, "--sign-key", str(key), "--cert-uuid", cert_uuid)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Glance upload failed" in lines[0], result.stderr
    assert subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest,
                          capture_output=True).returncode == 0
    spec = json.loads((dest / "glance.json").read_text())
    assert spec["properties"]["img_signature_certificate_uuid"] == cert_uuid
    assert {"img_signature", "img_signature_hash_method",
            "img_signature_key_type"} <= set(spec["properties"])
    log = (cloud.where.logs / "glance.log").read_text(errors="replace")
    assert f"Unable to retrieve certificate with ID {cert_uuid}" in log
    assert list(cloud.sdk().image.images(name=NAME)) == []


def tagged(cloud: RealCloud, *ids: str) -> dict[str, list[str]]:
    read = cloud.read_all({image_id: ("image", "show", image_id) for image_id in ids})
    return {image_id: (shown["tags"] if shown else None) for image_id, shown in read.items()}


def test_rotate_keeps_the_newest_tagged_and_touches_nothing_else(cloud, tmp_path):
    conn = cloud.sdk()
    # Not amp-image's: same name and tag, but uploaded by hand (no record on it); and
    # amp-image's under another name.
    by_hand = conn.image.create_image(NAME, data=b"0" * 4096, disk_format="raw",
                                      container_format="bare", tags=["amphora"]).id
    other = uploaded_id(cloud.amp_image(
        "publish", str(make_small_image(tmp_path / "o", "o.qcow2", "other", )),
        "--dest", str(tmp_path / "o-dist"), "--name", "other-name", "--upload"))
    ids = []
    for label in ("one", "two", "three"):
        folder = tmp_path / label
        folder.mkdir()
        image = make_small_image(folder, f"{NAME}.qcow2", label)
        result = publish(cloud, image, tmp_path / f"dist-{label}", "--rotate", "2")
        ids.append(uploaded_id(result))
    first, second, third = ids
    assert f"untagged {first}" in result.stdout, result.stdout
    assert tagged(cloud, first, second, third, by_hand, other) == {
        first: [], second: ["amphora"], third: ["amphora"], by_hand: ["amphora"],
        other: ["amphora"]}

    folder = tmp_path / "four"
    folder.mkdir()
    result = publish(cloud, make_small_image(folder, f"{NAME}.qcow2", "four"),
                     tmp_path / "dist-four", "--rotate", "1", "--rotate-delete")
    fourth = uploaded_id(result)
    assert f"deleted {second}" in result.stdout and f"deleted {third}" in result.stdout
    assert tagged(cloud, first, second, third, fourth, by_hand, other) == {
        first: [], second: None, third: None, fourth: ["amphora"], by_hand: ["amphora"],
        other: ["amphora"]}


def test_rotate_without_upload_is_refused_before_anything_is_written(cloud, tmp_path):
    image = make_small_image(tmp_path, f"{NAME}.qcow2")
    result = cloud.amp_image("publish", str(image), "--dest", str(tmp_path / "dist"),
                             "--rotate", "2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "amp-image: error: --rotate needs --upload (it rotates the images in Glance after "
        "an upload); add --upload or drop --rotate"]
    assert not (tmp_path / "dist").exists()


def wrong_clouds(cloud: RealCloud, folder: Path, service: str = "image"
                 ) -> dict[str, tuple[dict, str]]:
    """Environments of a cloud that cannot serve, and what the one line must say (for
    a command whose first service in the catalog is service)."""
    from testcloud.layout import free_port

    return {
        "wrong password": (cloud.env_with(folder / "a", password="wrong"),
                           "refused the credentials"),
        "unreachable Keystone": (cloud.env_with(folder / "b", auth_url=(
            f"http://127.0.0.1:{free_port()}/v3")), "does not answer"),
        "no such region": (cloud.env_with(folder / "c", settings={"region_name": "Nowhere"}),
                           f"catalog has no {service} service"),
    }


@pytest.mark.parametrize("case", ["wrong password", "unreachable Keystone", "no such region"])
def test_a_cloud_that_cannot_serve_fails_in_one_line_before_anything_is_written(
        cloud, tmp_path, case):
    env, says = wrong_clouds(cloud, tmp_path)[case]
    image = make_small_image(tmp_path, f"{NAME}.qcow2")
    result = publish(cloud, image, tmp_path / "dist", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not (tmp_path / "dist").exists()
    assert list(cloud.sdk().image.images(name=NAME)) == []
