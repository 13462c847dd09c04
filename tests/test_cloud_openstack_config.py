"""`amp-image openstack-config` against real OpenStack services: the test cloud
(scripts/testcloud: Keystone, Nova with one fake-driver compute host named like the
seed's, Placement, Glance, the Octavia API, on MariaDB and RabbitMQ), read back with the
real `openstack` client.  Nothing here is a fake: Nova validates the flavor and the
aggregate's host, Octavia validates the flavor profile against its amphora provider
(and looks up its compute flavor in Nova)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cloud_client import RealCloud, cloud_life

pytestmark = pytest.mark.cloud

HOST = "sriov-host.example.org"
SEED = ("--sriov", "--host", HOST, "--project", "service", "--sriov-vip",
        "--allow-member-sriov")


def snapshot(cloud: RealCloud, name: str = "amphora-sriov") -> dict:
    """What the seed's steps made, as the client reads it back (IDs left out)."""
    read = cloud.read_all({
        "aggregate": ("aggregate", "show", name),
        "flavor": ("flavor", "show", name),
        "profile": ("loadbalancer", "flavorprofile", "show", f"{name}-profile"),
        "lb_flavor": ("loadbalancer", "flavor", "show", name),
    })
    aggregate, flavor, profile, lb_flavor = (read[key] for key in (
        "aggregate", "flavor", "profile", "lb_flavor"))
    return {
        "aggregate": aggregate and {"hosts": sorted(aggregate["hosts"]),
                                    "properties": aggregate["properties"]},
        "flavor": flavor and {key: flavor.get(key) for key in (
            "ram", "disk", "vcpus", "os-flavor-access:is_public", "properties",
            "access_project_ids")},
        "profile": profile and {"provider": profile["provider_name"],
                                "flavor_data": json.loads(profile["flavor_data"])},
        "lb_flavor": lb_flavor and {key: lb_flavor[key] for key in (
            "description", "enabled")},
    }


NOTHING = {"aggregate": None, "flavor": None, "profile": None, "lb_flavor": None}


def remove_all(cloud: RealCloud, *names: str) -> None:
    """The tests' clean-up, through the SDK (quicker than a client per call)."""
    conn = cloud.sdk()
    for name in names or ("amphora-sriov",):
        if (flavor := conn.load_balancer.find_flavor(name)) is not None:
            conn.load_balancer.delete_flavor(flavor)
        if (profile := conn.load_balancer.find_flavor_profile(f"{name}-profile")) is not None:
            conn.load_balancer.delete_flavor_profile(profile)
        if (compute := conn.compute.find_flavor(name)) is not None:
            conn.compute.delete_flavor(compute)
        if (aggregate := conn.compute.find_aggregate(name)) is not None:
            for host in aggregate.hosts or []:
                conn.compute.remove_host_from_aggregate(aggregate, host)
            conn.compute.delete_aggregate(aggregate)


@pytest.fixture
def cloud(test_cloud: RealCloud) -> RealCloud:
    remove_all(test_cloud, "amphora-sriov", "other")
    return test_cloud


def apply(cloud: RealCloud, *args: str):
    return cloud.amp_image("openstack-config", *args, "--apply")


def apply_seed(cloud: RealCloud) -> str:
    """The seed's steps, applied; what --apply printed."""
    result = apply(cloud, *SEED)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_cloud_listens_on_loopback_only_and_keeps_its_secrets_off_command_lines(cloud):
    pids = cloud_life.daemons.marked(cloud.where)
    assert len(pids) >= 10, pids
    listening = listening_addresses(pids)
    assert listening, "no listening socket found for the cloud's processes"
    assert {address for address, _ in listening} <= {"127.0.0.1", "::1"}, listening
    for port_name in ("keystone", "glance", "placement", "nova", "octavia", "mariadb",
                      "rabbitmq"):
        assert cloud.state.ports[port_name] in {port for _, port in listening}, port_name
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        for secret in cloud.state.passwords.values():
            assert secret not in argv, f"a password is on the command line of PID {pid}"
    for path in cloud.where.run.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode) and path.suffix in (".conf", ".json", ".yaml"):
            assert mode & 0o077 == 0, f"{path} is readable by others"
    assert cloud.where.run.stat().st_mode & 0o077 == 0


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = fd.readlink().as_posix()
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(decode_address(fields[1], family))
    return found


def decode_address(text: str, family: int) -> tuple[str, int]:
    import ipaddress

    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp* print each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


PER_NETWORK = ("--sriov", "--host", HOST, "--vip-network", "public", "--member-network",
               "members", "--sriov-vip", "--allow-member-sriov", "--project", "service",
               "--aggregate", "per-net", "--compute-flavor", "per-net",
               "--flavor-profile", "per-net-profile", "--lb-flavor", "per-net")


@pytest.mark.parametrize("name, args, properties", [
    ("amphora-sriov", SEED, {"sriov-nic": "true"}),
    ("per-net", PER_NETWORK, {"public-sriov": "true", "members-sriov": "true"}),
], ids=["simple", "per network"])
def test_apply_makes_what_the_printed_commands_make(cloud, name, args, properties):
    remove_all(cloud, name)
    printed = cloud.amp_image("openstack-config", *args)
    assert printed.returncode == 0, printed.stderr
    ran = cloud.sh(printed.stdout)
    assert ran.returncode == 0, ran.stderr
    by_commands = snapshot(cloud, name)
    assert by_commands["aggregate"] == {"hosts": [HOST], "properties": properties}
    assert by_commands["flavor"]["properties"] == {
        "hw_rng:allowed": "True",
        **{f"aggregate_instance_extra_specs:{key}": value for key, value in properties.items()}}
    assert by_commands["profile"]["flavor_data"] == {
        "compute_flavor": name, "sriov_vip": True, "allow_member_sriov": True}
    remove_all(cloud, name)
    assert snapshot(cloud, name) == NOTHING
    applied = apply(cloud, *args)
    assert applied.returncode == 0, applied.stderr
    assert snapshot(cloud, name) == by_commands
    remove_all(cloud, name)


@pytest.mark.parametrize("case", ["wrong password", "unreachable Keystone", "no such region"])
def test_apply_on_a_cloud_that_cannot_serve_fails_in_one_line_and_makes_nothing(
        cloud, tmp_path, case):
    from test_cloud_glance import wrong_clouds

    env, says = wrong_clouds(cloud, tmp_path, "compute")[case]
    result = cloud.amp_image("openstack-config", *SEED, "--apply", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert result.stdout == ""
    assert snapshot(cloud) == NOTHING


def test_a_rerun_changes_nothing(cloud):
    apply_seed(cloud)
    before = snapshot(cloud)
    updated = cloud.read("aggregate", "show", "amphora-sriov")["updated_at"]
    again = apply_seed(cloud)
    assert not re.search(r"^(created|added|set|gave) ", again, re.M), again
    assert snapshot(cloud) == before
    assert cloud.read("aggregate", "show", "amphora-sriov")["updated_at"] == updated


def test_a_half_made_flavor_is_repaired(cloud):
    apply_seed(cloud)
    wanted = snapshot(cloud)
    # What an interrupted run, or a hand-made start, leaves: the flavor without its
    # extra specs and its project's access, and no Octavia flavor yet.
    cloud.openstack("loadbalancer", "flavor", "delete", "amphora-sriov")
    cloud.openstack("flavor", "unset", "--property", "aggregate_instance_extra_specs:sriov-nic",
                    "amphora-sriov")
    cloud.openstack("flavor", "unset", "--project", "service", "amphora-sriov")
    half = snapshot(cloud)
    assert half["flavor"]["access_project_ids"] == [] and half["lb_flavor"] is None
    apply_seed(cloud)
    assert snapshot(cloud) == wanted


def test_a_changed_extra_spec_is_set_back_and_other_specs_are_kept(cloud):
    apply_seed(cloud)
    wanted = snapshot(cloud)
    cloud.openstack("flavor", "set", "--property", "hw_rng:allowed=False",
                    "--property", "hw:mem_page_size=large", "amphora-sriov")
    fixed = apply_seed(cloud)
    assert "set hw_rng:allowed on compute flavor amphora-sriov" in fixed
    properties = snapshot(cloud)["flavor"]["properties"]
    assert properties == {**wanted["flavor"]["properties"], "hw:mem_page_size": "large"}


def test_a_run_refused_halfway_is_completed_by_the_next(cloud):
    """A real refusal halfway: Octavia's provider looks the profile's amp_image_tag up
    in Glance, after the aggregate and the compute flavor are made.  The error is one
    line; once an image carries the tag, the same command completes the rest."""
    args = (*SEED, "--image-tag", "halfway")
    refused = apply(cloud, *args)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "halfway" in lines[0] and "re-running --apply" in lines[0], \
        refused.stderr
    assert "created compute flavor amphora-sriov" in refused.stdout
    half = snapshot(cloud)
    assert half["flavor"] and half["profile"] is None
    conn = cloud.sdk()
    image = conn.image.create_image("halfway", data=b"0" * 512, disk_format="raw",
                                    container_format="bare", tags=["halfway"])
    try:
        completed = apply(cloud, *args)
        assert completed.returncode == 0, completed.stderr
        done = snapshot(cloud)
        assert done["profile"]["flavor_data"]["amp_image_tag"] == "halfway"
        assert done["lb_flavor"]["enabled"] is True
        assert done["flavor"] == half["flavor"]
    finally:
        conn.image.delete_image(image)


@pytest.mark.parametrize("args, named", [
    (("--host", "no-such-host.example.org"), "no-such-host.example.org"),
    (("--project", "no-such-project"), "no-such-project"),
], ids=["unknown host", "missing project"])
def test_a_wrong_name_fails_in_one_line_before_anything_changes(cloud, args, named):
    apply_seed(cloud)
    before = snapshot(cloud)
    # Other names, so that everything would be new: nothing of it may be made.
    result = apply(cloud, "--sriov", "--host", HOST, "--sriov-vip", "--aggregate", "other",
                   "--compute-flavor", "other", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert result.stdout == ""
    assert snapshot(cloud) == before
    assert snapshot(cloud, "other") == NOTHING


def test_the_flavor_keys_amp_image_accepts_are_the_real_providers(cloud):
    """Octavia 19.0.0's amphora provider lists the flavor keys it accepts: amp-image
    accepts exactly those for this release (its release gates let each through), the
    real API takes a profile with all of them, and refuses, as amp-image does, one
    with a key it does not know."""
    from amp_image.cloud.flavor_data import AMPHORA_FLAVOR_KEYS, validate_flavor_data
    from amp_image.cloud.options import OpenStackConfigError

    capabilities = cloud.read("loadbalancer", "provider", "capability", "list", "amphora",
                              "--flavor")
    assert {entry["name"] for entry in capabilities} == set(AMPHORA_FLAVOR_KEYS)
    apply_seed(cloud)
    # The provider looks amp_image_tag up in Glance: an image must carry it.
    conn = cloud.sdk()
    tagged = conn.image.create_image("tagged", data=b"0" * 512, disk_format="raw",
                                     container_format="bare", tags=["amphora"])
    every_key = {"loadbalancer_topology": "ACTIVE_STANDBY", "compute_flavor": "amphora-sriov",
                 "amp_image_tag": "amphora", "sriov_vip": True, "allow_member_sriov": True}
    assert set(every_key) == set(AMPHORA_FLAVOR_KEYS)
    validate_flavor_data(every_key, "19.0.0")
    for name, data, accepted in (("every-key", every_key, True),
                                 ("unknown-key", {"no_such_key": "x"}, False)):
        if not accepted:
            with pytest.raises(OpenStackConfigError, match="no_such_key"):
                validate_flavor_data(data, "19.0.0")
        result = cloud.openstack("loadbalancer", "flavorprofile", "create", "--name", name,
                                 "--provider", "amphora", "--flavor-data", json.dumps(data),
                                 check=False)
        cloud.openstack("loadbalancer", "flavorprofile", "delete", name, check=False)
        assert (result.returncode == 0) == accepted, result.stderr
    conn.image.delete_image(tagged)


def test_the_release_gates_are_what_a_real_older_octavia_does(cloud, tmp_path):
    """amp-image's prediction for octavia 14.0.2 (2024.1): SR-IOV VIPs yes, SR-IOV
    member ports no (from 16.x).  A real 14.0.2 API, started beside the cloud's 19.0.0
    (same Keystone and Nova, its own database), does the same: it refuses a profile with
    allow_member_sriov, and takes what --apply --octavia-version 14.0.2 makes."""
    from amp_image.cloud.flavor_data import flavor_data
    from amp_image.cloud.options import AmphoraFlavorOptions

    url = cloud_life.start_older_octavia(cloud.where, cloud.state)
    older = cloud.env_with(tmp_path, settings={"load_balancer_endpoint_override": url})
    conn = cloud.sdk(older)
    remove_all(cloud, "x14")
    predicted = cloud.amp_image("openstack-config", *SEED, "--octavia-version", "14.0.2")
    assert predicted.returncode == 1
    assert "--allow-member-sriov needs octavia 16.x (2025.1) or newer" in predicted.stderr
    apply_seed(cloud)  # the compute flavor the profiles name
    from openstack import exceptions

    with pytest.raises(exceptions.HttpException, match="allow_member_sriov"):
        conn.load_balancer.create_flavor_profile(
            name="members-on-14", provider_name="amphora", flavor_data=json.dumps(
                {"compute_flavor": "amphora-sriov", "allow_member_sriov": True}))
    args = ("--sriov", "--host", HOST, "--sriov-vip", "--octavia-version", "14.0.2",
            "--aggregate", "x14", "--compute-flavor", "x14")
    made = cloud.amp_image("openstack-config", *args, "--apply", env=older)
    assert made.returncode == 0, made.stderr
    # The profile and flavor keep their default names: they live in 14.0.2's database.
    profile = conn.load_balancer.find_flavor_profile("amphora-sriov-profile")
    assert json.loads(profile.flavor_data) == flavor_data(AmphoraFlavorOptions(
        hosts=(HOST,), sriov_vip=True, octavia_version="14.0.2", aggregate="x14",
        compute_flavor="x14"))
    assert "allow_member_sriov" not in json.loads(profile.flavor_data)
    remove_all(cloud, "x14")


def test_a_profile_naming_an_image_tag_no_image_carries_is_refused_by_octavia(cloud):
    """The provider looks amp_image_tag up in Glance (why the README uploads the image
    before the flavor profile names its tag)."""
    result = cloud.openstack("loadbalancer", "flavorprofile", "create", "--name", "untagged",
                             "--provider", "amphora", "--flavor-data",
                             json.dumps({"amp_image_tag": "no-image-has-this"}), check=False)
    cloud.openstack("loadbalancer", "flavorprofile", "delete", "untagged", check=False)
    assert result.returncode != 0 and "no-image-has-this" in result.stderr, result.stderr


def test_a_profile_naming_a_missing_compute_flavor_is_refused_by_octavia(cloud):
    """What amp-image's order of steps (the compute flavor first) is for: the real
    provider looks the profile's compute flavor up in Nova."""
    result = cloud.openstack("loadbalancer", "flavorprofile", "create", "--name", "early",
                             "--provider", "amphora", "--flavor-data",
                             json.dumps({"compute_flavor": "amphora-sriov"}), check=False)
    cloud.openstack("loadbalancer", "flavorprofile", "delete", "early", check=False)
    assert result.returncode != 0 and "amphora-sriov" in result.stderr, result.stderr


CHECK_ROWS = ("aggregate amphora-sriov", "compute flavor amphora-sriov",
              "flavor profile amphora-sriov-profile", "Octavia flavor amphora-sriov",
              "image tagged amphora")


def check(cloud: RealCloud, *args: str) -> tuple[int, list[list[str]]]:
    """--check's exit code and its table's rows (status, what, finding, fix)."""
    result = cloud.amp_image("openstack-config", *args, "--check")
    assert result.stderr == "", result.stderr
    rows = [[cell.strip() for cell in line.split(" | ")]
            for line in result.stdout.splitlines()[1:]]
    return result.returncode, rows


def upload_sriov_ready_image(cloud: RealCloud, folder: Path) -> str:
    """A small image whose record lists VF drivers, uploaded by amp-image."""
    from test_publish import make_small_image

    image = make_small_image(folder, "amphora-x64-haproxy.qcow2", files={
        "etc/amp-image/vf-drivers": "iavf 6.12.0-1-amd64 kernel/drivers/net/iavf.ko\n"
                                    "mlx5_core 6.12.0-1-amd64 kernel/mlx5_core.ko\n"})
    from test_cloud_glance import uploaded_id

    return uploaded_id(cloud.amp_image("publish", str(image), "--dest",
                                       str(folder / "dist"), "--upload"))


def test_check_audits_the_cloud_before_and_after_the_seeds_steps(cloud, tmp_path):
    for image in list(cloud.sdk().image.images(tag="amphora")):
        cloud.sdk().image.delete_image(image)
    code, rows = check(cloud, *SEED)
    assert code == 1
    assert [(row[0], row[1]) for row in rows] == [("MISSING", what) for what in CHECK_ROWS]
    assert all(row[3] != "-" for row in rows), rows
    # The fix for what --apply makes is the operator's own command line, with --apply.
    assert rows[0][3].startswith("amp-image openstack-config --sriov") and \
        rows[0][3].endswith("--apply")

    apply_seed(cloud)
    image_id = upload_sriov_ready_image(cloud, tmp_path)
    try:
        code, rows = check(cloud, *SEED)
        assert code == 0, rows
        assert {row[0] for row in rows} == {"OK"}
        assert {row[1].split(" (")[0] for row in rows} == set(CHECK_ROWS)
        image_row = next(row for row in rows if row[1].startswith("image tagged"))
        assert image_id in image_row[1] and "iavf, mlx5_core" in image_row[2]

        # Broken by hand, then mended with the fix the table gives, by the real client.
        cloud.openstack("flavor", "set", "--property", "hw_rng:allowed=False",
                        "amphora-sriov")
        code, rows = check(cloud, *SEED)
        wrong = [row for row in rows if row[0] != "OK"]
        assert code == 1 and len(wrong) == 1, rows
        assert wrong[0][:2] == ["WRONG", "compute flavor amphora-sriov"]
        assert "hw_rng:allowed is False, not True" in wrong[0][2]
        mended = cloud.sh(wrong[0][3])
        assert mended.returncode == 0, mended.stderr
        assert check(cloud, *SEED)[0] == 0
    finally:
        cloud.sdk().image.delete_image(image_id)


def test_check_says_when_the_image_is_not_sriov_ready_or_not_amp_images(cloud, tmp_path):
    apply_seed(cloud)
    conn = cloud.sdk()
    for image in list(conn.image.images(tag="amphora")):
        conn.image.delete_image(image)
    by_hand = conn.image.create_image("by-hand", data=b"0" * 512, disk_format="raw",
                                      container_format="bare", tags=["amphora"])
    try:
        code, rows = check(cloud, *SEED)
        image_row = rows[-1]
        assert code == 1 and image_row[0] == "WRONG"
        assert "not uploaded by amp-image" in image_row[2]
    finally:
        conn.image.delete_image(by_hand)


def test_check_asks_the_tagged_images_agent_about_the_controllers_certificate(cloud,
                                                                              tmp_path):
    from amp_image.verify.guide_pki import make_guide_pki

    apply_seed(cloud)
    for image in list(cloud.sdk().image.images(tag="amphora")):
        cloud.sdk().image.delete_image(image)
    image_id = upload_sriov_ready_image(cloud, tmp_path)
    pki = make_guide_pki(tmp_path / "pki", ca_bits=2048)
    try:
        for cert, status in ((pki.client_cert_and_key, "OK"),
                             (pki.other_ca_client_cert_and_key, "WRONG")):
            code, rows = check(cloud, *SEED, "--controller-cert", str(cert),
                               "--ca", str(pki.client_ca))
            row = rows[-1]
            assert row[0] == status and row[1] == f"controller certificate {cert.name}", rows
            assert code == (0 if status == "OK" else 1)
            # The small image's dpkg database has no python3: the strictest agent.
            assert "unknown: assumed" in row[2]
            if status == "WRONG":
                assert row[3] != "-"
    finally:
        cloud.sdk().image.delete_image(image_id)
