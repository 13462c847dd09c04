"""finalise.d/90-amp-image-record, run on a scratch root (AMP_IMAGE_ROOT) as DIB
runs it in the chroot: the record amp-image's publish and provenance read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from amp_image.image.records import AptIndex, parse_apt_indexes, read_root_record

ELEMENT = Path(__file__).resolve().parent.parent
KERNEL = "6.12.118+deb13-amd64"


def test_amphora_record_records_the_package_indexes(tmp_path):
    """amphora-record's script, run on a fake root (AMP_IMAGE_ROOT) as DIB runs it
    in the chroot, before debootstrap's cleanup removes apt's lists."""
    root, manifests = tmp_path / "root", tmp_path / "manifests"
    lists = root / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (root / "lib/modules" / KERNEL).mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_trixie_InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n"
        "Suite: stable\nCodename: trixie\nDate: Sat, 22 Nov 2025 09:11:12 UTC\n"
        "Valid-Until: Sat, 29 Nov 2025 09:11:12 UTC\n")
    (lists / "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages").write_text(
        "Package: x\nDate: not this\n")
    (lists / "security.debian.org_dists_trixie-security_Release").write_text(
        "Origin: Debian\nDate: Mon, 24 Nov 2025 21:03:58 UTC\n")
    script = ELEMENT / "finalise.d/90-amp-image-record"
    subprocess.run(["bash", str(script)], check=True, env={
        "PATH": os.environ["PATH"], "AMP_IMAGE_ROOT": str(root), "ARCH": "arm64",
        "DIB_MANIFEST_IMAGE_DIR": str(manifests)})
    record = (root / "etc/amp-image/apt-indexes").read_text()
    assert parse_apt_indexes(record) == [
        AptIndex("deb.debian.org_debian_dists_trixie", "Sat, 22 Nov 2025 09:11:12 UTC"),
        AptIndex("security.debian.org_dists_trixie-security",
                 "Mon, 24 Nov 2025 21:03:58 UTC")]
    assert (root / "etc/amp-image/kernels").read_text().split() == [KERNEL]
    assert read_root_record(root).architecture == "arm64"
    assert (manifests / "amp-image/apt-indexes").read_text() == record
