"""debootstrap_cache: the cached debootstrap tarball is checked before DIB unpacks it,
with real tarballs (truncated, corrupted, sound) in a scratch cache."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from amp_image.builder import debootstrap_cache as cache


def make_tarball(cache_dir: Path) -> Path:
    tarball = cache.tarball_path(cache_dir, "trixie", "amd64")
    with tarfile.open(tarball, "w:gz") as archive:
        for i in range(40):
            data = (f"file {i}\n" * 5000).encode()
            info = tarfile.TarInfo(f"./etc/file{i}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return tarball


def checked(tarball: Path) -> list[str]:
    said: list[str] = []
    cache.check(tarball, said.append)
    return said


def test_sound_tarball_is_kept_and_recorded(tmp_path):
    tarball = make_tarball(tmp_path)
    assert checked(tarball) == []
    assert tarball.is_file() and tarball.with_name(tarball.name + ".sha256").is_file()
    assert checked(tarball) == []  # against the record this time


def test_truncated_tarball_without_a_record_is_set_aside(tmp_path):
    """As a build killed while DIB's tar -czf was writing it leaves it."""
    tarball = make_tarball(tmp_path)
    tarball.write_bytes(tarball.read_bytes()[:2000])
    said = checked(tarball)
    assert len(said) == 1 and "is damaged (unreadable:" in said[0]
    assert said[0].endswith("this build bootstraps from the mirror and caches a new one")
    assert not tarball.exists()
    assert (tmp_path / (tarball.name + ".corrupt")).is_file()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_tarball_changed_since_it_was_recorded_is_set_aside(tmp_path, damage):
    tarball = make_tarball(tmp_path)
    cache.remember(tarball)
    data = bytearray(tarball.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))
    said = checked(tarball)
    assert len(said) == 1 and "is damaged" in said[0], said
    assert not tarball.exists()
    assert not tarball.with_name(tarball.name + ".sha256").exists()


def test_no_tarball_nothing_to_do(tmp_path):
    assert checked(cache.tarball_path(tmp_path, "trixie", "amd64")) == []
    assert list(tmp_path.iterdir()) == []
