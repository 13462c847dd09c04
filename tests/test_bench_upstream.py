"""scripts/bench_upstream.py, what runs Octavia's own diskimage-create.sh beside
amp-image: its environment and command line (pure: no build here; the bench builds),
the memory figure read from the agent's details, and the side-by-side table.  The
octavia sdist used for the diskimage-create.sh checks is the one the suite already
downloads for the git-source build (amp_image.verify.octavia_source), read in place.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bench_upstream  # noqa: E402

INPUTS = bench_upstream.UpstreamInputs(Path("/src/octavia-19.0.0"), "19.0.0",
                                       Path("/data/upper-constraints-2026.2.txt"),
                                       Path("/src/octavia-lib-3.12.0"), "3.12.0")


def test_the_environment_carries_each_workaround_and_no_host_pip_settings():
    base = {"PATH": "/usr/bin", "HOME": "/root", "PIP_FIND_LINKS": "/opt/pypi",
            "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PYTHONPATH": "/x",
            "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    env = bench_upstream.environment(INPUTS, Path("/work/bin"), base,
                                     "http://mirror.example/debian", "/etc/ssl/ca.pem")
    assert env["PATH"].split(":")[0] == "/work/bin"
    assert env["PATH"].split(":")[1] == str(Path(sys.executable).parent)  # DIB's venv
    assert not {"PIP_FIND_LINKS", "PIP_CERT", "PYTHONPATH", "REQUESTS_CA_BUNDLE"} & set(env)
    assert env["HOME"] == "/root"
    assert (env["AMP_BASEOS"], env["DIB_RELEASE"]) == ("debian-minimal", "bookworm")
    assert env["DIB_DEBIAN_SECURITY_MIRROR"] == "http://mirror.example/debian-security"
    assert env["DIB_REPOLOCATION_amphora_agent"] == "/src/octavia-19.0.0"
    assert env["DIB_REPOREF_amphora_agent"] == "19.0.0"
    assert env["DIB_REPOLOCATION_upper_constraints"] == \
        "file:///data/upper-constraints-2026.2.txt"
    assert (env["DIB_REPOLOCATION_octavia_lib"], env["DIB_REPOREF_octavia_lib"]) == \
        ("/src/octavia-lib-3.12.0", "3.12.0")
    assert env["DIB_PYTHON_VERSION"] == "3"
    assert (env["DIB_LOCAL_ELEMENTS"], env["DIB_HOST_CA_BUNDLE"]) == \
        ("host-ca-bundle", "/etc/ssl/ca.pem")
    assert (Path(env["DIB_LOCAL_ELEMENTS_PATH"]) / "host-ca-bundle" / "README.rst").is_file()
    # Each variable set is named among the workarounds, with its reason.
    named = " ".join(bench_upstream.WORKAROUNDS)
    for variable in set(env) - set(base):
        assert variable in named, variable


def test_no_ca_bundle_no_local_element():
    env = bench_upstream.environment(INPUTS, Path("/work/bin"), {"PATH": "/usr/bin"},
                                     "http://mirror.example/debian", "")
    assert "DIB_LOCAL_ELEMENTS" not in env and "DIB_HOST_CA_BUNDLE" not in env


def test_local_elements_join_the_ca_bundles_in_dib_local_elements(tmp_path):
    """On a host without device-mapper the bench adds amp-image's amphora-grub (a copy of
    its own, in the work folder) beside host-ca-bundle: both names in the list upstream's
    script appends to its elements, both folders on its elements path."""
    grub = tmp_path / "elements" / "amphora-grub"
    env = bench_upstream.environment(INPUTS, Path("/work/bin"), {"PATH": "/usr/bin"},
                                     "http://mirror.example/debian", "/etc/ssl/ca.pem",
                                     (grub,))
    assert env["DIB_LOCAL_ELEMENTS"] == "host-ca-bundle amphora-grub"
    assert env["DIB_LOCAL_ELEMENTS_PATH"].split(":") == [
        str(bench_upstream.BENCH_ELEMENTS), str(tmp_path / "elements")]
    alone = bench_upstream.environment(INPUTS, Path("/work/bin"), {"PATH": "/usr/bin"},
                                       "http://mirror.example/debian", "", (grub,))
    assert (alone["DIB_LOCAL_ELEMENTS"], alone["DIB_LOCAL_ELEMENTS_PATH"]) == \
        ("amphora-grub", str(tmp_path / "elements"))
    assert "DIB_HOST_CA_BUNDLE" not in alone


def test_the_grub_element_the_bench_copies_is_amp_images_and_drops_loop_lines():
    element = bench_upstream.GRUB_ELEMENT
    assert (element / "finalise.d" / "51-grub-drop-build-loop-devices").is_file()
    assert (element / "element-deps").read_text().split() == ["bootloader"]
    assert "amphora-grub" in " ".join(bench_upstream.WORKAROUNDS)


def test_the_command_is_the_scripts_own_flags():
    cmd = bench_upstream.command(INPUTS, Path("/out/up.qcow2"), Path("/w"), Path("/c"))
    assert cmd == ["bash", "/src/octavia-19.0.0/diskimage-create/diskimage-create.sh",
                   "-o", "/out/up.qcow2", "-w", "/w", "-c", "/c"]


@pytest.fixture(scope="module")
def octavia_sdist(tmp_path_factory) -> Path:
    from amp_image.verify.octavia_source import download_sdist

    return download_sdist("19.0.0", tmp_path_factory.mktemp("sdist"))


def test_the_script_takes_the_base_os_from_the_variable_and_checks_its_flags(
        octavia_sdist, tmp_path):
    """The released diskimage-create.sh itself: -i has no Debian (the variable is the
    way), and its -h and a bad -t behave as upstream documents (exits 1 and 3)."""
    script = octavia_sdist / "diskimage-create" / "diskimage-create.sh"
    text = script.read_text()
    assert 'AMP_BASEOS=${AMP_BASEOS:-"ubuntu-minimal"}' in text
    assert '"$AMP_BASEOS" != "debian-minimal"' not in text
    # The source-repositories names behind DIB_REPOLOCATION_amphora_agent and
    # DIB_REPOLOCATION_upper_constraints.
    sources = (octavia_sdist / "elements" / "amphora-agent" /
               "source-repository-amphora-agent").read_text().split("\n")
    assert {line.split()[0] for line in sources if line and not line.startswith("#")} == \
        {"amphora-agent", "upper-constraints"}
    helped = subprocess.run(["bash", str(script), "-h"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert helped.returncode == 1 and "-i" in helped.stdout
    bad = subprocess.run(["bash", str(script), "-t", "iso"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 3 and "Unsupported image type" in bad.stdout


def test_octavia_lib_at_the_version_the_constraints_pin(tmp_path):
    pins = tmp_path / "upper-constraints.txt"
    pins.write_text("octavia-lib===3.12.0\noslo.config===10.0.0;python_version>='3.10'\n")
    assert bench_upstream.pinned(pins, "octavia-lib") == "3.12.0"
    assert bench_upstream.pinned(pins, "oslo.config") == "10.0.0"
    with pytest.raises(SystemExit, match="pins no octavia"):
        bench_upstream.pinned(pins, "octavia")


def test_the_agent_elements_pkg_map_maps_ubuntus_keyring_away_for_debian(octavia_sdist):
    pkg_map = octavia_sdist / "elements" / "amphora-agent" / "pkg-map"
    before = json.loads(pkg_map.read_text())
    assert "debian" not in before["family"]  # upstream maps it away for Red Hat only
    assert before["family"]["redhat"]["ubuntu-cloudimage-keyring"] == ""
    bench_upstream.map_ubuntu_only_packages_away(pkg_map)
    after = json.loads(pkg_map.read_text())
    assert after["family"]["debian"] == {"ubuntu-cloudimage-keyring": ""}
    assert after["family"]["redhat"] == before["family"]["redhat"]
    assert after["default"] == before["default"]


def test_memory_in_use_from_the_agents_details():
    details = {"memory": {"total": 1_000_000, "free": 600_000, "buffers": 20_000,
                          "cached": 124_000, "shared": 1, "slab": 2, "swap_used": 0}}
    assert bench_upstream.memory_used_mib(details) == 256_000 / 1024


def test_compare_takes_ratios_and_absolute_targets():
    upstream = {"cold build (s)": 300.0, "qcow2 size (MiB)": 550.0,
                "memory used after boot (MiB)": 217.0}
    ours = {"cold build (s)": 150.0, "qcow2 size (MiB)": 190.0,
            "memory used after boot (MiB)": 254.0, "warm rebuild, agent changed (s)": 70.0}
    rows = {r["figure"]: r for r in bench_upstream.compare(upstream, ours)}
    assert rows["cold build (s)"]["ratio"] == 0.5 and rows["cold build (s)"]["met"] is False
    assert rows["qcow2 size (MiB)"]["met"] is True  # 0.35 <= 0.37 and 190 <= 200
    assert rows["memory used after boot (MiB)"]["met"] is False  # higher than upstream's
    changed = rows["warm rebuild, agent changed (s)"]
    assert changed["upstream"] is None and changed["ratio"] is None
    assert changed["met"] is False  # 70 s against 60
    table = bench_upstream.render(list(rows.values()))
    assert "| cold build (s) | 300.0 | 150.0 | 0.50 | ratio <= 0.4 | NO |" in table
    assert "| warm rebuild, agent changed (s) |  | 70.0 |  | <= 60 | NO |" in table
