"""The bench's reading of DIB's per-script timings (scripts/bench.py, loaded by its
path); the log lines are DIB's own format."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts/bench.py")
bench = importlib.util.module_from_spec(spec)
sys.modules.setdefault("bench", bench)  # its dataclasses look their module up
spec.loader.exec_module(bench)

DIB_LOG = """\
2026-11-26 14:13:26.077 | dib-run-parts Script                                     Seconds
2026-11-26 14:13:26.077 | dib-run-parts ---------------------------------------  ----------
2026-11-26 14:13:26.078 | dib-run-parts 08-debootstrap                               34.713
2026-11-26 14:13:26.078 | dib-run-parts 10-cache-ubuntu-tarball                       0.021
2026-11-26 14:15:15.419 | dib-run-parts 75-amphora-agent-install                     23.702
2026-11-26 14:15:15.420 | dib-run-parts 76-amphora-agent-prune                        3.000
2026-11-26 14:15:15.421 | dib-run-parts Running /tmp/in_target.d/install.d/78-amp-layer-agent
"""


def test_slowest_dib_scripts_first_and_quick_ones_left_out():
    assert bench.slowest_steps(DIB_LOG) == [("08-debootstrap", 34.713),
                                           ("75-amphora-agent-install", 23.702),
                                           ("76-amphora-agent-prune", 3.0)]


def test_no_timings_in_the_log():
    assert bench.slowest_steps("nothing from DIB here\n") == []
