"""The build's log beside the image: one file per build, so a build never overwrites the
log of the one before it (the log of a failed build is where its error line says).

Build N of ``-o OUTPUT`` logs to ``OUTPUT.<UTC YYYYmmddTHHMMSSZ>.log`` (``-2``, ``-3``...
before ``.log`` if that name is taken), and ``OUTPUT.log`` is a symlink to the newest.
The ``KEEP`` newest logs of that output stay; older ones go.  Only files named by this
pattern for this output are ever removed.  A regular file ``OUTPUT.log`` (the log of an
amp-image from before this scheme, or the operator's own file) is never removed: it is
renamed into the pattern, stamped with its modification time, and kept like the others.
"""

from __future__ import annotations

import itertools
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from amp_image.errors import PlanError

KEEP = 10
STAMP = "%Y%m%dT%H%M%SZ"


def link_path(output: Path) -> Path:
    """``OUTPUT.log``: the stable name of output's newest log."""
    return output.with_name(output.name + ".log")


def log_path(output: Path, when: datetime, n: int = 1) -> Path:
    """``OUTPUT.<stamp>[-n].log``: the log of output's build started at when (UTC)."""
    suffix = f"-{n}" if n > 1 else ""
    return output.with_name(f"{output.name}.{when.astimezone(UTC).strftime(STAMP)}"
                            f"{suffix}.log")


def _pattern(output: Path) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(output.name)}\.(\d{{8}}T\d{{6}}Z)(?:-(\d+))?\.log")


def logs_of(output: Path) -> list[Path]:
    """output's timestamped logs (regular files named by the pattern), oldest first."""
    pattern = _pattern(output)
    found = []
    for path in output.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append(((match[1], int(match[2] or 1)), path))
    return [path for _, path in sorted(found)]


def _free_name(output: Path, when: datetime) -> Path:
    return next(p for n in itertools.count(1)
                if not os.path.lexists(p := log_path(output, when, n)))


def _adopt(output: Path) -> None:
    """A regular file at OUTPUT.log renamed to the timestamped form of its mtime."""
    link = link_path(output)
    if link.is_symlink() or not link.exists():
        return
    if not link.is_file():
        raise PlanError(f"{link} is not a file; move it away or pass --log-file")
    when = datetime.fromtimestamp(link.stat().st_mtime, UTC)
    kept = _free_name(output, when)
    try:
        os.rename(link, kept)
    except OSError as exc:
        raise PlanError(f"cannot rename the earlier log {link} to {kept.name} "
                        f"({exc.strerror or exc}); move it away or pass --log-file") from None


def _create(output: Path, when: datetime) -> Path:
    """A new empty log file, its name claimed atomically (two builds never share one)."""
    n = 1
    while True:
        path = log_path(output, when, n)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            n += 1
            continue
        return path


def _point(link: Path, log: Path) -> None:
    """link made (atomically) a relative symlink to log, beside it."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(log.name, tmp)
    os.replace(tmp, link)


def prune(output: Path, keep: int = KEEP, *, spare: Path | None = None) -> list[Path]:
    """Remove output's timestamped logs but the keep newest (and spare); the removed."""
    removed = []
    for old in logs_of(output)[:-keep] if keep > 0 else logs_of(output):
        if old == spare:
            continue
        try:
            old.unlink()
        except OSError:
            continue  # best effort: a log that cannot go stays
        removed.append(old)
    return removed


def new_log(output: Path, *, now: datetime | None = None, keep: int = KEEP) -> Path:
    """The log file of a build of output, created empty, with OUTPUT.log pointing at it
    and only the keep newest of output's logs left."""
    _adopt(output)
    log = _create(output, now or datetime.now(UTC))
    _point(link_path(output), log)
    prune(output, keep, spare=log)
    return log
