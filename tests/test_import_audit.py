"""The import audit's reading of a listing and its mapping to distributions (a made-up
site-packages; the listing is what LISTING_COMMAND prints in an amphora)."""

from __future__ import annotations

from pathlib import Path

from amp_image.verify.import_audit import audit, read_files

VENV_SITE = "/opt/amphora-agent-venv/lib/python3.13/site-packages"


def make_site(root: Path, dists: dict[str, list[str]]) -> Path:
    for name, files in dists.items():
        info = f"{name}-1.0.dist-info"
        for f in (*files, f"{info}/METADATA"):
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_text("x" * 10)
        (root / info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                              "Version: 1.0\n")
        (root / info / "RECORD").write_text(
            "".join(f"{f},,\n" for f in (*files, f"{info}/METADATA", f"{info}/RECORD")))
    return root


def line(path: str, atime: float, mtime: float) -> str:
    return f"{atime} {mtime} {VENV_SITE}/{path}"


def test_a_file_counts_as_read_only_when_read_after_it_was_written():
    listing = "\n".join([line("a/__pycache__/x.pyc", 200.0, 100.0),
                         line("b/__pycache__/y.pyc", 100.2, 100.0),
                         line("c/data.json", 100.0, 100.0)])
    assert read_files(listing) == {"a/__pycache__/x.pyc"}


def test_distributions_never_read_and_their_bytes(tmp_path):
    site = make_site(tmp_path, {"agent_lib": ["agent_lib/__init__.py",
                                              "agent_lib/__pycache__/__init__.cpython-313.pyc"],
                                "controller_lib": ["controller_lib/__init__.py",
                                                   "controller_lib/_speedups.so"]})
    listing = "\n".join([line("agent_lib/__pycache__/__init__.cpython-313.pyc", 9.0, 1.0),
                         line("controller_lib/_speedups.so", 1.0, 1.0),
                         # a metadata read (entry point scans) is not use
                         line("controller_lib-1.0.dist-info/METADATA", 9.0, 1.0)])
    result = audit(site, [listing])
    assert result["never_read"] == ["controller_lib"]
    # the compiled file and, through it, its source
    assert result["distributions"]["agent_lib"]["read"] == 2
    assert result["distributions"]["controller_lib"] == {
        "files": 2, "read": 0, "bytes": (site / "controller_lib/__init__.py").stat().st_size
        + 10 + (site / "controller_lib-1.0.dist-info/METADATA").stat().st_size
        + (site / "controller_lib-1.0.dist-info/RECORD").stat().st_size}
    assert result["never_read_bytes"] == result["distributions"]["controller_lib"]["bytes"]


def test_bytecode_compiled_after_pip_counts_for_its_sources_distribution(tmp_path):
    """amphora-agent compiles the venv after pip installed it with --no-compile: the
    RECORD names the sources only."""
    site = make_site(tmp_path, {"agent_lib": ["agent_lib/__init__.py", "agent_lib/util.py"],
                                "controller_lib": ["controller_lib/__init__.py"]})
    listing = "\n".join([line("agent_lib/__pycache__/util.cpython-313.pyc", 9.0, 1.0),
                         line("controller_lib/__pycache__/__init__.cpython-313.pyc", 1.0, 1.0)])
    result = audit(site, [listing])
    assert result["never_read"] == ["controller_lib"]
    assert result["distributions"]["agent_lib"]["read"] == 1


def test_listings_of_several_amphorae_add_up(tmp_path):
    site = make_site(tmp_path, {"one": ["one/m.so"], "two": ["two/m.so"]})
    first = line("one/m.so", 9.0, 1.0)
    second = line("two/m.so", 9.0, 1.0)
    assert audit(site, [first, second])["never_read"] == []
    assert audit(site, [first])["never_read"] == ["two"]
