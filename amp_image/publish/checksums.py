"""Checksums of published files: SHA-256, and SHA256SUMS in sha256sum's format."""

from __future__ import annotations

from pathlib import Path

from amp_image.builder.digests import sha256_file

SUMS_FILE = "SHA256SUMS"


def write_sums(folder: Path, names: list[str], sums_file: str) -> None:
    """sha256sum's text format: ``HEX  NAME`` per line."""
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)]
    (folder / sums_file).write_text("".join(lines))
