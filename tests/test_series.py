"""Agent series 2024.1 to 2026.2: constraints, the release their Python needs, bad input.

Where each series' Python range (constraints.SERIES) comes from, checked on
2026-11-25 on this machine:

* OpenStack's tested runtimes (openstack/governance reference/runtimes/<series>.rst):
  2024.1 3.8-3.11; 2024.2 3.9-3.11 (3.12 "no guarantee"); 2025.1 3.9-3.12;
  2025.2 3.10-3.12 (3.13 "no guarantee"); 2026.1 3.10-3.13; 2026.2 3.11-3.13.
* octavia's wheels on PyPI (Requires-Python; "Programming Language :: Python"
  classifiers): 14.0.2 >=3.8 (3.8-3.11), 15.1.0 >=3.9 (3.9-3.11), 16.1.0 >=3.9
  (3.9-3.11), 17.0.1 >=3.10 (3.10-3.12), 18.0.1 >=3.10 (3.10-3.13), 19.0.0 >=3.11
  (3.11-3.14).
* The constraints: ``pip install --dry-run --only-binary :all: --python-version 3.13
  --platform manylinux..._x86_64 -c <file> octavia==<latest> pyroute2`` (pure-Python
  sdists given as locally built wheels). 2024.1 does not resolve for 3.13: nine pins have
  no cp313 wheel (SQLAlchemy 1.4.51, setproctitle 1.3.3, cffi 1.16.0, MarkupSafe 2.1.5,
  rpds-py 0.18.0, PyYAML 6.0.1, msgpack 1.0.7, yappi 1.6.0, greenlet 3.0.3), so pip
  would compile them in the chroot (greenlet 3.0.3 does not build for 3.13). Every
  series resolves for 3.11; 2025.1 to 2026.2 resolve for 3.13 too. For 3.11 the only
  pin without any wheel that needs a compiler is 2024.1's netifaces 0.11.0
  (openstacksdk 3.0.0 requires it): hence its build packages.

So bookworm (3.11) is the default for 14.x to 17.x, and trixie (3.13) for 18.x and
19.x; trixie with 14.x to 17.x is refused (outside their declared support, and for
14.x not installable).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from amp_image.builder import constraints
from amp_image.builder.compat import BASE_OSES, RELEASE_PYTHON
from amp_image.builder.options import AgentSource, BuildOptions, HostContext
from amp_image.builder.plan import make_plan
from amp_image.cli import main
from amp_image.errors import PlanError

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
UC = Path("/srv/upper-constraints.txt")

# series -> (newest octavia, vendored file, default Debian release)
EXPECTED = {
    "2024.1": ("14.0.2", "upper-constraints-2024.1.txt", "bookworm"),
    "2024.2": ("15.1.0", None, "bookworm"),
    "2025.1": ("16.1.0", "upper-constraints-2025.1.txt", "bookworm"),
    "2025.2": ("17.0.1", "upper-constraints-2025.2.txt", "bookworm"),
    "2026.1": ("18.0.1", "upper-constraints-2026.1.txt", "trixie"),
    "2026.2": ("19.0.0", "upper-constraints-2026.2.txt", "trixie"),
}

# Vendored file -> (the file in shared/reference it was copied from, its SHA-256).
VENDORED = {
    "upper-constraints-2024.1.txt": (
        "upper-constraints-openstack-unmaintained-2024.1.txt",
        "f180e39bbbd2325be573d9668c5cbb5ee5a7389d9dbb7f714ffa676123225cd7"),
    "upper-constraints-2025.1.txt": (
        "upper-constraints-openstack-stable-2025.1.txt",
        "57e69ed3c417f93de2d58fc7fc24248375adc7f806f3440ca5cd53919f823587"),
    "upper-constraints-2025.2.txt": (
        "upper-constraints-openstack-stable-2025.2.txt",
        "e9d07562064153c10af35ad61a69080ea9f9fa1f5776dcb83ad6446c36fffb36"),
    "upper-constraints-2026.1.txt": (
        "upper-constraints-openstack-stable-2026.1.txt",
        "fca8c9e1dada0b5712385ce6346ac092a464e752f4f353fae7fc149709703eeb"),
    "upper-constraints-2026.2.txt": (
        "upper-constraints-openstack-master-2026-08-22.txt",
        "3c372cf25bbcaa5dedb4cdd6f0a9c33c056148b17eb2b3b3bab8f27b51cd3f5d"),
}


def plan(**kw):
    return make_plan(BuildOptions(**kw), HostContext(), Path("/elements"))


def refused(**kw) -> str:
    with pytest.raises(PlanError) as info:
        plan(**kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_series_table_is_14_to_19():
    assert constraints.SERIES_BY_OCTAVIA_MAJOR == {
        14: "2024.1", 15: "2024.2", 16: "2025.1", 17: "2025.2", 18: "2026.1", 19: "2026.2"}
    assert [s.name for s in constraints.SERIES] == list(EXPECTED)
    assert constraints.DEFAULT_AGENT_VERSION == "19.0.0"


@pytest.mark.parametrize("series", list(EXPECTED))
def test_each_series_picks_its_constraints_and_release(series):
    latest, vendored, release = EXPECTED[series]
    assert constraints.series_named(series).latest == latest
    assert constraints.series_for(latest) == series
    given = None if vendored else UC
    p = plan(agent_version=latest, constraints_file=given)
    assert p.constraints_file == (constraints.DATA_DIR / vendored if vendored else UC)
    assert p.constraints_file.is_file() or not vendored
    assert p.env["DIB_AMP_AGENT_CONSTRAINTS"] == str(p.constraints_file)
    assert p.env["DIB_RELEASE"] == release
    assert p.series == series
    assert p.as_dict()["agent"]["series"] == series


@pytest.mark.parametrize("version,series", [("16.0.0", "2025.1"), ("17.0.1.dev3", "2025.2"),
                                            ("18.1.0", "2026.1"), ("19.0.0.0rc1", "2026.2"),
                                            ("14", "2024.1")])
def test_any_release_of_a_series_maps_to_it(version, series):
    assert plan(agent_version=version).series == series


def test_2024_2_has_no_vendored_constraints_and_says_so_in_one_line():
    message = refused(agent_version="15.1.0")
    assert message == ("octavia 15.x (2024.2) has no vendored upper constraints; pass "
                       "--constraints FILE with openstack/requirements' 2024.2 "
                       "upper-constraints.txt")
    assert not (constraints.DATA_DIR / "upper-constraints-2024.2.txt").exists()


@pytest.mark.parametrize("name", list(VENDORED))
def test_vendored_files_are_openstacks_unchanged(name):
    reference, digest = VENDORED[name]
    data = (constraints.DATA_DIR / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest
    if (REFERENCE / reference).is_file():
        assert data == (REFERENCE / reference).read_bytes()
    assert f"`{name}`" in (constraints.DATA_DIR / "README.md").read_text()


def test_every_vendored_file_belongs_to_a_series():
    on_disk = {p.name for p in constraints.DATA_DIR.glob("upper-constraints-*.txt")}
    assert on_disk == {s.constraints for s in constraints.SERIES if s.constraints} \
        == set(VENDORED)


@pytest.mark.parametrize("series,python_range", [
    ("2024.1", ((3, 8), (3, 11))), ("2024.2", ((3, 9), (3, 11))),
    ("2025.1", ((3, 9), (3, 12))), ("2025.2", ((3, 10), (3, 12))),
    ("2026.1", ((3, 10), (3, 13))), ("2026.2", ((3, 11), (3, 14))),
])
def test_python_ranges(series, python_range):
    s = constraints.series_named(series)
    assert (s.python_min, s.python_max) == python_range
    assert s.supports(RELEASE_PYTHON[("debian", "bookworm")])
    assert s.supports(RELEASE_PYTHON[("debian", "trixie")]) == (s.octavia_major >= 18)


def test_every_release_has_its_python():
    """Each release amp-image builds has its Python in RELEASE_PYTHON (which one is
    checked against the built image: tests/test_image.py)."""
    for base in BASE_OSES.values():
        for release in base.releases:
            assert (base.name, release) in RELEASE_PYTHON


@pytest.mark.parametrize("version", ["14.0.2", "16.1.0", "17.0.1"])
def test_trixie_is_refused_for_series_without_python_3_13(version):
    message = refused(agent_version=version, release="trixie")
    major = version.split(".")[0]
    assert message.startswith(f"debian trixie has Python 3.13, which octavia {major}.x")
    assert message.endswith("use --release bookworm or --agent-version 18.0.1 (2026.1)")


def test_trixie_refused_for_2024_2_with_its_own_constraints_too():
    assert "use --release bookworm" in refused(agent_version="15.1.0", release="trixie",
                                               constraints_file=UC)


@pytest.mark.parametrize("version", ["14.0.2", "16.1.0", "17.0.1", "18.0.1", "19.0.0"])
def test_bookworm_builds_every_series(version):
    assert plan(agent_version=version, release="bookworm").env["DIB_RELEASE"] == "bookworm"


def test_trixie_builds_2026_1_and_2026_2():
    for version in ("18.0.1", "19.0.0"):
        assert plan(agent_version=version, release="trixie").env["DIB_RELEASE"] == "trixie"


@pytest.mark.parametrize("base,version,release", [
    ("ubuntu-minimal", "14.0.2", "jammy"), ("ubuntu-minimal", "16.1.0", "noble"),
    ("ubuntu-minimal", "19.0.0", "noble"), ("ubuntu-minimal", "19.0.0", "resolute"),
    ("centos-minimal", "14.0.2", "9-stream"), ("centos-minimal", "17.0.1", "10-stream"),
    ("centos-minimal", "19.0.0", "10-stream"),
    ("rocky", "16.1.0", "9"), ("rocky", "19.0.0", ""),
])
def test_other_bases_are_refused_before_any_release_is_chosen(base, version, release):
    # Removed until they can be built and tested: whatever the release or series,
    # the refusal names the base and the fix.
    assert refused(base_os=base, agent_version=version, release=release) == (
        f"base OS '{base}' is not supported: amp-image builds and tests Debian only "
        "(its elements are Debian's); use --base-os debian")


@pytest.mark.parametrize("version,fix", [
    ("12.0.0", "octavia 12.x is not a series amp-image knows"),
    ("13.0.1", "octavia 13.x is not a series amp-image knows"),
    ("20.0.0", "octavia 20.x is not a series amp-image knows"),
])
def test_unknown_versions_name_the_fix(version, fix):
    message = refused(agent_version=version)
    assert message.startswith(fix)
    assert "use --agent-version 14.0.2 to 19.0.0, or pass --constraints FILE" in message


def test_unknown_version_with_its_own_constraints_builds_on_the_default_release():
    p = plan(agent_version="20.0.0", constraints_file=UC)
    assert p.env["DIB_RELEASE"] == "trixie" and p.series == ""
    assert "DIB_AMP_AGENT_COMPILE" not in p.env


@pytest.mark.parametrize("version", ["19.x", "latest", "", "v19.0.0", "19.0.0 ", "19.0.0;id"])
def test_not_a_release_number(version):
    assert "is not an octavia release number; give one like 19.0.0" in \
        refused(agent_version=version)


def test_unknown_series_and_mismatch():
    assert refused(series="2023.2") == (
        "unknown OpenStack series '2023.2'; use one of 2024.1, 2024.2, 2025.1, 2025.2, "
        "2026.1, 2026.2")
    assert refused(series="2025.1", agent_version="19.0.0") == (
        "--agent-version 19.0.0 is not of series 2025.1 (octavia 16.x); use --agent-version "
        "16.1.0 or drop --series")
    assert plan(series="2025.1", agent_version="16.0.1").series == "2025.1"


def test_2024_1_compiles_netifaces_and_removes_the_compiler():
    p = plan(agent_version="14.0.2")
    assert p.env["DIB_AMP_AGENT_COMPILE"] == "1"
    git = plan(agent_version="14.0.2", agent_source=AgentSource("git", "https://x/octavia"))
    assert git.env["DIB_AMP_AGENT_COMPILE"] == "1"
    # A wheelhouse brings its wheels: nothing to compile.
    wheels = plan(agent_version="14.0.2", agent_source=AgentSource("wheelhouse", "/w"))
    assert "DIB_AMP_AGENT_COMPILE" not in wheels.env
    for version in ("16.1.0", "17.0.1", "18.0.1", "19.0.0"):
        assert "DIB_AMP_AGENT_COMPILE" not in plan(agent_version=version).env


def test_element_removes_the_build_packages_again():
    """DIB_AMP_AGENT_COMPILE=1 installs exactly the series' build packages, build-only
    (package-installs removes them at the end of install.d, amphora-base purges
    what they pulled in); the install script purges nothing by hand."""
    element = ROOT / "amp_image/elements/amphora-agent"
    packages = yaml.safe_load((element / "package-installs.yaml").read_text())
    compiler = {name for name, params in packages.items()
                if isinstance(params, dict)
                and params.get("when") == "DIB_AMP_AGENT_COMPILE = 1"}
    assert compiler == set(constraints.series_named("2024.1").build_packages)
    assert all(packages[name] == {"build-only": True, "when": "DIB_AMP_AGENT_COMPILE = 1"}
               for name in compiler)
    needing = [s for s in constraints.SERIES if s.build_packages]
    assert needing and all(set(s.build_packages) == compiler for s in needing)
    script = (element / "install.d/75-amphora-agent-install").read_text()
    assert "apt-get" not in script and "install-packages" not in script


@pytest.mark.parametrize("ref,series", [
    ("stable/2025.1", "2025.1"), ("unmaintained/2024.1", "2024.1"),
    ("refs/heads/stable/2026.1", "2026.1"), ("stable/2023.2", ""), ("master", ""),
    ("19.0.0", ""), ("", ""),
])
def test_series_of_a_branch(ref, series):
    assert constraints.series_of_branch(ref) == series


def run_cli(*args):
    result = CliRunner().invoke(main, ["build", "--dry-run", *args])
    return result


def dry_run(*args) -> dict:
    import yaml

    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_cli_agent_version_alone_picks_constraints_and_release():
    p = dry_run("--agent-version", "17.0.1")
    assert p["release"] == "bookworm"
    assert p["agent"]["constraints"].endswith("/upper-constraints-2025.2.txt")
    p = dry_run()
    assert p["release"] == "trixie" and p["agent"]["version"] == "19.0.0"


def test_cli_series_picks_its_newest_release():
    p = dry_run("--series", "2025.1")
    assert p["agent"]["version"] == "16.1.0" and p["agent"]["series"] == "2025.1"
    assert p["release"] == "bookworm"


def test_cli_git_branch_names_the_series():
    p = dry_run("--agent-source", "git+https://git.example/octavia@stable/2025.2")
    assert p["agent"]["series"] == "2025.2" and p["release"] == "bookworm"
    assert p["agent"]["constraints"].endswith("/upper-constraints-2025.2.txt")
    # An explicit --agent-version wins over the branch name.
    p = dry_run("--agent-source", "git+https://git.example/octavia@stable/2025.2",
                "--agent-version", "19.0.0")
    assert p["agent"]["series"] == "2026.2"


@pytest.mark.parametrize("args,message", [
    (["--agent-version", "16.1.0", "--release", "trixie"],
     "amp-image: error: debian trixie has Python 3.13, which octavia 16.x (2025.1) does not "
     "support (it supports Python 3.9 to 3.12); use --release bookworm or --agent-version "
     "18.0.1 (2026.1)\n"),
    (["--agent-version", "15.1.0"],
     "amp-image: error: octavia 15.x (2024.2) has no vendored upper constraints; pass "
     "--constraints FILE with openstack/requirements' 2024.2 upper-constraints.txt\n"),
    (["--series", "2027.1"],
     "amp-image: error: unknown OpenStack series '2027.1'; use one of 2024.1, 2024.2, "
     "2025.1, 2025.2, 2026.1, 2026.2\n"),
])
def test_cli_bad_pairs_are_one_line_before_any_build(args, message):
    result = run_cli(*args)
    assert result.exit_code == 1
    assert result.stderr == message
    assert result.stdout == ""


def test_readme_compatibility_table_matches_the_plan():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Compatibility", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| 20")]
    # Every series on amd64, in order; arm64 rows after them for the series built so.
    assert [row[0] for row in rows if row[3] == "amd64"] == list(EXPECTED)
    arches = [row[3] for row in rows]
    assert set(arches) <= {"amd64", "arm64"}
    assert arches == sorted(arches), "arm64 rows come after the amd64 ones"
    for series, octavia, release, _arch, built, booted, *_ in rows:
        latest, _, default_release = EXPECTED[series]
        assert octavia.split()[0] == latest and release == default_release
        assert built in ("yes", "no")
        assert booted.split(":")[0] in ("yes", "no"), booted
