"""The DIB runner's environment and progress handling (no DIB run: pure functions)."""

from pathlib import Path

from amp_image.dib import Progress, _last_error, dib_environment
from amp_image.plan import BuildOptions, HostContext, make_plan


def test_host_pip_settings_do_not_reach_dib():
    plan = make_plan(BuildOptions(), HostContext(proxies={"https_proxy": "http://p:3128"}),
                     Path("/elements"))
    base = {"PATH": "/usr/bin", "PIP_FIND_LINKS": "/opt/wheels", "PIP_INDEX_URL": "x",
            "TMPDIR": "/somewhere", "VIRTUAL_ENV": "/venv", "PYTHONPATH": "/p",
            "https_proxy": "http://p:3128", "HOME": "/root"}
    env = dib_environment(plan, Path("/work/bin"), base)
    assert not [k for k in env if k.startswith("PIP_")]
    assert "TMPDIR" not in env and "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    assert env["https_proxy"] == "http://p:3128"
    assert env["PATH"].split(":")[0] == "/work/bin"
    assert env["DIB_RELEASE"] == "trixie"


def test_progress_reports_phase_and_script_once():
    lines: list[str] = []
    progress = Progress(lines.append, start=0.0)
    run = "dib-run-parts Running "
    for log_line in [
        "Running hooks from /tmp/dib_build.x/hooks/root.d",
        run + "/tmp/dib_build.x/hooks/root.d/08-debootstrap",
        "some apt output",
        run + "/tmp/in_target.d/install.d/75-amphora-agent-install",
        run + "/tmp/in_target.d/install.d/75-amphora-agent-install",
    ]:
        progress.feed("2026-11-25 09:00:00.000 | " + log_line)
    assert [line.split("] ", 1)[1] for line in lines] == [
        "root.d", "root.d/08-debootstrap", "install.d/75-amphora-agent-install"]


def test_last_error_names_the_element_message(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("\n".join("2026-11-25 10:00:00.000 | " + line for line in [
        "ERROR: an earlier, unrelated error",
        "sriov-vf-drivers: VF driver module(s) missing from the image's kernel: foo",
        "sriov-vf-drivers: install a kernel that ships them",
        "Unmount /work/test_missing_thing_failed/mnt/proc",
    ]))
    assert _last_error(log, ("vm", "sriov-vf-drivers")) == (
        ": sriov-vf-drivers: VF driver module(s) missing from the image's kernel: foo")


def test_last_error_falls_back_to_error_lines(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("x | E: Unable to locate package nope\nx | Unmount /failed/path\n")
    assert _last_error(log, ("vm",)) == ": E: Unable to locate package nope"
