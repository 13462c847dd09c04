"""Options -> build plan (elements and environment).  Pure: no DIB, no host."""

import sys
from pathlib import Path

import pytest

from amp_image.builder import constraints
from amp_image.builder.compat import BASE_OSES
from amp_image.builder.environment import security_mirror_for
from amp_image.builder.options import AgentSource, BuildOptions, HostContext
from amp_image.builder.plan import make_plan
from amp_image.builder.validate import image_name_for
from amp_image.errors import PlanError

ELEMENTS = Path("/elements")
HOST = HostContext(distribution_mirror="http://mirror.example/debian",
                   ca_bundle="/etc/ssl/ca.pem", proxies={"https_proxy": "http://proxy:3128"})


def plan(**kw):
    return make_plan(BuildOptions(**kw), HOST, ELEMENTS)


def test_default_plan_is_sriov_ready_debian_trixie():
    p = plan()
    assert p.elements[0] == "debian-minimal"
    for element in ("vm", "amphora-agent", "haproxy-octavia", "keepalived-octavia",
                    "ipvsadmin", "certs-ramfs", "amphora-nftables", "sriov-vf-drivers",
                    "rebind-sshd", "no-resolvconf", "remove-default-ints", "amphora-base"):
        assert element in p.elements
    assert p.env["DIB_RELEASE"] == "trixie"
    assert p.env["DIB_OCTAVIA_AMP_USE_NFTABLES"] == "True"
    assert p.env["DIB_PYTHON_VERSION"] == "3"
    assert p.env["DIB_CLOUD_INIT_DATASOURCES"] == "ConfigDrive"
    assert p.env["DIB_DEBOOTSTRAP_CACHE"] == p.env["DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"] == "1"
    assert p.env["DIB_AMP_AGENT_SOURCE_TYPE"] == "pypi"
    assert p.env["DIB_AMP_AGENT_VERSION"] == "19.0.0"
    assert p.env["DIB_AMP_VF_DRIVERS"].split() == [
        "iavf", "ixgbevf", "igbvf", "mlx5_core", "mlx4_core", "bnxt_en", "qede", "ice", "i40e"]
    assert p.image_format == "qcow2"
    assert p.image_name == "amphora-x64-haproxy"


def test_nftables_stays_on_without_sriov():
    p = plan(sriov=False)
    assert "sriov-vf-drivers" not in p.elements
    assert "DIB_AMP_VF_DRIVERS" not in p.env
    assert "amphora-nftables" in p.elements
    assert p.env["DIB_OCTAVIA_AMP_USE_NFTABLES"] == "True"


def test_iptables_option():
    assert plan(use_nftables=False).env["DIB_OCTAVIA_AMP_USE_NFTABLES"] == "False"


def test_security_mirror_follows_the_distribution_mirror():
    p = plan()
    assert p.env["DIB_DISTRIBUTION_MIRROR"] == "http://mirror.example/debian"
    assert p.env["DIB_DEBIAN_SECURITY_MIRROR"] == "http://mirror.example/debian-security"
    assert security_mirror_for("http://deb.debian.org/debian/") == \
        "http://deb.debian.org/debian-security"


def test_a_snapshot_is_the_archive_and_the_date():
    p = plan(snapshot="20261120T000000Z", release="bookworm")
    main = "http://snapshot.debian.org/archive/debian/20261120T000000Z"
    assert p.env["DIB_DISTRIBUTION_MIRROR"] == main
    assert p.env["DIB_DEBIAN_SECURITY_MIRROR"] == (
        "http://snapshot.debian.org/archive/debian-security/20261120T000000Z")
    assert p.env["DIB_APT_SOURCES_CONF"].splitlines() == [
        f"default:deb [check-valid-until=no] {main} bookworm main",
        f"updates:deb [check-valid-until=no] {main} bookworm-updates main",
        "security:deb [check-valid-until=no] http://snapshot.debian.org/archive/"
        "debian-security/20261120T000000Z bookworm-security main"]
    assert p.env["DIB_DEBOOTSTRAP_CACHE"] == p.env["DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"] == "0"
    assert p.env["SOURCE_DATE_EPOCH"] == "1795132800"  # 2026-11-20T00:00:00Z
    assert p.as_dict()["reproduce"] == {"snapshot": "20261120T000000Z", "pinned_packages": 0,
                                        "source_date_epoch": "1795132800"}


@pytest.mark.parametrize("epoch", [None, 1700000000])
def test_a_malformed_snapshot_is_refused(epoch):
    """Whether or not SOURCE_DATE_EPOCH is given as well."""
    with pytest.raises(PlanError, match=r"^--snapshot 2026-11-20: not a snapshot\.debian\.org "
                                        r"timestamp; use YYYYMMDDTHHMMSSZ"):
        plan(snapshot="2026-11-20", source_date_epoch=epoch)


def test_package_pins_add_their_element_and_file(tmp_path):
    p = plan(package_pins=(("haproxy", "3.0.11-1"),), source_date_epoch=1795132800,
             work_dir=tmp_path)
    assert "pin-package-versions" in p.elements
    assert p.env["DIB_AMP_PACKAGE_PINS"] == str(tmp_path / "package-pins")
    assert p.env["SOURCE_DATE_EPOCH"] == "1795132800"
    assert p.env["DIB_DISTRIBUTION_MIRROR"] == "http://mirror.example/debian"


def test_no_reproduction_settings_by_default():
    p = plan()
    assert "pin-package-versions" not in p.elements
    assert not {"SOURCE_DATE_EPOCH", "DIB_AMP_PACKAGE_PINS", "DIB_APT_SOURCES_CONF"} & set(p.env)


def test_host_ca_and_proxies_pass_through():
    p = plan()
    assert p.env["DIB_AMP_CA_BUNDLE"] == "/etc/ssl/ca.pem"
    assert p.env["https_proxy"] == "http://proxy:3128"


def test_bookworm_builds_too():
    assert plan(release="bookworm").env["DIB_RELEASE"] == "bookworm"


def test_unknown_debian_release_is_refused():
    with pytest.raises(PlanError, match="release 'sid'.*trixie, bookworm"):
        plan(release="sid")


@pytest.mark.parametrize("base", ["ubuntu-minimal", "centos-minimal", "rocky"])
def test_other_base_oses_are_refused_naming_the_fix(base):
    # Offered before, never built: their element paths were not right (apt-only
    # steps, ifupdown, dpkg excludes).  Removed until they can be tested.
    with pytest.raises(PlanError) as refusal:
        plan(base_os=base, agent_version="16.1.0")
    assert str(refusal.value) == (
        f"base OS '{base}' is not supported: amp-image builds and tests Debian only "
        "(its elements are Debian's); use --base-os debian")
    assert {"debian": BASE_OSES["debian"]} == BASE_OSES


def test_unknown_base_os():
    with pytest.raises(PlanError, match="unknown base OS 'gentoo'"):
        plan(base_os="gentoo")


@pytest.mark.parametrize("given,arch", [("x86_64", "amd64"), ("aarch64", "arm64"),
                                        ("ppc64le", "ppc64le"), ("armhf", "armhf")])
def test_arch_aliases(given, arch):
    p = plan(arch=given)
    assert p.env["ARCH"] == arch
    assert p.dib_args[:2] == ("-a", arch)


def test_unknown_arch():
    with pytest.raises(PlanError, match="unknown architecture 's390x'"):
        plan(arch="s390x")


@pytest.mark.parametrize("output,fmt,expected", [
    ("x.qcow2", "", ("x", "qcow2")),
    ("x.raw", "", ("x", "raw")),
    ("x.img", "", ("x.img", "qcow2")),
    ("x", "vhd", ("x", "vhd")),
    ("x.tar", "", ("x", "tar")),
])
def test_output_name_and_format(output, fmt, expected):
    p = plan(output=Path("/out") / output, image_format=fmt)
    assert (p.image_name, p.image_format) == expected
    assert "-t" in p.dib_args and p.dib_args[p.dib_args.index("-t") + 1] == expected[1]


def test_image_name_needs_a_name():
    with pytest.raises(PlanError):
        image_name_for(Path(".qcow2"), "qcow2")


def test_too_small():
    with pytest.raises(PlanError, match="--size 2 or more"):
        plan(size_gb=1)


def test_size_passed_to_dib():
    p = plan(size_gb=5)
    assert p.dib_args[p.dib_args.index("--image-size") + 1] == "5"


def test_optional_elements():
    p = plan(root_password_hash="$6$salt$hash", sshd=False, cpu_pinning=True, fips=True,
             extra_elements=("my-element",))
    for element in ("root-passwd", "remove-sshd", "cpu-pinning", "fips", "my-element"):
        assert element in p.elements
    assert "DIB_PASSWORD" not in p.env


def test_no_root_password_by_default():
    p = plan()
    assert "root-passwd" not in p.elements
    assert not [k for k in p.env if "PASSW" in k]
    assert p.as_dict()["root_password"] is None


def test_replace_elements_keeps_options():
    p = plan(replace_elements=("debian-minimal", "vm"), sshd=False)
    assert p.elements == ("debian-minimal", "vm", "remove-sshd")


def test_elements_path_order():
    p = plan(elements_paths=(Path("/a"), Path("/b")))
    assert p.env["ELEMENTS_PATH"] == "/elements:/a:/b"


def test_invalid_element_name():
    with pytest.raises(PlanError, match="invalid element name"):
        plan(extra_elements=("../evil",))


def test_invalid_vf_driver_name():
    with pytest.raises(PlanError, match="kernel module name"):
        plan(vf_drivers=("iavf", "rm -rf"))


def test_agent_from_git():
    p = plan(agent_source=AgentSource("git", "https://git.example/octavia", "stable/2026.1"))
    assert p.env["DIB_AMP_AGENT_SOURCE_TYPE"] == "git"
    # Upstream's variables, for DIB's source-repositories.
    assert p.env["DIB_REPOLOCATION_amphora_agent"] == "https://git.example/octavia"
    assert p.env["DIB_REPOREF_amphora_agent"] == "stable/2026.1"
    assert "DIB_AMP_AGENT_SOURCE" not in p.env and "DIB_AMP_AGENT_REF" not in p.env
    assert p.env["DIB_AMP_AGENT_VERSION"] == ""


def test_agent_from_git_without_a_ref_leaves_dibs_default():
    p = plan(agent_source=AgentSource("git", "/srv/octavia"))
    assert p.env["DIB_REPOLOCATION_amphora_agent"] == "/srv/octavia"
    assert "DIB_REPOREF_amphora_agent" not in p.env


def test_agent_from_a_checkout_or_a_wheelhouse_fetches_nothing():
    for kind in ("dir", "wheelhouse"):
        p = plan(agent_source=AgentSource(kind, "/srv/agent"))
        assert p.env["DIB_AMP_AGENT_SOURCE"] == "/srv/agent"
        assert not [k for k in p.env if k.startswith("DIB_REPO")]


def test_agent_wheelhouse_keeps_version():
    p = plan(agent_source=AgentSource("wheelhouse", "/wheels"))
    assert p.env["DIB_AMP_AGENT_SOURCE_TYPE"] == "wheelhouse"
    assert p.env["DIB_AMP_AGENT_VERSION"] == "19.0.0"


def test_constraints_follow_agent_series():
    assert plan().constraints_file.name == "upper-constraints-2026.2.txt"
    assert plan(agent_version="18.1.0").constraints_file.name == "upper-constraints-2026.1.txt"
    assert plan(agent_version="18.1.0").constraints_file.is_file()


def test_release_follows_agent_series_unless_given():
    assert plan().env["DIB_RELEASE"] == "trixie"
    assert plan(agent_version="17.0.1").env["DIB_RELEASE"] == "bookworm"
    assert plan(agent_version="18.0.1", release="bookworm").env["DIB_RELEASE"] == "bookworm"
    with pytest.raises(PlanError, match="use --release bookworm"):
        plan(agent_version="17.0.1", release="trixie")


def test_unknown_series_needs_explicit_constraints():
    with pytest.raises(PlanError, match="pass --constraints"):
        plan(agent_version="12.0.0")
    p = plan(agent_version="12.0.0", constraints_file=Path("/c.txt"))
    assert p.env["DIB_AMP_AGENT_CONSTRAINTS"] == "/c.txt"


def test_vendored_constraints_pin_pyroute2_not_octavia():
    for series in constraints.SERIES:
        if not series.constraints:
            continue
        text = (constraints.DATA_DIR / series.constraints).read_text()
        names = {line.split("===")[0].lower() for line in text.splitlines() if "===" in line}
        assert "pyroute2" in names
        assert "octavia" not in names


def test_work_dir_and_cache():
    p = plan(work_dir=Path("/w"), cache_dir=Path("/c"), use_tmpfs=False, trace=True)
    assert p.env["TMP_DIR"] == "/w/tmp"
    assert p.env["DIB_IMAGE_CACHE"] == "/c"
    assert "--no-tmpfs" in p.dib_args and "-x" in p.dib_args
    assert p.env["DIB_DEBUG_TRACE"] == "1"
    assert p.dib_args[p.dib_args.index("-o") + 1] == "/w/out/amphora-x64-haproxy"


# What a plan may not do: read or write files, list folders, start processes, reach the
# network, or change the environment (Python's audit events, PEP 578).
IMPURE_EVENTS = ("open", "os.listdir", "os.scandir", "os.walk", "glob.glob", "os.mkdir",
                 "os.remove", "os.rename", "shutil.copyfile", "subprocess.Popen",
                 "os.system", "os.exec", "os.spawn", "socket.connect", "socket.getaddrinfo",
                 "urllib.Request", "os.putenv", "os.unsetenv", "os.chdir")
_audit: dict[str, list] = {}


def _record(event: str, args: tuple) -> None:
    if "events" in _audit and event.startswith(IMPURE_EVENTS):
        _audit["events"].append((event, args[:1]))


def test_plan_is_pure():
    """make_plan opens, lists, starts and connects to nothing, seen by the interpreter's audit
    hooks while it runs (an audit hook cannot be removed: it records only while
    _audit holds a list)."""
    if not _audit.get("installed"):
        sys.addaudithook(_record)
        _audit["installed"] = True
    opts = BuildOptions(agent_source=AgentSource("git", "https://example.invalid/o", "x"),
                        extra_elements=("vm",), constraints_file=Path("/nonexistent/c.txt"))
    _audit["events"] = []
    try:
        made = make_plan(opts, HostContext(proxies={"https_proxy": "http://p:3128"}),
                         Path("/nonexistent/elements"))
        made.as_dict()
        seen = _audit["events"]
    finally:
        del _audit["events"]
    assert seen == []
    assert made.elements and made.env and made.dib_args  # it planned, touching nothing


def test_qcow2_compression_and_slim():
    p = plan()
    assert p.dib_args[p.dib_args.index("--qemu-img-options") + 1] == "compression_type=zstd"
    assert p.env["DIB_AMP_SLIM"] == "1"
    p = plan(compression="zlib", slim=False)
    assert "compression_type=zlib" in p.dib_args
    assert p.env["DIB_AMP_SLIM"] == "0"
    assert "--qemu-img-options" not in plan(image_format="raw").dib_args


def test_unknown_compression():
    with pytest.raises(PlanError, match="compression 'xz'"):
        plan(compression="xz")


def test_ca_bundle_stays_out_of_the_image_unless_asked():
    assert "DIB_AMP_CA_IN_IMAGE" not in plan().env
    assert plan(ca_in_image=True).env["DIB_AMP_CA_IN_IMAGE"] == "1"
