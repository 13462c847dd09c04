"""post-install.d/60-check-netfilter-modules on a scratch root (AMP_IMAGE_ROOT)
with modinfo and nft stubbed; and package-installs.yaml's backend choice as DIB's
package-installs-squash reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import diskimage_builder
import pytest

ELEMENT = Path(__file__).resolve().parent.parent
DIB_ELEMENTS = Path(diskimage_builder.__file__).resolve().parent / "elements"
KERNEL = "6.12.57+deb13-amd64"
NEEDED = ["nf_tables", "nft_ct", "nf_conntrack", "nft_reject_inet", "nft_chain_nat", "nf_nat"]


def check(tmp_path: Path, modules: list[str], nftables: str = "True"):
    root, stub = tmp_path / "root", tmp_path / "stub"
    (root / "lib/modules" / KERNEL).mkdir(parents=True)
    stub.mkdir()
    # modinfo -k KVER MODULE
    (stub / "modinfo").write_text(
        f'#!/bin/bash\n[ "$2" = "{KERNEL}" ] || exit 1\n'
        f'case " {" ".join(modules)} " in *" $3 "*) exit 0 ;; esac\nexit 1\n')
    (stub / "nft").write_text("#!/bin/bash\n")
    for tool in ("modinfo", "nft"):
        (stub / tool).chmod(0o755)
    result = subprocess.run(
        ["bash", str(ELEMENT / "post-install.d/60-check-netfilter-modules")],
        capture_output=True, text=True,
        env={"PATH": f"{stub}:{os.environ['PATH']}", "AMP_IMAGE_ROOT": str(root),
             "DIB_OCTAVIA_AMP_USE_NFTABLES": nftables})
    record = root / "etc/amp-image/firewall"
    return result, record.read_text() if record.exists() else None


def test_nftables_with_every_module(tmp_path):
    result, record = check(tmp_path, NEEDED)
    assert result.returncode == 0, result.stderr
    assert record == "AMP_FIREWALL=nftables\n"


def test_missing_modules_are_named(tmp_path):
    result, record = check(tmp_path, [m for m in NEEDED if m not in ("nft_ct", "nf_nat")])
    assert result.returncode == 1 and record is None
    assert result.stderr == \
        f"amphora-nftables: kernel modules missing: nft_ct({KERNEL}) nf_nat({KERNEL})\n"


def test_iptables_needs_no_module_check(tmp_path):
    result, record = check(tmp_path, [], nftables="False")
    assert result.returncode == 0, result.stderr
    assert record == "AMP_FIREWALL=iptables\n"


@pytest.mark.parametrize("flag,package", [("True", "nftables"), ("False", "iptables")])
def test_one_firewall_package(tmp_path, flag, package):
    out = tmp_path / "package-installs.json"
    subprocess.run([sys.executable,
                    str(DIB_ELEMENTS / "package-installs/bin/package-installs-squash"),
                    "--elements", "amphora-nftables", "--path", str(ELEMENT.parent),
                    str(out)],
                   env={"PATH": os.environ["PATH"], "ARCH": "amd64",
                        "DIB_OCTAVIA_AMP_USE_NFTABLES": flag},
                   check=True, capture_output=True)
    assert json.loads(out.read_text())["install.d"]["install"] == \
        [[package, "amphora-nftables"]]
