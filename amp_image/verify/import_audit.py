"""Which of the agent venv's distributions a booted amphora ever reads.

The listing comes from the running amphora (``LISTING_COMMAND`` over SSH, once the
scenarios are done): every file of the venv with its access and modification times.
The amphora's root is mounted ``relatime`` and pip writes each file without reading it
back, so a file read since it was written has an access time after its modification
time.  Python sources are left out: the build reads them all to compile them, and the
compiled files show what was imported; a compiled file read counts as its source read,
since the agent's bytecode is compiled after pip installs it and is not in the RECORD.
The listing is then mapped to distributions by their RECORD, read from the image itself.

Reads during the build (the agent element proves its programs load) count as use: the
audit errs towards keeping a distribution.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

AGENT_VENV = "/opt/amphora-agent-venv"
LISTING_COMMAND = (f"find {AGENT_VENV} -type f ! -name '*.py' -printf '%A@ %T@ %p\\n'")
# Access times coarser than this are not taken as a read (file systems round them).
READ_MARGIN_S = 0.5


def read_files(listing: str) -> set[str]:
    """The venv paths (relative to site-packages) read since they were written."""
    read = set()
    for line in listing.splitlines():
        atime, mtime, path = line.split(" ", 2)
        if float(atime) > float(mtime) + READ_MARGIN_S and "/site-packages/" in path:
            read.add(path.split("/site-packages/", 1)[1])
    return read


def source_of(path: str) -> str:
    """The source a compiled file was made from (pkg/__pycache__/m.cpython-313.pyc:
    pkg/m.py); any other path as it is."""
    compiled = PurePosixPath(path)
    if compiled.parent.name != "__pycache__" or compiled.suffix != ".pyc":
        return path
    return str(compiled.parent.parent / f"{compiled.name.split('.', 1)[0]}.py")


def usage(site_packages: Path, read: set[str]) -> dict[str, dict]:
    """Per distribution in site_packages: its files (no metadata), how many were read,
    and its size on disk."""
    read = read | {source_of(path) for path in read}
    report = {}
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        records = [str(f) for f in dist.files or ()]
        files = [f for f in records if ".dist-info/" not in f and not f.startswith("..")]
        size = sum((site_packages / f).stat().st_size for f in records
                   if (site_packages / f).is_file())
        report[dist.metadata["Name"]] = {"files": len(files),
                                        "read": sum(f in read for f in files), "bytes": size}
    return report


def never_read(report: dict[str, dict]) -> list[str]:
    return sorted(name for name, dist in report.items() if dist["read"] == 0)


def audit(site_packages: Path, listings: Iterable[str]) -> dict:
    read: set[str] = set()
    for listing in listings:
        read |= read_files(listing)
    report = usage(site_packages, read)
    unused = never_read(report)
    return {"distributions": report, "never_read": unused,
            "never_read_bytes": sum(report[name]["bytes"] for name in unused)}


def write_audit(image: Path, listing_dir: Path, target: Path) -> dict:
    """Map the listings the conformance run left in listing_dir to the image's
    distributions; write the result as JSON to target."""
    from amp_image.image.imagefs import mounted_image

    files = sorted(listing_dir.glob("*.txt"))
    with mounted_image(image) as root:
        site = next((root / AGENT_VENV.lstrip("/")).glob("lib/python3*/site-packages"))
        result = audit(site, [p.read_text() for p in files])
    result["listings"] = [p.name for p in files]
    target.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result
