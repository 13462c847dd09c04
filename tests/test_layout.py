"""The package's shape (issue 14): build -> verify -> publish, with each shared concern
defined in one place."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import amp_image

PACKAGE = Path(amp_image.__file__).resolve().parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))
            if "elements" not in p.relative_to(PACKAGE).parts}


def test_the_tree_reads_build_verify_publish():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"build", "image", "verify", "publish", "cli"} <= packages
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
    """In the sriov-vf-drivers element (its environment.d default); the plan reads it."""
    from amp_image.build import plan

    listing = [name for name, text in _sources().items() if re.search(r"['\"]ixgbevf['\"]", text)]
    assert listing == []
    assert "ixgbevf" in plan.DEFAULT_VF_DRIVERS and "iavf" in plan.DEFAULT_VF_DRIVERS
    assert plan.element_vf_drivers(plan.VF_DRIVERS_ENVIRONMENT) == plan.DEFAULT_VF_DRIVERS


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
