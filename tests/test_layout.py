"""The package's shape (issue 14): build -> verify -> publish, with each shared concern
defined in one place."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import amp_image

PACKAGE = Path(amp_image.__file__).resolve().parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))
            if "elements" not in p.relative_to(PACKAGE).parts}


def test_the_tree_reads_build_verify_publish():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"builder", "image", "verify", "publish", "diff", "cloud", "cli"} <= packages
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "errors.py", "events.py", "poll.py", "version.py"]


def test_qemu_img_info_in_one_place():
    callers = [name for name, text in _sources().items()
               if re.search(r'"qemu-img",\s*"info"', text)]
    assert callers == ["image/qemuimg.py"]


def test_the_bench_is_a_project_tool_not_a_module():
    assert not list(PACKAGE.rglob("bench.py"))
    assert (PACKAGE.parent / "scripts" / "bench.py").is_file()


def test_records_are_read_by_records_only():
    """The image's /etc/amp-image record has one reader (image/records.py)."""
    readers = [name for name, text in _sources().items()
               if re.search(r'"etc/amp-image|/ "amp-image"|"vf-drivers"|"apt-indexes"', text)]
    assert readers == ["image/records.py"]


# Distribution -> what amp-image's code names it by (testinfra reaches the VM through
# its paramiko backend; ssh_password_login imports paramiko itself).
IMPORTED_AS = {"diskimage-builder": r"import diskimage_builder", "click": r"import click",
               "PyYAML": r"import yaml", "Jinja2": r"from jinja2 import",
               "cryptography": r"from cryptography", "pycdlib": r"import pycdlib",
               "pytest": r"import pytest", "pytest-testinfra": r"import testinfra",
               "paramiko": r"import paramiko", "requests": r"import requests",
               "cyclonedx-python-lib": r"from cyclonedx", "python-debian": r"from debian",
               "packaging": r"from packaging", "packageurl-python": r"from packageurl"}
# Top-level modules that are no runtime dependency: the optional [openstack] extra, and
# what the conformance harness imports in its own venv (octavia's, never amp-image's).
NOT_RUNTIME = {"openstack", "octavia", "octavia_lib", "oslo_config", "oslo_log"}


def test_every_runtime_dependency_is_used():
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    names = [re.split(r"[\[=<>]", d)[0] for d in pyproject["project"]["dependencies"]]
    assert sorted(names) == sorted(IMPORTED_AS)
    code = "\n".join(_sources().values())
    unused = [n for n in names if not re.search(IMPORTED_AS[n], code)]
    assert unused == []


def test_one_polling_loop():
    """Deadlines are amp_image.poll's business: no module keeps its own."""
    keeping = [name for name, text in _sources().items()
               if re.search(r"monotonic\(\) \+|while time\.monotonic\(\)", text)]
    assert keeping == []


def test_the_vf_driver_default_is_written_once():
    """In the sriov-vf-drivers element (its environment.d default); the options read it."""
    from amp_image.builder import element_defaults, options

    listing = [name for name, text in _sources().items() if re.search(r"['\"]ixgbevf['\"]", text)]
    assert listing == []
    drivers = element_defaults.default_vf_drivers()
    assert "ixgbevf" in drivers and "iavf" in drivers
    assert element_defaults.element_vf_drivers(element_defaults.VF_DRIVERS_ENVIRONMENT) == drivers
    assert options.BuildOptions().vf_drivers == drivers


def test_the_plan_reads_no_file_at_import():
    """Importing the plan (and what it imports) opens no file of the package's elements:
    the VF driver default is read when first needed."""
    code = ("import builtins, io, pathlib\n"
            "opened = []\n"
            "real = io.open\n"
            "def spy(file, *a, **k):\n"
            "    opened.append(str(file))\n"
            "    return real(file, *a, **k)\n"
            "builtins.open = io.open = spy\n"
            "import amp_image.builder.plan\n"
            "from amp_image.builder import element_defaults\n"
            "print(element_defaults.default_vf_drivers.cache_info().currsize,"
            " any('/elements/' in f for f in opened))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["0", "False"]


def _third_party_imports() -> set[str]:
    found = set()
    for text in _sources().values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"amp_image", "__future__"} - NOT_RUNTIME


def test_every_import_is_a_declared_dependency():
    """The other way round: nothing arrives only as another package's dependency."""
    declared = "\n".join(IMPORTED_AS.values())
    undeclared = sorted(m for m in _third_party_imports()
                        if not re.search(rf"(import|from) {m}\b", declared))
    assert undeclared == []


def test_commands_start_without_the_sbom_schema_validator():
    """Every amp-image command imports the CLI; jsonschema's format checkers compile a
    grammar on import (about two seconds), so publish imports the SBOM's validator only
    when it validates."""
    code = "import sys, amp_image.cli; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_verify_never_imports_publish():
    """The flow runs build -> verify -> publish: verify reads images through image/."""
    back = [name for name, text in _sources().items() if name.startswith("verify/")
            and re.search(r"from amp_image\.publish|import amp_image\.publish", text)]
    assert back == []


# What each package may import of amp_image's others (docs/architecture.md's table).
MAY_IMPORT = {
    "top": set(),
    "builder": set(),
    "image": {"builder"},
    "verify": {"builder", "image"},
    "cloud": {"builder", "image"},
    "publish": {"builder", "image", "cloud"},
    "diff": {"builder", "image", "publish"},
    "cli": {"builder", "image", "verify", "cloud", "publish", "diff"},
}


def _package_of(relative: str) -> str:
    parts = relative.split("/")
    return parts[0] if len(parts) > 1 else "top"


def _imported_packages(text: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(text)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                 and node.module else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "amp_image" and len(parts) > 1:
                found.add(parts[1] if (PACKAGE / parts[1]).is_dir() else "top")
    return found


def test_each_package_imports_only_what_it_may():
    """The flow's order, import by import (function-level imports included)."""
    assert set(MAY_IMPORT) == {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {
        "elements"} | {"top"}
    wrong = sorted(f"{name} imports {other}" for name, text in _sources().items()
                   for other in _imported_packages(text) - {"top", _package_of(name)}
                   if other not in MAY_IMPORT[_package_of(name)])
    assert wrong == []


# --- one implementation per job (issue 27) ---------------------------------------------------


def _element(folder: Path) -> Path:
    """A real element: an executable hook reading a DIB_ variable, a symlink, an empty
    folder, byte code."""
    (folder / "install.d").mkdir(parents=True)
    hook = folder / "install.d" / "10-thing"
    hook.write_text('#!/bin/bash\necho "$DIB_THING_TREE"\n')
    hook.chmod(0o755)
    (folder / "README.rst").write_text("thing\n")
    (folder / "bin").mkdir()
    (folder / "bin" / "thing").symlink_to("../install.d/10-thing")
    (folder / "static" / "var" / "lib" / "thing").mkdir(parents=True)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    return folder


def _provenance_digest(monkeypatch, elements: Path, name: str) -> str:
    """The element's digest as provenance publishes it, with elements as the path."""
    from amp_image.builder import dib_elements
    from amp_image.publish import provenance

    monkeypatch.setattr(provenance, "element_paths", lambda: [elements])
    monkeypatch.setattr(dib_elements, "elements_dir", lambda: elements)
    found = {d["name"]: d for d in provenance.element_descriptors([name], "amd64")}
    return found[f"element:{name}"]["digest"]["sha256"]


def test_the_layer_cache_and_provenance_digest_a_folder_alike(tmp_path, monkeypatch):
    """One tree digest (builder/digests.py): the packages layer key's value of a folder a
    DIB_ variable names (the variable read by a hook before the save point) and
    provenance's digest of the same folder as an element agree; provenance leaves the
    element's .git and tests/ out, the layer key keeps them (a local repository is
    cloned from its .git)."""
    from amp_image.builder import layer_keys

    elements = tmp_path / "elements"
    folder = _element(elements / "thing")

    def layer_value() -> str:
        keys = layer_keys.layer_keys(elements=["thing"], element_dirs=[elements],
                                     dib_version="3", agent_source_kind="pypi",
                                     env={"SKIP_BASE": "1", "DIB_THING_TREE": str(folder)},
                                     index_dates={})
        return keys.inputs["packages"]["env"]["DIB_THING_TREE"]

    published = _provenance_digest(monkeypatch, elements, "thing")
    assert layer_value() == "tree:" + published
    before = layer_value()
    (folder / "tests").mkdir()
    (folder / "tests" / "test_thing.py").write_text("def test(): pass\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert _provenance_digest(monkeypatch, elements, "thing") == published
    assert layer_value() != before


def test_element_tests_feed_neither_the_layer_keys_nor_provenance(tmp_path, monkeypatch):
    """Editing a file under an element's tests/ changes neither its layer key nor its
    provenance digest; editing its hook changes both."""
    from amp_image.builder import layer_keys

    elements = tmp_path / "elements"
    folder = _element(elements / "thing")
    (folder / "tests").mkdir()
    test_file = folder / "tests" / "test_thing.py"
    test_file.write_text("def test(): pass\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    def digests() -> tuple[str, str, str]:
        keys = layer_keys.layer_keys(elements=["thing"], element_dirs=[elements],
                                     dib_version="3", env={"SKIP_BASE": "1"},
                                     agent_source_kind="pypi", index_dates={})
        return (keys.packages, keys.inputs["packages"]["elements"]["thing"],
                _provenance_digest(monkeypatch, elements, "thing"))

    first = digests()
    test_file.write_text("def test(): assert False\n")
    (folder / "tests" / "fixtures").mkdir()
    assert digests() == first
    (folder / "install.d" / "10-thing").write_text("#!/bin/bash\necho other\n")
    assert all(a != b for a, b in zip(digests(), first, strict=True))


def test_dib_elements_are_found_in_one_place(tmp_path, monkeypatch):
    """Provenance looks DIB's elements up where the build does
    (dib_elements.dib_elements_dir)."""
    from amp_image.builder import dib_elements
    from amp_image.publish import provenance

    assert provenance.element_paths() == [dib_elements.elements_dir(),
                                          dib_elements.dib_elements_dir()]
    monkeypatch.setattr(dib_elements, "dib_elements_dir", lambda: tmp_path)
    assert provenance.element_paths() == [dib_elements.elements_dir(), tmp_path]


@pytest.mark.parametrize("arch", ["amd64", "x86_64", "arm64", "aarch64", "ppc64le", ""])
@pytest.mark.parametrize("elements", [["debian-minimal", "vm"], ["vm", "block-device-gpt"],
                                      ["debian-minimal"]])
@pytest.mark.parametrize("skip_base", [False, True])
def test_dib_elements_are_what_disk_image_create_builds(arch, elements, skip_base):
    """dib_elements against DIB's own shell: arg_to_elements' _arg_defaults_hack and base."""
    from amp_image.builder import dib_elements

    lib = dib_elements.dib_elements_dir().parent / "lib"
    script = ('source "$1/common-functions"; shift; IMAGE_ELEMENT="$(_arg_defaults_hack "$@")"; '
              'if [ "$SKIP_BASE" != "1" ]; then IMAGE_ELEMENT="base $IMAGE_ELEMENT"; fi; '
              'echo $IMAGE_ELEMENT')
    env = {"PATH": "/usr/bin:/bin", "ARCH": arch, "SKIP_BASE": "1" if skip_base else "0"}
    dib = subprocess.run(["bash", "-c", script, "bash", str(lib), *elements], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert dib_elements.dib_elements(elements, arch, skip_base=skip_base) == dib


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_layer_cache_and_provenance_expand_the_elements_alike(arch, monkeypatch):
    """The element list the layer keys resolve and the one provenance resolves, for the
    same command-line elements and architecture, are the same list."""
    from amp_image.builder import layer_keys
    from amp_image.publish import provenance

    expanded: dict[str, list[str]] = {}
    monkeypatch.setattr(layer_keys, "element_set",
                        lambda elements, dirs: expanded.setdefault("layer keys", elements) and {})
    monkeypatch.setattr(provenance, "resolve_elements",
                        lambda elements, paths: expanded.setdefault("provenance", elements) and {})
    requested = ["debian-minimal", "vm", "amphora-base"]
    layer_keys.layer_keys(elements=requested, element_dirs=[], dib_version="3",
                          env={"ARCH": arch}, agent_source_kind="pypi", index_dates={})
    provenance.element_descriptors(requested, arch)
    assert expanded["layer keys"] == expanded["provenance"]
    assert "base" in expanded["provenance"] and len(expanded["provenance"]) == 5


@pytest.mark.parametrize("args,options", [
    ([], (None, None, "")),
    (["--series", "2025.1"], ("2025.1", None, "")),
    (["--agent-version", "17.0.1"], (None, "17.0.1", "")),
    (["--agent-source", "git+https://git.example/octavia@stable/2025.2"],
     (None, None, "stable/2025.2")),
    (["--agent-source", "git+https://git.example/octavia@stable/2025.2",
      "--agent-version", "19.0.0"], (None, "19.0.0", "stable/2025.2")),
])
def test_the_cli_resolves_the_agent_series_with_the_plan(args, options):
    """The command line's agent version and series are the one resolver's
    (compat.choose_agent, checked by compat.agent_series): no other module keeps one."""
    import yaml
    from click.testing import CliRunner

    from amp_image.builder import compat, plan, request, run
    from amp_image.builder.options import AgentSource, BuildOptions
    from amp_image.cli import build as build_cli
    from amp_image.cli import main

    assert request.choose_agent is compat.choose_agent
    for module in (build_cli, request, run, plan):
        for name in ("agent_series", "choose_agent"):
            assert getattr(module, name, getattr(compat, name)) is getattr(compat, name)
    series, version, ref = options
    version, series = compat.choose_agent(series, version, AgentSource("git", "x", ref))
    checked = compat.agent_series(BuildOptions(agent_version=version, series=series))
    result = CliRunner().invoke(main, ["build", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    agent = yaml.safe_load(result.stdout)["agent"]
    assert (agent["version"], agent["series"]) == (version, checked.name)


def test_a_build_runs_without_the_command_line(tmp_path):
    """builder.run is the build's one entry point: a request made in Python plans what
    the command line plans for the same options, and the CLI keeps no step of its own."""
    import yaml
    from click.testing import CliRunner

    from amp_image.builder.request import BuildRequest
    from amp_image.builder.run import Hooks, run
    from amp_image.cli import build as build_cli
    from amp_image.cli import main

    output, work = str(tmp_path / "amp.raw"), str(tmp_path / "w")
    done = run(BuildRequest(output=output, work_dir=work, series="2025.2", sriov=False,
                            dry_run=True), Hooks(emit=print))
    assert done.result is None
    result = CliRunner().invoke(main, ["build", "--dry-run", "-o", output, "--work-dir", work,
                                       "--series", "2025.2", "--no-sriov"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == done.plan.as_dict()
    for step in ("host", "preflight", "binfmt", "gitref", "inputs", "layers"):
        assert not hasattr(build_cli, step), step


def test_the_test_verb_maps_options_to_verify_run(tmp_path, monkeypatch):
    """amp-image test hands verify.run a TestRequest and exits with what it returns; the
    pytest arguments are verify/run.py's."""
    from click.testing import CliRunner

    from amp_image.cli import main
    from amp_image.cli import test as test_cli
    from amp_image.verify import run as verify_run

    image = tmp_path / "amp.qcow2"
    image.write_bytes(b"")
    seen = []
    monkeypatch.setattr(test_cli, "run", lambda request, emit: seen.append(request) or 5)
    result = CliRunner().invoke(main, ["test", str(image), "--sriov", "-k", "agent",
                                       "--workdir", str(tmp_path / "vm"),
                                       "--flavor", "2,1024,3"])
    assert result.exit_code == 5, result.output
    assert seen == [verify_run.TestRequest(image=str(image), sriov=True, keyword="agent",
                                           workdir=str(tmp_path / "vm"), flavor="2,1024,3")]
    args = verify_run.checks_args(seen[0], image)
    assert args[:4] == [str(verify_run.CHECKS_DIR / "test_amphora.py"),
                        str(verify_run.CHECKS_DIR / "test_amphora_access.py"),
                        str(verify_run.CHECKS_DIR / "test_sriov.py"), "--amp-sriov"]
    assert args[args.index("-k"):args.index("-k") + 2] == ["-k", "agent"]
    assert str(tmp_path / "vm") in args
    assert args[args.index("--amp-flavor") + 1] == "2,1024,3"
    conformance = verify_run.conformance_args(
        verify_run.TestRequest(image=str(image), active_standby=True), image)
    assert [a for a in conformance if a.endswith(".py")] == [
        str(verify_run.CONFORMANCE_DIR / m) for m in
        ("test_sriov_driver.py", "test_active_standby.py", "test_conformance.py",
         "test_controller_pki.py", "test_tls.py", "test_ipv6.py", "test_logging.py",
         "test_matrix.py")]


# Pairs in dpkg's order (each first < second), the tricky ones: tildes sort before
# the end, epochs before everything, revisions last.
DPKG_ORDER = [("1.0~rc1", "1.0"), ("1.0", "1.0+b1"), ("2.0", "1:0.1"), ("1~~", "1~~a"),
              ("1.0-1", "1.0-1+deb13u1"), ("3.5.1-1~bpo13+1", "3.5.1-1"), ("0.9", "0.10"),
              ("2.41-9", "2.41-12"), ("1.0", "1.0a")]


def test_debian_versions_are_ordered_by_python_debian():
    from debian.debian_support import version_compare

    from amp_image.diff.compare import compare_sets
    from amp_image.diff.versions import compare_debian_versions

    for low, high in DPKG_ORDER:
        assert version_compare(low, high) < 0
        assert compare_debian_versions(low, high) < 0
        assert compare_debian_versions(high, low) > 0
    assert compare_debian_versions("1:1.0-1", "1:1.0-1") == 0
    # What python-debian refuses is no Debian version: changed, neither up nor down.
    sets = compare_sets({"a": "1.0~rc1", "b": "1:0.1", "c": "abc!", "d": "1.0"},
                        {"a": "1.0", "b": "2.0", "c": "1.0", "d": "1_0"},
                        compare_debian_versions)
    assert [p["name"] for p in sets["upgraded"]] == ["a"]
    assert [p["name"] for p in sets["downgraded"]] == ["b"]
    assert [p["name"] for p in sets["changed"]] == ["c", "d"]


def test_packaging_is_imported_as_the_dependency_it_is():
    """Without packaging, the diff's version orderings do not import (they used to guess
    'changed' for every agent package instead)."""
    code = ("import sys; sys.modules['packaging'] = None\n"
            "try:\n    import amp_image.diff.versions\n"
            "except ImportError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "refused"
