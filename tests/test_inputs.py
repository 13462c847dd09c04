"""inputs: the files and folders an operator names (--constraints, a wheelhouse
--agent-source, --elements-path) read before the build, from real files; each bad one is
one line naming the fix, through the command line too (--dry-run reports them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from amp_image.builder import constraints, inputs
from amp_image.cli import main
from amp_image.errors import PlanError

AMP_ELEMENTS = Path(inputs.__file__).parent.parent / "elements"


def dry_run(tmp_path: Path, *args: str):
    return CliRunner().invoke(main, ["build", "--dry-run", "-o", str(tmp_path / "x.qcow2"),
                                     "--work-dir", str(tmp_path / "work"), *args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("amp-image: error: ")
    return result.stderr.removeprefix("amp-image: error: ").rstrip("\n")


# --constraints

@pytest.mark.parametrize("series", [s for s in constraints.SERIES if s.constraints],
                         ids=lambda s: s.name)
def test_vendored_upper_constraints_pass(series):
    inputs.check_constraints_file(constraints.DATA_DIR / series.constraints, "--constraints")


def test_constraints_with_comments_markers_and_pip_options_pass(tmp_path):
    path = tmp_path / "uc.txt"
    path.write_text("# upper constraints\n\n"
                    "--index-url https://pypi.example/simple\n"
                    "-c https://releases.example/upper-constraints.txt\n"
                    "oslo.config===9.8.0  # comment\n"
                    "pywin32===306;sys_platform=='win32'\n"
                    "cryptography===44.0.0 \\\n"
                    "  ; python_version >= '3.9'\n"
                    "netifaces\n")
    inputs.check_constraints_file(path, "--constraints")
    result = dry_run(tmp_path, "--constraints", str(path))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["agent"]["constraints"] == str(path)


def test_a_file_of_something_else_names_the_line_and_the_fix(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("# a comment line\n\nroot:x:0:0:root:/root:/bin/bash-with-a-very-long-"
                    "tail-that-is-cut\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    error = one_line_error(dry_run(tmp_path, "--constraints", str(path)))
    assert error.startswith(f"--constraints {path}: line 3 is not a requirement "
                            "('root:x:0:0:root:/root:/bin/bash-with-a-v...': Expected ")
    assert error.endswith("; give a pip constraints file (NAME===VERSION lines), such as "
                          "OpenStack's upper-constraints.txt")
    assert "tail-that-is-cut" not in error
    assert not (tmp_path / "work").exists()


def test_a_binary_file_is_one_line_too(tmp_path):
    path = tmp_path / "image.bin"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\n\x1b[31m\r\x00\xff\xfe")
    error = one_line_error(dry_run(tmp_path, "--constraints", str(path)))
    assert error.startswith(f"--constraints {path}: line 1 is not a requirement ('\\x7fELF")


def test_a_file_it_includes_is_not_in_the_image(tmp_path):
    path = tmp_path / "uc.txt"
    path.write_text("oslo.config===9.8.0\n-r more-constraints.txt\n")
    error = one_line_error(dry_run(tmp_path, "--constraints", str(path)))
    assert error == (f"--constraints {path}: line 2 includes another file "
                     "('-r more-constraints.txt'), which the build does not copy into the "
                     "image; put its lines in this file")


# A wheelhouse --agent-source

def wheelhouse(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


@pytest.mark.parametrize("wheel", ["octavia-19.0.0-py3-none-any.whl",
                                   "Octavia-19.0-py3-none-any.whl"])
def test_a_wheelhouse_with_the_agent_passes(tmp_path, wheel):
    folder = wheelhouse(tmp_path, wheel, "pyroute2-0.9.2-py3-none-any.whl")
    inputs.check_wheelhouse(folder, "19.0.0")
    result = dry_run(tmp_path, "--agent-source", str(folder), "--agent-version", "19.0.0")
    assert result.exit_code == 0, result.output


def test_a_wheelhouse_without_the_agent_names_the_ones_it_has(tmp_path):
    folder = wheelhouse(tmp_path, "octavia-18.0.0-py3-none-any.whl",
                        "octavia-17.0.1-py3-none-any.whl", "pyroute2-0.9.2-py3-none-any.whl",
                        "octavia_lib-3.9.0-py3-none-any.whl", "not-a-wheel.whl")
    error = one_line_error(dry_run(tmp_path, "--agent-source", str(folder),
                                   "--agent-version", "19.0.0"))
    assert error == (f"--agent-source {folder}: no wheel of octavia 19.0.0 "
                     "(octavia-19.0.0-*.whl; its octavia wheels are "
                     "octavia-17.0.1-py3-none-any.whl, octavia-18.0.0-py3-none-any.whl); add "
                     f"it (pip wheel octavia==19.0.0 -w {folder}) or pass --agent-version of "
                     "a wheel it has")


def test_a_wheelhouse_of_other_wheels_says_it_has_no_octavia(tmp_path):
    folder = wheelhouse(tmp_path, "pyroute2-0.9.2-py3-none-any.whl")
    error = one_line_error(dry_run(tmp_path, "--agent-source", str(folder)))
    assert "(octavia-19.0.0-*.whl; it has no octavia wheel); add it" in error


# --elements-path

def test_element_folders_pass(tmp_path):
    own = tmp_path / "my-elements"
    (own / "my-element" / "install.d").mkdir(parents=True)
    (own / "other-element").mkdir()
    (own / "other-element" / "element-deps").write_text("amphora-agent\n")
    for folder in (own, AMP_ELEMENTS):
        inputs.check_elements_path(folder)
    result = dry_run(tmp_path, "--elements-path", str(own), "--elements-path", str(AMP_ELEMENTS))
    assert result.exit_code == 0, result.output


def test_a_folder_without_elements_names_the_fix(tmp_path):
    folder = tmp_path / "stuff"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "todo.txt").write_text("")
    (folder / "README.rst").write_text("")
    error = one_line_error(dry_run(tmp_path, "--elements-path", str(folder)))
    assert error == (f"--elements-path {folder} holds no element (no folder with hooks or "
                     "element-deps); point it at the folder that contains the element folders")


def test_an_element_given_instead_of_its_folder_names_the_parent(tmp_path):
    element = tmp_path / "my-elements" / "my-element"
    (element / "install.d").mkdir(parents=True)
    (element / "element-deps").write_text("")
    error = one_line_error(dry_run(tmp_path, "--elements-path", str(element)))
    assert error == (f"--elements-path {element} holds no element (no folder with hooks or "
                     f"element-deps) ({element} is an element itself: give {element.parent}); "
                     "point it at the folder that contains the element folders")


def test_the_checks_are_plan_errors(tmp_path):
    """Raised as PlanError: the build command's one-line exit 1, as every option error."""
    with pytest.raises(PlanError):
        inputs.check_elements_path(tmp_path)
