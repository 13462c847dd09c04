"""Reading DIB's output: short progress lines while it runs, and the most telling
line of a failed build for the one-line error."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

_RUN_PARTS = re.compile(r"dib-run-parts Running \S*/([a-z-]+\.d)/(\S+)")
_HOOKS = re.compile(r"Running hooks from \S*/([a-z-]+\.d)\s*$")
_COMPLETED = re.compile(r"dib-run-parts (\S+) completed$")
_ERROR = re.compile(r"(ERROR\b|Error\b|E: |fatal: )")
MAX_ERROR_CHARS = 240
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


def failing_hook(lines: list[str]) -> tuple[str, list[str]] | None:
    """The hook DIB was running when it failed ('phase.d/script'), and what it printed:
    the last one that dib-run-parts started and never reported completed."""
    hook, start = "", None
    for i, line in enumerate(lines):
        running = _RUN_PARTS.search(line)
        if running:
            hook, start = f"{running.group(1)}/{running.group(2)}", i
            continue
        done = _COMPLETED.search(line)
        if done and start is not None and hook.endswith("/" + done.group(1)):
            start = None
    return None if start is None else (hook, lines[start + 1:])


def _first_error(output: list[str], prefixes: tuple[str, ...]) -> str:
    """An element's own message ("<element>: ...") or the first ERROR/E:/fatal: line."""
    for text in output:
        if (prefixes and text.startswith(prefixes)) or _ERROR.match(text):
            return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."
    return ""


def last_error(log_file: Path, elements: tuple[str, ...] = ()) -> str:
    """The most telling line of a failed build, for the one-line error.

    A full disk (ENOSPC near the end) is named as such, whatever failed on it.  A hook
    that failed is named with the first error it printed: our elements report failures
    as "<element>: <what and how to fix>", other tools as ERROR, E: or fatal: lines.
    Only the failing hook's own output is read: the lines of hooks that completed
    (the layer cache's notes on skipped hooks, say) never name the cause.  A build that
    failed outside any hook gets the last ERROR or E: line.
    """
    try:
        lines = [line.split(" | ", 1)[-1].strip()
                 for line in log_file.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    if any(NO_SPACE in line for line in lines[-200:]):
        return (": no space left on device; free space where --work-dir and --cache-dir "
                "are, or point them at a larger file system")
    failed = failing_hook(lines)
    if failed:
        hook, output = failed
        error = _first_error(output, tuple(f"{element}: " for element in elements))
        return f": {hook} failed: {error}" if error else f": {hook} failed"
    for text in reversed(lines):
        if _ERROR.match(text) and len(text) < 300:
            return f": {text}"
    return ""
