"""The pure halves of publish --rotate and openstack-config --check: which images
rotate, and what the audit says of a cloud's state (plain data in; the real cloud's
tests are tests/test_cloud_*.py)."""

from __future__ import annotations

from amp_image.cloud import audit
from amp_image.cloud.options import AmphoraFlavorOptions
from amp_image.cloud.rotation import GlanceImage, extras

OURS = dict(name="amp", owner="p1", tags=("amphora",), record="sha")


def test_rotation_keeps_the_newest_and_never_names_anothers_image():
    images = [
        GlanceImage("a", created_at="2026-01-01", **OURS),
        GlanceImage("b", created_at="2026-03-01", **OURS),
        GlanceImage("c", created_at="2026-02-01", **OURS),
        GlanceImage("by-hand", created_at="2025-01-01", **{**OURS, "record": ""}),
        GlanceImage("other-project", created_at="2025-01-01", **{**OURS, "owner": "p2"}),
        GlanceImage("other-name", created_at="2025-01-01", **{**OURS, "name": "x"}),
        GlanceImage("untagged", created_at="2025-01-01", **{**OURS, "tags": ()}),
    ]
    assert [i.id for i in extras(images, name="amp", tag="amphora", owner="p1", keep=1)] == \
        ["c", "a"]
    assert extras(images, name="amp", tag="amphora", owner="p1", keep=3) == []


SEED = AmphoraFlavorOptions(hosts=("h1",), project="service", sriov_vip=True)


def complete_state() -> audit.CloudState:
    return audit.CloudState(
        aggregate={"hosts": ["h1"], "metadata": {"sriov-nic": "true"}},
        flavor={"id": "amphora-sriov", "is_public": False, "access": ["pid"],
                "extra_specs": {"hw_rng:allowed": "True",
                                "aggregate_instance_extra_specs:sriov-nic": "true"}},
        project_id="pid",
        profile={"id": "prof", "provider_name": "amphora", "flavor_data":
                 '{"compute_flavor": "amphora-sriov", "sriov_vip": true, '
                 '"allow_member_sriov": false}'},
        lb_flavor={"is_enabled": True, "flavor_profile_id": "prof"},
        images=[{"id": "img", "name": "amp", "created_at": "2026",
                 "properties": {"amp_image_sha256": "s", "amp_image_vf_drivers": "iavf"}}])


def test_a_complete_cloud_is_all_ok():
    found = audit.findings(SEED, complete_state())
    assert {f.status for f in found} == {audit.OK}, found


def test_each_gap_is_one_finding_with_a_fix():
    state = complete_state()
    state.aggregate["hosts"] = []
    state.flavor["extra_specs"]["aggregate_instance_extra_specs:sriov-nic"] = "false"
    state.flavor["access"] = []
    state.lb_flavor["is_enabled"] = False
    state.images[0]["properties"]["amp_image_vf_drivers"] = ""
    bad = [f for f in audit.findings(SEED, state) if f.status != audit.OK]
    details = [f.detail for f in bad]
    assert details == [
        "lacks host h1",
        "extra specs differ: aggregate_instance_extra_specs:sriov-nic is false, not true",
        "aggregate_instance_extra_specs:sriov-nic match no metadata of aggregate "
        "amphora-sriov: amphorae cannot be scheduled",
        "project service has no access", "is disabled",
        "has no VF drivers: not SR-IOV ready"]
    assert all(f.fix for f in bad)
    assert "openstack flavor set --property aggregate_instance_extra_specs:sriov-nic=true " \
           "amphora-sriov" in [f.fix for f in bad]
