"""openstack-config: the rendered steps, every rejected input, and the --apply paths."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import no_cloud_env

from amp_image.cli import main
from amp_image.cloud import connection as cloud
from amp_image.cloud.flavor_data import AMPHORA_FLAVOR_KEYS, flavor_data, validate_flavor_data
from amp_image.cloud.options import AmphoraFlavorOptions, OpenStackConfigError
from amp_image.cloud.validation import validate

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, env=None):
    return CliRunner().invoke(main, ["openstack-config", *args], env=env)


def script_commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines()
            if line.strip() and not line.startswith("#") and line != "set -eu"]


def test_simple_aggregate_commands():
    result = invoke("--sriov", "--host", "cmp1.example.org", "--host", "cmp2", "--sriov-vip")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "WARNING" not in result.stdout
    assert script_commands(result.stdout) == [
        ["openstack", "aggregate", "create", "amphora-sriov"],
        ["openstack", "aggregate", "add", "host", "amphora-sriov", "cmp1.example.org"],
        ["openstack", "aggregate", "add", "host", "amphora-sriov", "cmp2"],
        ["openstack", "aggregate", "set", "--property", "sriov-nic=true", "amphora-sriov"],
        ["openstack", "flavor", "create", "--id", "amphora-sriov", "--ram", "1024", "--disk", "3",
         "--vcpus", "1", "--private", "--property", "hw_rng:allowed=True",
         "--property", "aggregate_instance_extra_specs:sriov-nic=true", "amphora-sriov"],
        ["openstack", "loadbalancer", "flavorprofile", "create", "--name",
         "amphora-sriov-profile", "--provider", "amphora", "--flavor-data",
         '{"compute_flavor": "amphora-sriov", "sriov_vip": true, "allow_member_sriov": false}'],
        ["openstack", "loadbalancer", "flavor", "create", "--name", "amphora-sriov",
         "--flavorprofile", "amphora-sriov-profile", "--description",
         "Amphora load balancer, SR-IOV for VIP", "--enable"],
    ]
    assert "AggregateInstanceExtraSpecsFilter" in result.stdout


def test_per_network_aggregate_commands():
    result = invoke("--sriov", "--host", "cmp1", "--vip-network", "public",
                    "--member-network", "members", "--member-network", "backend",
                    "--sriov-vip", "--allow-member-sriov", "--ram", "2048", "--disk", "4",
                    "--vcpus", "2", "--project", "service", "--compute-flavor", "sriov.amphora",
                    "--compute-flavor-id", "amphora-sriov-flavor", "--aggregate", "sriov_agg",
                    "--flavor-profile", "sriov-profile", "--lb-flavor", "SRIOV",
                    "--topology", "ACTIVE_STANDBY", "--image-tag", "amphora")
    assert result.exit_code == 0, result.output
    commands = script_commands(result.stdout)
    assert commands[:3] == [
        ["openstack", "aggregate", "create", "sriov_agg"],
        ["openstack", "aggregate", "add", "host", "sriov_agg", "cmp1"],
        ["openstack", "aggregate", "set", "--property", "public-sriov=true",
         "--property", "members-sriov=true", "--property", "backend-sriov=true", "sriov_agg"],
    ]
    assert commands[3] == [
        "openstack", "flavor", "create", "--id", "amphora-sriov-flavor", "--ram", "2048",
        "--disk", "4", "--vcpus", "2", "--private", "--project", "service",
        "--property", "hw_rng:allowed=True",
        "--property", "aggregate_instance_extra_specs:public-sriov=true",
        "--property", "aggregate_instance_extra_specs:members-sriov=true",
        "--property", "aggregate_instance_extra_specs:backend-sriov=true", "sriov.amphora"]
    profile = commands[4]
    assert profile[:8] == ["openstack", "loadbalancer", "flavorprofile", "create", "--name",
                           "sriov-profile", "--provider", "amphora"]
    assert json.loads(profile[9]) == {
        "compute_flavor": "amphora-sriov-flavor", "sriov_vip": True, "allow_member_sriov": True,
        "loadbalancer_topology": "ACTIVE_STANDBY", "amp_image_tag": "amphora"}
    assert commands[5][:7] == ["openstack", "loadbalancer", "flavor", "create", "--name", "SRIOV",
                               "--flavorprofile"]


SRIOV_FOR_NOTHING = ("--sriov without --sriov-vip or --allow-member-sriov makes an SR-IOV "
                     "flavor that uses SR-IOV for nothing (its amphorae only land on the SR-IOV "
                     "hosts); add --sriov-vip and/or --allow-member-sriov")


def test_sriov_for_nothing_warns_on_stderr_and_in_the_script():
    result = invoke("--sriov", "--host", "cmp1")
    assert result.exit_code == 0, result.output
    assert result.stderr == f"amp-image: warning: {SRIOV_FOR_NOTHING}\n"
    assert f"# WARNING: {SRIOV_FOR_NOTHING}\n" in result.stdout
    result = invoke("--sriov", "--host", "cmp1", "--allow-member-sriov")
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "WARNING" not in result.stdout


def test_sriov_flags_default_false_and_script_parses(tmp_path):
    result = invoke("--sriov", "--host", "cmp1")
    profile = script_commands(result.stdout)[-2]
    data = json.loads(profile[profile.index("--flavor-data") + 1])
    assert data["sriov_vip"] is False and data["allow_member_sriov"] is False
    script = tmp_path / "steps.sh"
    script.write_text(result.stdout)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_plain_flavor_without_sriov():
    result = invoke("--flavor-data", '{"loadbalancer_topology": "SINGLE"}')
    assert result.exit_code == 0, result.output
    commands = script_commands(result.stdout)
    assert [c[:3] for c in commands] == [["openstack", "flavor", "create"],
                                         ["openstack", "loadbalancer", "flavorprofile"],
                                         ["openstack", "loadbalancer", "flavor"]]
    assert "aggregate_instance_extra_specs" not in result.stdout
    assert "AggregateInstanceExtraSpecsFilter" not in result.stdout


def test_quoting_of_odd_names():
    result = invoke("--sriov", "--host", "cmp1", "--lb-flavor", "SR-IOV 'fast' LB",
                    "--description", "it's $HOME; `x`")
    assert result.exit_code == 0, result.output
    lb = script_commands(result.stdout)[-1]
    assert lb[5] == "SR-IOV 'fast' LB" and lb[lb.index("--description") + 1] == "it's $HOME; `x`"


@pytest.mark.parametrize("args,message", [
    (["--sriov"], "pass --host HOST"),
    (["--sriov", "--host", "bad host"], "--host 'bad host' is not a host name"),
    (["--sriov", "--host", "-cmp1"], "is not a host name"),
    (["--sriov", "--host", "cmp1", "--vip-network", "pub lic", "--sriov-vip"],
     "network 'pub lic'"),
    (["--sriov", "--host", "cmp1", "--member-network", "a:b"], "network 'a:b'"),
    (["--sriov", "--host", "cmp1", "--member-network", "m", "--sriov-vip"],
     "needs the VIP network; pass --vip-network"),
    (["--sriov", "--host", "cmp1", "--vip-network", "v", "--allow-member-sriov"],
     "pass --member-network"),
    (["--host", "cmp1"], "--host need --sriov"),
    (["--sriov-vip"], "--sriov-vip need --sriov"),
    (["--sriov", "--host", "c", "--ram", "0"], "--ram 0 is too small"),
    (["--sriov", "--host", "c", "--disk", "1"], "--disk 1 is too small; use 2 or more"),
    (["--sriov", "--host", "c", "--vcpus", "0"], "--vcpus 0 is too small"),
    (["--sriov", "--host", "c", "--topology", "TRIPLE"], "use SINGLE or ACTIVE_STANDBY"),
    (["--sriov", "--host", "c", "--compute-flavor-id", "a/b"], "compute flavor ID 'a/b'"),
    (["--sriov", "--host", "c", "--lb-flavor", "   "], "Octavia flavor '   '"),
    (["--sriov", "--host", "c", "--aggregate", "a\tb"], "aggregate 'a\tb'"),
    (["--sriov", "--host", "c", "--flavor-data", "{nope"], "--flavor-data is not JSON"),
    (["--sriov", "--host", "c", "--flavor-data", "[1]"], "must be a JSON object"),
    (["--sriov", "--host", "c", "--flavor-data", '{"amp_availability_zone": "az1"}'],
     "key 'amp_availability_zone' is not accepted by the amphora provider"),
    (["--sriov", "--host", "c", "--flavor-data", '{"sriov_vip": "true"}'],
     "'sriov_vip' must be true or false"),
    (["--sriov", "--host", "c", "--flavor-data", '{"allow_member_sriov": 1}'],
     "'allow_member_sriov' must be true or false"),
    (["--sriov", "--host", "c", "--flavor-data", '{"compute_flavor": 42}'],
     "'compute_flavor' must be a string"),
    (["--sriov", "--host", "c", "--flavor-data", '{"loadbalancer_topology": "single"}'],
     "use one of SINGLE, ACTIVE_STANDBY"),
    (["--sriov", "--host", "c", "--flavor-data", '{"amp_image_tag": " "}'],
     "'amp_image_tag' is empty"),
    (["--sriov", "--host", "c", "--flavor-data", '{"compute_flavor": "other"}'],
     "--flavor-data sets 'compute_flavor'"),
    (["--sriov", "--host", "c", "--sriov-vip", "--flavor-data", '{"sriov_vip": false}'],
     "set it in one place"),
])
def test_invalid_input_is_one_line_error(args, message):
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("amp-image: error: "), result.stderr
    assert message in lines[0]


def test_flavor_data_keys_match_octavias_schema():
    assert set(AMPHORA_FLAVOR_KEYS) == {
        "loadbalancer_topology", "compute_flavor", "amp_image_tag", "sriov_vip",
        "allow_member_sriov"}
    validate_flavor_data({"loadbalancer_topology": "ACTIVE_STANDBY", "sriov_vip": True})




def test_apply_without_cloud(tmp_path):
    result = invoke("--sriov", "--host", "cmp1", "--sriov-vip", "--apply",
                    env=no_cloud_env(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "amp-image: error: no OpenStack cloud configured; set OS_CLOUD to a cloud in "
        "clouds.yaml (or pass --cloud NAME, or source an openrc that sets OS_AUTH_URL)")
    assert result.stdout == ""


def test_apply_with_unknown_cloud(tmp_path):
    env = {**no_cloud_env(tmp_path), "OS_CLOUD": "nowhere"}
    result = invoke("--sriov", "--host", "cmp1", "--sriov-vip", "--apply", env=env)
    assert result.exit_code == 1
    assert "OpenStack cloud 'nowhere' is not usable: Cloud nowhere was not found;" in \
        result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_apply_validates_before_connecting(tmp_path):
    result = invoke("--sriov", "--apply", env=no_cloud_env(tmp_path))
    assert result.exit_code == 1 and "pass --host HOST" in result.stderr


def test_missing_sdk_says_which_extra_to_install():
    code = ("import sys; sys.modules['openstack'] = None\n"
            "from amp_image.cloud import connection as cloud\n"
            "try:\n    cloud.sdk()\nexcept cloud.CloudError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == ("openstacksdk is not installed; install amp-image[openstack] "
                           "(pip install 'amp-image[openstack]')")


def test_cloud_name_resolution():
    assert cloud.cloud_name("mine", {}) == "mine"
    assert cloud.cloud_name(None, {"OS_CLOUD": "env"}) == "env"
    assert cloud.cloud_name(None, {"OS_AUTH_URL": "https://keystone"}) is None
    with pytest.raises(cloud.CloudError, match="no OpenStack cloud configured"):
        cloud.cloud_name(None, {"OS_CLOUD": ""})


def test_main_has_every_command():
    assert set(main.commands) == {"build", "test", "publish", "openstack-config", "diff",
                                  "check-certs", "cache"}


def test_openstacksdk_pin_matches_the_extra():
    pyproject = (ROOT / "pyproject.toml").read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    extra = re.search(r'openstack = \["openstacksdk==([^"]+)"\]', pyproject).group(1)
    assert f"openstacksdk=={extra}" in dev.split()


def profile_data(result) -> dict:
    profile = script_commands(result.stdout)[-2]
    return json.loads(profile[profile.index("--flavor-data") + 1])


@pytest.mark.parametrize("version", ["14.0.2", "15.1.0", "15.0.0"])
def test_allow_member_sriov_before_16_is_refused(version):
    result = invoke("--sriov", "--host", "cmp1", "--sriov-vip", "--allow-member-sriov",
                    "--octavia-version", version)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "amp-image: error: --allow-member-sriov needs octavia 16.x (2025.1) or newer (SR-IOV "
        f"member ports arrived there), but the controller is octavia {version} "
        "(--octavia-version); drop --allow-member-sriov, or upgrade Octavia\n")


@pytest.mark.parametrize("version", ["16.0.0", "16.1.0", "17.0.1", "18.0.1", "19.0.0"])
def test_allow_member_sriov_from_16_on(version):
    result = invoke("--sriov", "--host", "cmp1", "--allow-member-sriov",
                    "--octavia-version", version)
    assert result.exit_code == 0, result.output
    assert profile_data(result)["allow_member_sriov"] is True


def test_octavia_version_defaults_to_the_default_agent():
    opts = AmphoraFlavorOptions(hosts=("cmp1",), allow_member_sriov=True)
    assert opts.octavia_version == "19.0.0"
    validate(opts)


def test_before_16_the_profile_leaves_allow_member_sriov_out():
    # A 14.x/15.x controller refuses a profile that names the key at all, false or not.
    result = invoke("--sriov", "--host", "cmp1", "--sriov-vip", "--octavia-version", "15.1.0")
    assert result.exit_code == 0, result.output
    assert profile_data(result) == {"compute_flavor": "amphora-sriov", "sriov_vip": True}
    result = invoke("--octavia-version", "13.0.1")
    assert profile_data(result) == {"compute_flavor": "amphora"}
    opts = AmphoraFlavorOptions(hosts=("cmp1",), sriov_vip=True, octavia_version="14.0.2")
    assert flavor_data(opts) == {"compute_flavor": "amphora-sriov", "sriov_vip": True}


def test_before_16_the_flag_warning_names_only_sriov_vip():
    result = invoke("--sriov", "--host", "cmp1", "--octavia-version", "15.1.0")
    assert result.exit_code == 0
    assert result.stderr.rstrip().endswith("add --sriov-vip")


@pytest.mark.parametrize("args,message", [
    (["--sriov", "--host", "c", "--sriov-vip", "--octavia-version", "15.1.0",
      "--flavor-data", '{"allow_member_sriov": false}'],
     "flavor data key 'allow_member_sriov' needs octavia 16.x (2025.1) or newer, but the "
     "controller is octavia 15.1.0 (--octavia-version); drop it from --flavor-data"),
    (["--octavia-version", "13.0.1", "--flavor-data", '{"sriov_vip": true}'],
     "flavor data key 'sriov_vip' needs octavia 14.x (2024.1) or newer"),
    (["--sriov", "--host", "c", "--octavia-version", "13.0.1"],
     "--sriov needs octavia 14.x (2024.1) or newer"),
    (["--sriov", "--host", "c", "--sriov-vip", "--octavia-version", "13.0.1"],
     "--sriov needs octavia 14.x (2024.1) or newer"),
    (["--octavia-version", "latest"],
     "--octavia-version 'latest' is not an octavia release number; give one like 19.0.0"),
])
def test_release_gates_are_one_line_errors(args, message):
    test_invalid_input_is_one_line_error(args, message)


def test_validate_refuses_what_the_release_lacks():
    opts = AmphoraFlavorOptions(hosts=("cmp1",), allow_member_sriov=True,
                                    octavia_version="14.0.2")
    with pytest.raises(OpenStackConfigError, match="--allow-member-sriov needs octavia 16"):
        validate(opts)
