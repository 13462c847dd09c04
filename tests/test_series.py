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
import importlib.util
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

SERIES = {s.name: s for s in constraints.SERIES}
DEBIAN = BASE_OSES["debian"]

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


def test_the_series_follow_each_other_and_the_default_agent_is_the_newest():
    """One series per octavia major, in order, each named by its newest release."""
    majors = [s.octavia_major for s in constraints.SERIES]
    assert majors == list(range(majors[0], majors[0] + len(majors)))
    assert [s.name for s in constraints.SERIES] == sorted(SERIES)
    for s in constraints.SERIES:
        assert constraints.series_for(s.latest) == s.name
        assert s.python_min <= s.python_max
    assert plan().options.agent_version == constraints.SERIES[-1].latest
    assert plan().series == constraints.SERIES[-1].name


def _python(release: str) -> tuple[int, int]:
    return RELEASE_PYTHON[(DEBIAN.name, release)]


@pytest.mark.parametrize("series", list(SERIES))
def test_each_series_picks_its_constraints_and_release(series):
    """Its vendored file (or the one given), and the default release if the series supports
    its Python, else the first release whose Python it supports."""
    s = SERIES[series]
    given = None if s.constraints else UC
    p = plan(agent_version=s.latest, constraints_file=given)
    assert p.constraints_file == (constraints.DATA_DIR / s.constraints if s.constraints else UC)
    assert p.constraints_file.is_file() or not s.constraints
    assert p.env["DIB_AMP_AGENT_CONSTRAINTS"] == str(p.constraints_file)
    fitting = [r for r in (DEBIAN.default_release, *DEBIAN.releases) if s.supports(_python(r))]
    assert p.env["DIB_RELEASE"] == fitting[0]
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


def test_every_vendored_file_belongs_to_a_series():
    on_disk = {p.name for p in constraints.DATA_DIR.glob("upper-constraints-*.txt")}
    assert on_disk == {s.constraints for s in constraints.SERIES if s.constraints} \
        == set(VENDORED)


@pytest.mark.parametrize("release", DEBIAN.releases)
@pytest.mark.parametrize("series", list(SERIES))
def test_a_release_builds_a_series_if_the_series_supports_its_python(series, release):
    """--release RELEASE: planned when the series' Python range holds the release's
    Python, else refused in one line naming both."""
    s = SERIES[series]
    given = None if s.constraints else UC
    python = _python(release)
    if s.supports(python):
        assert plan(agent_version=s.latest, release=release,
                    constraints_file=given).env["DIB_RELEASE"] == release
    else:
        message = refused(agent_version=s.latest, release=release, constraints_file=given)
        assert message.startswith(f"debian {release} has Python "
                                  f"{constraints.fmt_python(python)}, which octavia "
                                  f"{s.octavia_major}.x ({series}) does not support")


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
    assert _package_tools_the_install_hook_runs(element) == []


# Stand-ins for what the hook runs in the chroot: python3 makes a venv whose pip and
# python do nothing (python prints a version, or its venv's empty site folder, when
# asked); every package tool logs its name and arguments.
_STUBS = {
    "python3": 'mkdir -p "$3/bin" "$3/site"; for t in pip python; do printf \'#!/bin/sh\\n'
               'case "$*" in *version*) echo 14.0.2;; '
               '*purelib*) echo $(dirname $(dirname $0))/site;; esac\\n\''
               ' > "$3/bin/$t"; chmod +x "$3/bin/$t"; done',
    **{tool: 'echo "$(basename "$0") $*" >> "$PACKAGE_TOOL_LOG"'
       for tool in ("apt-get", "apt", "aptitude", "dpkg", "install-packages")},
}


def _package_tools_the_install_hook_runs(element: Path) -> list[str]:
    """Run install.d/75-amphora-agent-install for a 2024.1 agent that compiles
    (DIB_AMP_AGENT_COMPILE=1) with stand-ins on PATH, in a user and mount namespace whose
    /etc, /opt, /usr/local and /var/lib are scratch: each package tool it ran."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        stubs = Path(scratch) / "bin"
        stubs.mkdir()
        for name, body in _STUBS.items():
            (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
            (stubs / name).chmod(0o755)
        log = Path(scratch) / "package-tools.log"
        log.write_text("")
        hook = element / "install.d/75-amphora-agent-install"
        setup = ('mkdir -p "$S/u" "$S/w" && mount -t overlay overlay '
                 '-o lowerdir=/etc,upperdir="$S/u",workdir="$S/w" /etc && '
                 'for d in /opt /usr/local /var/lib; do mount -t tmpfs none "$d"; done && '
                 'mkdir -p /usr/local/bin && exec bash "$HOOK"')
        env = {"PATH": f"{stubs}:/usr/bin:/bin", "S": scratch, "HOOK": str(hook),
               "PACKAGE_TOOL_LOG": str(log), "DIB_AMP_AGENT_COMPILE": "1",
               "DIB_AMP_AGENT_SOURCE_TYPE": "pypi", "DIB_AMP_AGENT_VERSION": "14.0.2"}
        result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount",
                                 "bash", "-c", setup], env=env, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        return log.read_text().splitlines()


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


def _doc_tables():
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "scripts/doc_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_series_tables_are_written_from_the_code():
    """The README's compatibility table and data/README.md's vendored files, as
    scripts/doc_tables.py writes them from the series table and the plan."""
    doc_tables = _doc_tables()
    for path, text in doc_tables.documents().items():
        assert path.read_text() == text, f"{path}: run python scripts/doc_tables.py"
    assert {series for series, _ in doc_tables.MEASURED} <= set(SERIES)
