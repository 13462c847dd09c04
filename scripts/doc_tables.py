"""The documentation's tables of series, written from the code's tables.

The README's compatibility table and ``amp_image/data/README.md``'s table of vendored
upper constraints name each series, its newest octavia, its default Debian release and
its vendored file as ``builder/constraints.py`` and the plan have them; what was
measured (built, boot-tested, times) and where each file came from are written here, the
one place they are kept.  ``python scripts/doc_tables.py`` rewrites both tables;
``tests/test_series.py`` checks that doing so changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from amp_image.builder import constraints
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DATA_README = constraints.DATA_DIR / "README.md"
BEGIN = "<!-- {name}: written by scripts/doc_tables.py from the code; do not edit here -->"
END = "<!-- end of {name} -->"

# (series, architecture) -> built here, boot-tested here, build time, boot time: as
# measured on this machine (./scripts/bench --matrix, scripts/test-arm64).
MEASURED = {
    ("2024.1", "amd64"): (
        "yes", "yes: 56 checks passed, 2 not applicable",
        "225.5 s (`netifaces` compiled); 291.9 MiB, the agent venv whole", "149.4 s"),
    ("2025.1", "amd64"): (
        "yes", "yes: 56 checks passed, 2 not applicable",
        "215 s (a new bookworm debootstrap tarball); 287.8 MiB, the agent venv whole (the "
        "prune list is octavia 19's)", "142 s and 188 s (two runs)"),
    ("2025.2", "amd64"): (
        "yes", "yes: 56 checks passed, 2 not applicable",
        "201.3 s; 291.1 MiB, the agent venv whole", "132.6 s"),
    ("2026.1", "amd64"): (
        "yes", "yes: 56 checks passed, 2 not applicable",
        "189.3 s; 267.2 MiB, the agent venv whole", "115.5 s"),
    ("2026.2", "amd64"): (
        "yes", "yes",
        "137 s cold, 106 s warm ([docs/performance.md](docs/performance.md))",
        "58.7 s, median of 3 ([docs/performance.md](docs/performance.md))"),
    ("2026.2", "arm64"): (
        "yes", "yes: 56 amphora checks passed, 2 not applicable (twice); SR-IOV scenario 3 "
        "of 16: QEMU's igb PF never answers its VFs on `virt` (see below)",
        "31m27s under qemu-user; 254.9 MiB",
        "143.2 s (SSH 91.7 s) without the igb NIC, 235.0 s (SSH 167.3 s) with it; UEFI GRUB"),
}
NOT_MEASURED = ("no", "no", "", "")

# Vendored file -> (what its series is beside its name, where it came from).
SOURCES = {
    "upper-constraints-2026.2.txt": (
        " (master on 2026-08-22)",
        "openstack/requirements `upper-constraints.txt`, master, 2026-08-22"),
    "upper-constraints-2026.1.txt": (
        "", "openstack/requirements `upper-constraints.txt`, `stable/2026.1`"),
    "upper-constraints-2025.2.txt": (
        "", "openstack/requirements `upper-constraints.txt`, `stable/2025.2`"),
    "upper-constraints-2025.1.txt": (
        "", "openstack/requirements `upper-constraints.txt`, `stable/2025.1`"),
    "upper-constraints-2024.1.txt": (
        "", "openstack/requirements `upper-constraints.txt`, `unmaintained/2024.1`"),
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def default_release(series: constraints.Series) -> str:
    """The Debian release the plan builds the series' newest agent on."""
    given = None if series.constraints else Path("upper-constraints.txt")
    options = BuildOptions(agent_version=series.latest, constraints_file=given)
    return make_plan(options, HostContext(), Path("elements")).env["DIB_RELEASE"]


def compatibility_table() -> str:
    """Every series on amd64, in order; then the other architectures measured."""
    cells = [(s, "amd64") for s in constraints.SERIES]
    cells += [(s, arch) for s in constraints.SERIES for (name, arch) in MEASURED
              if name == s.name and arch != "amd64"]
    rows = [[s.name, s.latest + ("" if s.constraints else " (`--constraints` needed)"),
             default_release(s), arch, *MEASURED.get((s.name, arch), NOT_MEASURED)]
            for s, arch in cells]
    return _table(["series", "octavia", "Debian release (default)", "architecture",
                   "built here", "boot-tested here", "build time",
                   "boot time (QEMU start to agent ready, TCG)"], rows)


def vendored_table() -> str:
    """Each vendored file, newest series first."""
    rows = [[f"`{s.constraints}`", s.name + SOURCES[s.constraints][0],
             f"{s.octavia_major}.x", SOURCES[s.constraints][1]]
            for s in reversed(constraints.SERIES) if s.constraints]
    return _table(["file", "series", "octavia", "source"], rows)


def with_table(text: str, name: str, table: str) -> str:
    """text with what stands between name's markers replaced by table."""
    begin, end = BEGIN.format(name=name) + "\n", END.format(name=name)
    head, found, rest = text.partition(begin)
    if not found or end not in rest:
        raise ValueError(f"no '{name}' markers")
    return head + begin + "\n" + table + "\n" + end + rest.partition(end)[2]


def documents() -> dict[Path, str]:
    """Each document as it should read, tables rewritten."""
    return {README: with_table(README.read_text(), "compatibility table",
                               compatibility_table()),
            DATA_README: with_table(DATA_README.read_text(), "vendored files table",
                                    vendored_table())}


def main() -> int:
    for path, text in documents().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rewrote the table in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
