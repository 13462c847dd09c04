"""amp-image's CLI: option parsing, --dry-run, and one-line errors that leave nothing behind."""

import datetime
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from amp_image.builder.request import parse_agent_source
from amp_image.cli import main
from amp_image.errors import PlanError

AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_dry_run_prints_the_plan(tmp_path):
    result = invoke("build", "--sriov", "-o", str(tmp_path / "x.qcow2"), "--dry-run")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.output)
    assert plan["output"] == str(tmp_path / "x.qcow2")
    assert "sriov-vf-drivers" in plan["elements"]
    assert plan["disk-image-create"][0] == "disk-image-create"
    assert not list(tmp_path.iterdir())


def test_dry_run_options(tmp_path):
    result = invoke("build", "--no-sriov", "--release", "bookworm", "--format", "raw",
                    "--vf-drivers", "iavf,mlx5_core", "--element", "extra", "--dry-run",
                    "-o", str(tmp_path / "y.img"))
    plan = yaml.safe_load(result.output)
    assert plan["release"] == "bookworm"
    assert plan["format"] == "raw"
    assert "extra" in plan["elements"] and "sriov-vf-drivers" not in plan["elements"]


def test_vf_driver_option(tmp_path):
    result = invoke("build", "--vf-drivers", "iavf,mlx5_core", "--dry-run")
    assert yaml.safe_load(result.output)["environment"]["DIB_AMP_VF_DRIVERS"] == \
        "iavf mlx5_core"


def test_root_password_warns():
    result = CliRunner().invoke(main, ["build", "--dry-run"],
                                env={"AMP_ROOT_PASSWORD": "x"})
    assert result.exit_code == 0, result.output
    assert result.stderr == ("amp-image: warning: a root password makes a debug image; never "
                             "use it for production amphorae\n")


@pytest.mark.parametrize("args,message", [
    (["--size", "1"], "--size 2 or more"),
    (["--release", "buster"], "release 'buster'"),
    (["--arch", "s390x"], "unknown architecture"),
    (["--agent-source", "/does/not/exist"], "--agent-source /does/not/exist"),
    (["--constraints", "/no/such/uc.txt"], "--constraints /no/such/uc.txt: no such file"),
    (["--elements-path", "/no/such/dir"], "no such folder"),
    (["--agent-version", "12.0.0"], "pass --constraints"),
    (["--ca-bundle", "/no/ca.pem"], "--ca-bundle /no/ca.pem"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, args, message):
    out = tmp_path / "x.qcow2"
    result = subprocess.run([AMP_IMAGE, "build", "-o", str(out), "--work-dir",
                             str(tmp_path / "w"), *args], capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("amp-image: error: ")
    assert message in lines[0]
    assert not list(tmp_path.iterdir())


def test_agent_source_pypi():
    assert parse_agent_source(None).kind == "pypi"
    assert parse_agent_source("pypi").kind == "pypi"


@pytest.mark.parametrize("spec,url,ref", [
    ("git+https://git.example/openstack/octavia", "https://git.example/openstack/octavia", ""),
    ("git+https://git.example/octavia.git@stable/2026.1",
     "https://git.example/octavia.git", "stable/2026.1"),
    ("git+ssh://git@git.example/octavia.git", "ssh://git@git.example/octavia.git", ""),
    ("git+ssh://git@git.example/octavia.git@v19.0.0", "ssh://git@git.example/octavia.git",
     "v19.0.0"),
    ("git+file:///srv/octavia@main", "file:///srv/octavia", "main"),
    ("git+/srv/octavia", "/srv/octavia", ""),
])
def test_agent_source_git(spec, url, ref):
    source = parse_agent_source(spec)
    assert (source.kind, source.location, source.ref) == ("git", url, ref)


def test_agent_source_folders(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "octavia-19.0.0-py3-none-any.whl").write_bytes(b"")
    assert parse_agent_source(str(wheels)).kind == "wheelhouse"
    checkout = tmp_path / "octavia"
    checkout.mkdir()
    (checkout / "setup.py").write_text("")
    assert parse_agent_source(str(checkout)).kind == "dir"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlanError, match="neither wheels nor setup.py"):
        parse_agent_source(str(empty))


def test_one_fail_for_every_command():
    """Every command reports errors through the same function, defined once in the package."""
    import amp_image
    from amp_image.cli import build, certs, common, diff, openstack_config, publish, test

    assert (build.fail is certs.fail is diff.fail is openstack_config.fail is publish.fail
            is test.fail is common.fail)
    defined = sorted({f"{obj.__module__}.{obj.__qualname__}"
                      for module in _package_modules(amp_image)
                      for obj in vars(module).values()
                      if inspect.isfunction(obj) and obj.__name__ == "fail"})
    assert defined == ["amp_image.cli.common.fail"]


def _package_modules(package):
    """Every module of package, imported (the conformance run's modules import octavia,
    which only its own venv has; the elements are DIB's, not Python modules)."""
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if ".elements." in info.name:
            continue
        try:
            yield importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name != "octavia":
                raise


def test_version_names_the_commit():
    """From this checkout: its HEAD; from neither a checkout nor a built wheel: unknown."""
    from amp_image import version

    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"amp-image {version.version()} (commit {head}")
    assert version.Source("0.1.0").describe() == "amp-image 0.1.0 (commit unknown)"
    assert version.source().commit_from == "git checkout"


def test_pins_from_a_published_folder(tmp_path):
    """--pin-packages-from reads what the folder's manifest records (no root needed);
    SOURCE_DATE_EPOCH follows its build date."""
    from test_diff import OLD, write_folder

    folder = write_folder(tmp_path / "published", OLD)
    result = CliRunner().invoke(main, ["build", "--dry-run", "--pin-packages-from",
                                       str(folder)], env={"SOURCE_DATE_EPOCH": None})
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.output)
    built = int(datetime.datetime(2026, 11, 24, 2, tzinfo=datetime.UTC).timestamp())
    # Nine packages recorded; libc6:i386 (a foreign architecture) is not pinned.
    assert plan["reproduce"] == {"snapshot": None, "pinned_packages": 8,
                                 "source_date_epoch": str(built)}
    assert "pin-package-versions" in plan["elements"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


def test_source_date_epoch_from_the_environment_wins(tmp_path):
    from test_diff import OLD, write_folder

    folder = write_folder(tmp_path / "published", OLD)
    result = CliRunner().invoke(main, ["build", "--dry-run", "--pin-packages-from",
                                       str(folder)], env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert yaml.safe_load(result.output)["environment"]["SOURCE_DATE_EPOCH"] == "1700000000"


@pytest.mark.parametrize("args,env,message", [
    (["--pin-packages-from", "/no/such/image.qcow2"], {},
     "--pin-packages-from: /no/such/image.qcow2: no such image or published folder"),
    ([], {"SOURCE_DATE_EPOCH": "yesterday"},
     "SOURCE_DATE_EPOCH=yesterday is not a number of seconds since 1970"),
    (["--snapshot", "last week"], {}, "--snapshot last week: not a snapshot.debian.org "
                                      "timestamp"),
])
def test_reproduction_input_errors_are_one_line(args, env, message):
    result = CliRunner().invoke(main, ["build", "--dry-run", *args], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"amp-image: error: {message}")
    assert result.stderr.count("\n") == 1


def test_test_refuses_a_bad_flavor_before_anything_runs(tmp_path):
    """--flavor takes `openstack flavor create`'s three numbers; anything else stops at
    once, in one line naming the form, with no VM (and no image needed yet)."""
    image = tmp_path / "amphora.qcow2"
    image.write_bytes(b"")
    result = subprocess.run([AMP_IMAGE, "test", str(image), "--flavor", "1,1024"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "amp-image: error: flavor '1,1024' is not VCPUS,RAM_MB,DISK_GB (for example 1,1024,3)"]
    assert list(tmp_path.iterdir()) == [image]
