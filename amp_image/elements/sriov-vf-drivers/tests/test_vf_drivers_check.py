"""post-install.d/70-check-vf-drivers on a scratch root (AMP_IMAGE_ROOT) with
depmod and modinfo stubbed: what it records, and how it fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "post-install.d/70-check-vf-drivers"
KERNEL = "6.12.57+deb13-amd64"
PATHS = {
    "iavf": f"/lib/modules/{KERNEL}/kernel/drivers/net/ethernet/intel/iavf/iavf.ko.xz",
    "igbvf": f"/lib/modules/{KERNEL}/kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko.xz",
    "virtio_net": f"/lib/modules/{KERNEL}/kernel/drivers/net/virtio_net.ko.xz",
}
# modinfo -F alias: PCI aliases for the VF drivers; virtio_net has only virtio ones.
ALIASES = {"iavf": "pci:v00008086d0000154Csv*sd*bc*sc*i*",
           "igbvf": "pci:v00008086d000010CAsv*sd*bc*sc*i*",
           "virtio_net": "virtio:d00000001v*"}


def check(tmp_path: Path, drivers: str) -> subprocess.CompletedProcess:
    root, stub = tmp_path / "root", tmp_path / "stub"
    (root / "lib/modules" / KERNEL).mkdir(parents=True, exist_ok=True)
    stub.mkdir(exist_ok=True)
    (stub / "depmod").write_text(f'#!/bin/bash\necho "$*" >> "{tmp_path}/depmod.log"\n')
    cases = "".join(f'  "{KERNEL} filename {m}") echo "{p}" ;;\n'
                    f'  "{KERNEL} alias {m}") echo "{ALIASES[m]}" ;;\n'
                    for m, p in PATHS.items())
    (stub / "modinfo").write_text(
        '#!/bin/bash\n# modinfo -k KVER -F FIELD MODULE\n'
        f'case "$2 $4 $5" in\n{cases}  *) echo "modinfo: ERROR: Module $5 not found." >&2;'
        ' exit 1 ;;\nesac\n')
    for tool in ("depmod", "modinfo"):
        (stub / tool).chmod(0o755)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": f"{stub}:{os.environ['PATH']}",
                               "AMP_IMAGE_ROOT": str(root), "DIB_AMP_VF_DRIVERS": drivers})


def test_records_each_driver_of_each_kernel(tmp_path):
    result = check(tmp_path, "iavf igbvf")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "root/etc/amp-image/vf-drivers").read_text() == (
        f"iavf {KERNEL} {PATHS['iavf']}\nigbvf {KERNEL} {PATHS['igbvf']}\n")
    assert (tmp_path / "depmod.log").read_text() == f"-a {KERNEL}\n"


def test_missing_drivers_are_named_and_nothing_is_recorded(tmp_path):
    result = check(tmp_path, "iavf mlx5_core igbvf bnxt_en")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == \
        "sriov-vf-drivers: VF driver module(s) missing from the image's kernel: mlx5_core bnxt_en"
    assert "Debian: linux-image-amd64" in result.stderr
    assert list((tmp_path / "root/etc/amp-image").iterdir()) == []


def test_a_module_udev_cannot_autoload_for_a_vf_fails(tmp_path):
    result = check(tmp_path, "iavf virtio_net")
    assert result.returncode == 1
    assert result.stderr == \
        "sriov-vf-drivers: virtio_net has no PCI alias; udev could not autoload it\n"
    assert not (tmp_path / "root/etc/amp-image/vf-drivers").exists()
