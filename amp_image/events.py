"""An opt-in log of the costly things amp-image does: image builds and VM boots.

With ``AMP_IMAGE_EVENTS`` naming a file, :func:`record` appends one JSON line per
event to it; without it, :func:`record` does nothing.  The test suite's time budget
(``scripts/test``, ``tests/budget.py``) sets it to count, per group of tests, how many
builds and boots each made.  Each line is::

    {"kind": KIND, "time": <time.time()>, "pid": <os.getpid()>, **details}

Kinds:

``build``
    an image build (a DIB run) starts: recorded by ``amp_image.builder.dib``.
``boot``
    a QEMU virtual machine starts (any ``qemu-system-*``, the accelerator's probe boot
    too): recorded by ``amp_image.verify.vm.Machine.start``, with ``image`` (the file
    name), ``boot`` (``bootloader``: the image's own, as Nova boots it; ``direct``: the
    image's kernel and initramfs handed to QEMU), ``arch`` and ``accel``.

Builds, test runs and the conformance suite's processes write to the same file at
once: each line is one ``write`` on a descriptor opened with ``O_APPEND``, so lines
never interleave.  A file that cannot be written is told on stderr, once per process,
and the build or boot goes on: a measurement must not change what it measures.
"""

from __future__ import annotations

import json
import os
import sys
import time

ENV = "AMP_IMAGE_EVENTS"
RESERVED = ("kind", "time", "pid")
_warned: set[str] = set()


def record(kind: str, **details: object) -> None:
    """Append one event to the file ``AMP_IMAGE_EVENTS`` names; nothing when it is unset."""
    target = os.environ.get(ENV)
    if not target:
        return
    clash = [k for k in details if k in RESERVED]
    if clash:
        raise ValueError(f"event details may not set {', '.join(clash)}")
    event = {"kind": kind, "time": time.time(), "pid": os.getpid(), **details}
    line = (json.dumps(event, default=str) + "\n").encode()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        if target not in _warned:
            _warned.add(target)
            print(f"amp-image: cannot record events in {target} ({ENV}): {exc.strerror}",
                  file=sys.stderr)
