"""SHA-256 of a file, of a folder and of a JSON value: the layer cache's keys and
records, the debootstrap tarball's record, the published checksums and the provenance's
element digests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_digest(folder: Path, *, element: bool = False) -> str:
    """SHA-256 of a folder's content, the same whoever owns it and whenever it was touched.

    One line per entry under the folder (not the folder itself), sorted by the bytes of
    its path relative to the folder (``/``-separated), and the digest is the SHA-256 of
    those lines joined:

    * a file: ``PATH\\0x\\0SHA256\\n`` when any of its execute bits is set (DIB runs
      only executable hooks), else ``PATH\\0-\\0SHA256\\n``; SHA256 is the hex SHA-256
      of its content;
    * a symlink, never followed: ``PATH\\0l\\0TARGET\\n`` (TARGET as the link reads);
    * a folder: ``PATH\\0d\\n`` (an empty one is content: DIB copies it with ``cp -a``).

    Left out: ``__pycache__`` folders and ``*.pyc`` files (byte code, written by whoever
    imports the folder's modules) and anything that is no file, symlink or folder.  For
    a DIB element (``element=True``, provenance's element digests) also ``.git`` folders
    and the element's top-level ``tests/`` (DIB does not copy it into the hooks, and
    element tests change without changing the image).  A folder a DIB_ variable names
    (the layer keys) keeps both: a local git repository's clone is read from ``.git``.
    """
    lines: list[tuple[bytes, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        top = here == folder
        dirnames[:] = [d for d in dirnames if not (
            d == "__pycache__" or element and (d == ".git" or top and d == "tests"))]
        for name in [*dirnames, *(f for f in filenames if not f.endswith(".pyc"))]:
            path = here / name
            rel = os.fsencode(path.relative_to(folder).as_posix())
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                lines.append((rel, b"%s\0l\0%s\n" % (rel, os.fsencode(os.readlink(path)))))
            elif stat.S_ISDIR(mode):
                lines.append((rel, b"%s\0d\n" % rel))
            elif stat.S_ISREG(mode):
                flag = b"x" if mode & 0o111 else b"-"
                lines.append((rel, b"%s\0%s\0%s\n" % (rel, flag, sha256_file(path).encode())))
    return hashlib.sha256(b"".join(line for _, line in sorted(lines))).hexdigest()


def json_digest(value) -> str:
    """SHA-256 of a JSON-serialisable value, its keys sorted (the layer keys' form)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
