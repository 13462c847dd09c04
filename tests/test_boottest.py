"""The boot-test harness without a VM: cleanup on early failures and on SIGTERM."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from amp_image import boottest


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """TMPDIR for the code under test, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp


@pytest.mark.parametrize("failing", ["ssh_keypair", "_config_drive", "choose_accel"])
def test_booted_amphora_removes_its_files_on_an_early_failure(private_tmp, monkeypatch,
                                                              failing):
    """PKI, client files, SSH key and config drive go, whatever fails first."""
    def fail(*args, **kw):
        raise RuntimeError(f"{failing} failed")

    monkeypatch.setattr(boottest, failing, fail)
    with pytest.raises(RuntimeError, match=failing), \
            boottest.booted_amphora(private_tmp / "none.qcow2"):
        pytest.fail("never booted")
    assert list(private_tmp.iterdir()) == []
