"""Reading DIB's output: short progress lines while it runs, and the most telling
line of a failed build for the one-line error."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

_RUN_PARTS = re.compile(r"dib-run-parts Running \S*/([a-z-]+\.d)/(\S+)")
_HOOKS = re.compile(r"Running hooks from \S*/([a-z-]+\.d)\s*$")
NO_SPACE = "No space left on device"


class Progress:
    """Turns DIB's log stream into short 'phase/script' lines with elapsed time."""

    def __init__(self, emit: Callable[[str], None], start: float) -> None:
        self.emit = emit
        self.start = start
        self.current = ""

    def feed(self, line: str) -> None:
        match = _RUN_PARTS.search(line)
        if match:
            step = f"{match.group(1)}/{match.group(2)}"
        else:
            match = _HOOKS.search(line)
            if not match:
                return
            step = match.group(1)
        if step != self.current:
            self.current = step
            elapsed = int(time.monotonic() - self.start)
            self.emit(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {step}")


def last_error(log_file: Path, elements: tuple[str, ...] = ()) -> str:
    """The most telling line of a failed build, for the one-line error.

    A full disk (ENOSPC near the end) is named as such, whatever failed on it.  Our
    elements report failures as "<element>: <what and how to fix>"; the first line
    of the last such run wins.  Otherwise the last ERROR or E: line.
    """
    try:
        lines = [line.split(" | ", 1)[-1].strip()
                 for line in log_file.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    if any(NO_SPACE in line for line in lines[-200:]):
        return (": no space left on device; free space where --work-dir and --cache-dir "
                "are, or point them at a larger file system")
    prefixes = tuple(f"{element}: " for element in elements)
    for i in range(len(lines) - 1, -1, -1):
        if prefixes and lines[i].startswith(prefixes):
            element = lines[i].split(": ", 1)[0]
            while i > 0 and lines[i - 1].startswith(f"{element}: "):
                i -= 1
            return f": {lines[i]}"
    for text in reversed(lines):
        if re.match(r"(ERROR\b|Error\b|E: )", text) and len(text) < 300:
            return f": {text}"
    return ""
