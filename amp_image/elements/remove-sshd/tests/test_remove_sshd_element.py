"""remove-sshd's package-installs.yaml as DIB's package-installs-squash reads it,
together with DIB's openssh-server element (which rebind-sshd pulls in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import diskimage_builder
import pytest

ELEMENTS = Path(__file__).resolve().parent.parent.parent
DIB_ELEMENTS = Path(diskimage_builder.__file__).resolve().parent / "elements"


@pytest.mark.parametrize("order", [["openssh-server", "remove-sshd"],
                                   ["remove-sshd", "openssh-server"]])
def test_openssh_server_removed_after_install_d_whatever_the_order(tmp_path, order):
    out = tmp_path / "package-installs.json"
    subprocess.run([sys.executable,
                    str(DIB_ELEMENTS / "package-installs/bin/package-installs-squash"),
                    "--elements", " ".join(order), "--path", f"{ELEMENTS}:{DIB_ELEMENTS}",
                    str(out)],
                   env={"PATH": os.environ["PATH"], "ARCH": "amd64"}, check=True,
                   capture_output=True)
    phases = json.loads(out.read_text())
    assert [p for p, _ in phases["install.d"]["install"]] == ["openssh-server"]
    assert not phases["install.d"].get("uninstall")
    # Removed in post-install.d/95-package-uninstalls: after install.d, before
    # DIB's 99-harden-sshd-config (which still finds the sshd_config apt-get remove
    # keeps) and this element's 99-remove-sshd check.
    assert phases["post-install.d"]["uninstall"] == [["openssh-server", "remove-sshd"]]
