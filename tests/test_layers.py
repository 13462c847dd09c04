"""The layer cache's keys, records, choice and bound (amp_image/builder/layer_keys.py,
layer_inputs.py, early_view.py, env_scan.py and layers.py), on real files and a real
HTTP mirror index; the builds that save and restore layers are in test_layer_builds.py."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from amp_image.builder import dib_elements, layer_keys, layers, locks
from amp_image.builder.early_view import EarlyView, runs_after
from amp_image.builder.layer_inputs import (
    LayerKeyError,
    element_set,
    mirror_index_dates,
)
from amp_image.builder.options import AgentSource, BuildOptions, HostContext
from amp_image.builder.plan import make_plan
from amp_image.cli import main
from amp_image.errors import PlanError

DATES = {"http://mirror/debian/dists/trixie": "Sat, 21 Nov 2026 09:12:01 UTC"}
PACKAGES, AGENT = layer_keys.SAVE_POINTS["packages"], layer_keys.SAVE_POINTS["agent"]
AMP_ELEMENTS = Path(layers.__file__).resolve().parents[1] / "elements"


def make_element(folder: Path, name: str, files: dict[str, str]) -> Path:
    """A real element folder: files by path inside it; hooks (a phase's NN-name) and
    bin/ executable, as DIB wants them."""
    root = folder / name
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        top = rel.split("/")[0]
        hook = top.endswith(".d") and top != "environment.d" and path.suffix != ".sh"
        path.chmod(0o755 if hook or top == "bin" else 0o644)
    return root


@pytest.fixture
def element_dir(tmp_path) -> Path:
    """Elements as DIB finds them: base (which disk-image-create adds to every build),
    amphora-base with a hook before the packages layer's save point, and the hook
    that saves it."""
    folder = tmp_path / "elements"
    make_element(folder, "base", {"root.d/10-bootstrap": "#!/bin/bash\necho root\n",
                                  "README.rst": "base\n"})
    make_element(folder, "amphora-base", {
        "install.d/10-thing": '#!/bin/bash\necho "thing ${DIB_AMP_THING:-}"\n',
        "package-installs.yaml": "haproxy:\n",
        "README.rst": "amphora-base\n",
        "tests/test_thing.py": "def test_thing():\n    pass\n"})
    make_element(folder, "amphora-layer-cache", {
        f"install.d/{PACKAGES}": "#!/bin/bash\necho save packages\n",
        f"install.d/{AGENT}": "#!/bin/bash\necho save agent\n"})
    return folder


ELEMENTS = ("amphora-base", "amphora-layer-cache")


def base_env(tmp_path: Path) -> dict[str, str]:
    bundle = tmp_path / "ca.pem"
    if not bundle.exists():
        bundle.write_text("CA one\n")
    constraints = tmp_path / "upper-constraints.txt"
    if not constraints.exists():
        constraints.write_text("oslo.config===10.0.0\n")
    return {"ARCH": "amd64", "DIB_RELEASE": "trixie", "DIB_AMP_CA_BUNDLE": str(bundle),
            "DIB_AMP_AGENT_VERSION": "19.0.0", "DIB_AMP_AGENT_CONSTRAINTS": str(constraints),
            "DIB_AMP_AGENT_SOURCE_TYPE": "pypi", "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
            "PATH": "/usr/bin", "HOME": "/root"}


def keys(element_dir: Path, env: dict[str, str], *, elements=ELEMENTS, dib="3.43.0",
         dates=None, kind="pypi") -> layer_keys.LayerKeys:
    return layer_keys.layer_keys(elements=elements, element_dirs=[element_dir], dib_version=dib,
                             env=env, agent_source_kind=kind,
                             index_dates=DATES if dates is None else dates)


def test_same_inputs_same_keys(element_dir, tmp_path):
    assert keys(element_dir, base_env(tmp_path)) == keys(element_dir, base_env(tmp_path))


@pytest.mark.parametrize("change", [
    "hook content", "hook mode", "package list", "element list", "release", "architecture",
    "mirror index date", "DIB version", "proxy", "DIB variable a hook reads", "SKIP_BASE",
])
def test_every_input_of_the_packages_layer_changes_both_keys(element_dir, tmp_path, change):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    kwargs = {}
    hook = element_dir / "amphora-base" / "install.d" / "10-thing"
    if change == "hook content":
        hook.write_text("#!/bin/bash\necho other thing\n")
    elif change == "hook mode":
        hook.chmod(0o644)
    elif change == "package list":
        (element_dir / "amphora-base" / "package-installs.yaml").write_text("haproxy:\nsos:\n")
    elif change == "element list":
        make_element(element_dir, "cpu-pinning", {"install.d/30-tuned": "#!/bin/bash\n"})
        kwargs["elements"] = (*ELEMENTS, "cpu-pinning")
    elif change == "release":
        env["DIB_RELEASE"] = "bookworm"
    elif change == "architecture":
        env["ARCH"] = "arm64"
    elif change == "mirror index date":
        kwargs["dates"] = {**DATES, "http://mirror/debian/dists/trixie":
                           "Sun, 22 Nov 2026 09:12:01 UTC"}
    elif change == "DIB version":
        kwargs["dib"] = "3.44.0"
    elif change == "proxy":
        env["http_proxy"] = "http://proxy:3128"
    elif change == "DIB variable a hook reads":
        env["DIB_AMP_THING"] = "1"
    elif change == "SKIP_BASE":  # disk-image-create leaves the base element out
        env["SKIP_BASE"] = "1"
    after = keys(element_dir, env, **kwargs)
    assert after.packages != before.packages
    assert after.agent != before.agent


@pytest.mark.parametrize("change", ["agent version", "constraints content", "CA bundle content"])
def test_an_agent_change_keeps_the_packages_layer(element_dir, tmp_path, change):
    """The agent's version, constraints and the CA bundle pip trusts are staged into the
    hooks (extra-data.d) for the agent's install.d hooks only."""
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    if change == "agent version":
        env["DIB_AMP_AGENT_VERSION"] = "19.0.1"
    elif change == "constraints content":
        Path(env["DIB_AMP_AGENT_CONSTRAINTS"]).write_text("oslo.config===10.0.1\n")
    else:
        Path(env["DIB_AMP_CA_BUNDLE"]).write_text("CA two\n")
    after = keys(element_dir, env)
    assert after.packages == before.packages
    assert after.agent != before.agent


# Elements whose every hook runs after both save points, and nothing else of which is
# read before them: not in either key.
LATE_ELEMENTS = {
    "a later phase's hooks": {"post-install.d/50-check": "#!/bin/bash\necho check\n",
                              "finalise.d/90-tidy": "#!/bin/bash\n",
                              "cleanup.d/10-x": "#!/bin/bash\n",
                              "block-device.d/10-x": "#!/bin/bash\n",
                              "post-root.d/10-x": "#!/bin/bash\n",
                              "pre-finalise.d/10-x": "#!/bin/bash\n"},
    "install.d after the agent's save point": {
        "install.d/80-late": "#!/bin/bash\n",
        # the save hook's number, after it by name
        f"install.d/{AGENT.split('-')[0]}-amp-layer-zz": "#!/bin/bash\n"},
    "an install type's install.d hook after it": {
        "install.d/late-check-source-install/90-build": "#!/bin/bash\n"},
    "package-installs for post-install.d only": {
        "post-install.d/99-remove": "#!/bin/bash\n",
        "package-installs.yaml": "openssh-server:\n  uninstall: True\n"
                                 "  phase: post-install.d\n"},
    "its README, element-deps and tests": {"finalise.d/10-x": "#!/bin/bash\n",
                                           "README.rst": "late-check\n",
                                           "element-deps": "amphora-base\n",
                                           "tests/test_late.py": "def test():\n    pass\n"},
}


@pytest.mark.parametrize("files", list(LATE_ELEMENTS.values()), ids=list(LATE_ELEMENTS))
def test_an_element_whose_hooks_all_run_after_the_save_points_keeps_both_keys(
        element_dir, tmp_path, files):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    make_element(element_dir, "late-check", files)
    after = keys(element_dir, env, elements=(*ELEMENTS, "late-check"))
    assert after == before
    assert "late-check" not in after.inputs["packages"]["elements"]
    # ...and editing those hooks changes no key either.
    for rel in files:
        if rel.split("/")[0].endswith(".d"):
            (element_dir / "late-check" / rel).write_text("#!/bin/bash\necho changed\n")
    assert keys(element_dir, env, elements=(*ELEMENTS, "late-check")) == before


# Elements with something read before the packages layer's save point: in both keys.
EARLY_ELEMENTS = {
    "root.d": {"root.d/60-x": "#!/bin/bash\n"},
    "extra-data.d": {"extra-data.d/50-stage": "#!/bin/bash\n"},
    "pre-install.d": {"pre-install.d/20-x": "#!/bin/bash\n"},
    "install.d before the save point": {"install.d/20-x": "#!/bin/bash\n"},
    "install.d before it, same number": {
        f"install.d/{PACKAGES.split('-')[0]}-aaa": "#!/bin/bash\n"},
    "an install type's install.d hook before it": {
        "install.d/early-check-source-install/20-build": "#!/bin/bash\n"},
    "environment.d": {"environment.d/10-x.bash": "export DIB_X=${DIB_X:-1}\n",
                      "post-install.d/10-x": "#!/bin/bash\n"},
    "static files (install-static, install.d/10)": {"static/etc/x.conf": "x\n"},
    "a bin/ tool": {"bin/tool": "#!/bin/bash\n"},
    "package-installs for install.d": {"package-installs.yaml": "tcpdump:\n",
                                       "post-install.d/10-x": "#!/bin/bash\n"},
    "package-installs, one phase of two before": {
        "package-installs.yaml": "gcc:\n  - phase: post-install.d\n  - phase: pre-install.d\n"},
    "pkg-map": {"pkg-map": "{}\n", "post-install.d/10-x": "#!/bin/bash\n"},
    "svc-map": {"svc-map": "x:\n  default: x\n"},
    "a source repository": {"source-repository-x": "x git /opt/x https://x\n"},
    # dib-run-parts does not run it, but a hook before the save point may source it.
    "a file among later hooks that is not executable": {"post-install.d/10-x": "x() { :; }\n"},
    "a helper file among later hooks": {"post-install.d/functions.sh": "x() { :; }\n"},
}


@pytest.mark.parametrize("files", list(EARLY_ELEMENTS.values()), ids=list(EARLY_ELEMENTS))
def test_an_element_read_before_the_save_point_changes_both_keys(element_dir, tmp_path,
                                                                  files):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    root = make_element(element_dir, "early-check", files)
    if files.get("post-install.d/10-x", "").startswith("x()"):
        (root / "post-install.d/10-x").chmod(0o644)
    after = keys(element_dir, env, elements=(*ELEMENTS, "early-check"))
    assert after.packages != before.packages
    assert after.agent != before.agent
    assert "early-check" in after.inputs["packages"]["elements"]


def test_an_element_between_the_save_points_changes_only_the_agent_key(element_dir,
                                                                       tmp_path):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    make_element(element_dir, "agent-helper", {"install.d/75-venv-extra": "#!/bin/bash\n",
                                               "post-install.d/10-x": "#!/bin/bash\n"})
    after = keys(element_dir, env, elements=(*ELEMENTS, "agent-helper"))
    assert after.packages == before.packages
    assert after.agent != before.agent


@pytest.mark.parametrize("where", ["pre-install.d/06-initramfs", "install.d/10-thing",
                                   "package-installs.yaml", "environment.d/20-x.bash"])
def test_a_change_to_what_is_read_before_the_save_point_changes_both_keys(
        element_dir, tmp_path, where):
    """Both ways, on one element: a hook after the save point changes no key (above),
    its hook before it does; so does its package list and its environment."""
    root = make_element(element_dir, "late-check", {
        "pre-install.d/06-initramfs": "#!/bin/bash\necho modules\n",
        "environment.d/20-x.bash": "export DIB_X=${DIB_X:-1}\n",
        "package-installs.yaml": "kmod:\nudev:\n  phase: post-install.d\n",
        "post-install.d/70-check": "#!/bin/bash\necho check\n"})
    env = base_env(tmp_path)
    elements = (*ELEMENTS, "late-check")
    before = keys(element_dir, env, elements=elements)
    (root / "post-install.d/70-check").write_text("#!/bin/bash\necho another check\n")
    (root / "package-installs.yaml").write_text("kmod:\nudev:\n  phase: post-install.d\n"
                                                "pciutils:\n  phase: post-install.d\n")
    assert keys(element_dir, env, elements=elements) == before
    if where == "package-installs.yaml":
        (root / where).write_text("kmod:\npciutils:\nudev:\n  phase: post-install.d\n")
    elif where == "install.d/10-thing":
        root = element_dir / "amphora-base"
        (root / where).write_text("#!/bin/bash\necho thing two\n")
    else:
        (root / where).write_text((root / where).read_text() + "# edited\n")
    after = keys(element_dir, env, elements=elements)
    assert after.packages != before.packages
    assert after.agent != before.agent


def test_an_element_named_by_a_hook_before_the_save_point_counts(element_dir, tmp_path):
    """A hook may look for an element in IMAGE_ELEMENT: the element counts, though all
    its hooks run later."""
    make_element(element_dir, "late-check", {"post-install.d/50-check": "#!/bin/bash\n"})
    env = base_env(tmp_path)
    before = keys(element_dir, env, elements=(*ELEMENTS, "late-check"))
    make_element(element_dir, "amphora-base", {"pre-install.d/20-x":
                 '#!/bin/bash\n[[ " $IMAGE_ELEMENT " != *" late-check "* ]] || exit 0\n'})
    after = keys(element_dir, env, elements=(*ELEMENTS, "late-check"))
    assert after.inputs["packages"]["elements"]["late-check"] == "named"
    assert keys(element_dir, env, elements=ELEMENTS).packages != after.packages
    assert after.packages != before.packages


# Where a DIB_ variable is read: (hook path, text), and which keys it then changes.
READERS = {
    "only after both save points": ("post-install.d/70-check",
                                    'echo "$DIB_AMP_LATE_VAR"\n', ()),
    "self-defaulted in environment.d, read only after": (
        "environment.d/10-x.bash",
        'export DIB_AMP_LATE_VAR=${DIB_AMP_LATE_VAR:-"a b"}\n', ()),
    "only between the save points": ("install.d/75-x", 'echo "$DIB_AMP_LATE_VAR"\n',
                                     ("agent",)),
    "before the save point": ("pre-install.d/06-x", 'echo "$DIB_AMP_LATE_VAR"\n',
                              ("packages", "agent")),
    "in extra-data.d": ("extra-data.d/50-x", 'echo "$DIB_AMP_LATE_VAR"\n',
                        ("packages", "agent")),
    "in environment.d, deriving another": (
        "environment.d/10-x.bash",
        'export DIB_Y=${DIB_AMP_LATE_VAR:-1}\n', ("packages", "agent")),
    "by a package-installs condition": ("package-installs.yaml",
                                        "gcc:\n  when: DIB_AMP_LATE_VAR = 1\n",
                                        ("packages", "agent")),
    "by a name made from a prefix": ("pre-install.d/06-x",
                                     'name=DIB_AMP_LATE_${kind}\necho "${!name}"\n',
                                     ("packages", "agent")),
    "by listing the environment": ("pre-install.d/06-x", "env | grep ^DIB_ > /x\n",
                                   ("packages", "agent")),
    "by Python, listing the environment": (
        "pre-install.d/06-x", "#!/usr/bin/env python3\nimport os\n"
        "print(dict(os.environ))\n", ("packages", "agent")),
    "by DIB's record of the environment": ("root.d/50-x", 'echo "$DIB_ENV" > /x\n',
                                           ("packages", "agent")),
}


@pytest.mark.parametrize("reader", list(READERS.values()), ids=list(READERS))
def test_a_variable_changes_the_keys_of_the_layers_before_which_it_is_read(
        element_dir, tmp_path, reader):
    where, text, changed = reader
    make_element(element_dir, "vf-check", {where: text, "post-install.d/70-check":
                                           'echo "$DIB_AMP_LATE_VAR"\n'})
    elements = (*ELEMENTS, "vf-check")
    env = base_env(tmp_path)
    env["DIB_AMP_LATE_VAR"] = "iavf"
    before = keys(element_dir, env, elements=elements)
    env["DIB_AMP_LATE_VAR"] = "mlx5_core iavf"
    after = keys(element_dir, env, elements=elements)
    assert (after.packages != before.packages) == ("packages" in changed)
    assert (after.agent != before.agent) == ("agent" in changed)
    del env["DIB_AMP_LATE_VAR"]
    unset = keys(element_dir, env, elements=elements)
    assert (unset.packages != before.packages) == ("packages" in changed)


def test_a_variable_read_only_by_an_element_not_in_the_build_is_no_input(element_dir,
                                                                          tmp_path):
    make_element(element_dir, "vf-check", {"pre-install.d/06-x": 'echo "$DIB_AMP_LATE_VAR"\n'})
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    env["DIB_AMP_LATE_VAR"] = "iavf"
    assert keys(element_dir, env) == before


@pytest.mark.parametrize("edit", ["a test", "a new test", "the README", "byte code"])
def test_element_tests_and_docs_change_no_key(element_dir, tmp_path, edit):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    root = element_dir / "amphora-base"
    if edit == "a test":
        (root / "tests" / "test_thing.py").write_text("def test_thing():\n    assert 1\n")
    elif edit == "a new test":
        make_element(element_dir, "amphora-base", {"tests/fixtures/install.d/10-x": "x\n"})
    elif edit == "the README":
        (root / "README.rst").write_text("amphora-base, documented\n")
    else:
        make_element(element_dir, "amphora-base", {"install.d/__pycache__/x.pyc": "x",
                                                   "bin/tool.pyc": "x"})
    assert keys(element_dir, env) == before


def test_an_element_that_is_not_on_the_path_turns_the_cache_off(element_dir, tmp_path):
    with pytest.raises(LayerKeyError, match="element 'no-such-element' is in none of"):
        keys(element_dir, base_env(tmp_path), elements=(*ELEMENTS, "no-such-element"))


def test_elements_that_no_build_uses_change_no_key(element_dir, tmp_path):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    make_element(element_dir, "unused", {"install.d/10-x": "#!/bin/bash\n"})
    assert keys(element_dir, env) == before


def test_dependencies_count_by_what_they_feed(element_dir, tmp_path):
    """element-deps pulls in elements: one read before the save point changes the keys,
    one whose hooks all run later does not; element-provides stands in for one."""
    env = base_env(tmp_path)
    make_element(element_dir, "deps-only", {"element-deps": "late-dep\n"})
    make_element(element_dir, "late-dep", {"post-install.d/10-x": "#!/bin/bash\n"})
    make_element(element_dir, "early-dep", {"pre-install.d/10-x": "#!/bin/bash\n"})
    before = keys(element_dir, env)
    assert keys(element_dir, env, elements=(*ELEMENTS, "deps-only")) == before
    (element_dir / "deps-only" / "element-deps").write_text("late-dep\nearly-dep\n")
    with_early = keys(element_dir, env, elements=(*ELEMENTS, "deps-only"))
    assert with_early.packages != before.packages
    assert "early-dep" in with_early.inputs["packages"]["elements"]
    (element_dir / "deps-only" / "element-provides").write_text("early-dep\n")
    assert keys(element_dir, env, elements=(*ELEMENTS, "deps-only")) == before


@pytest.mark.parametrize("name", ["DIB_IMAGE_CACHE", "DIB_AMP_ROOT_PASSWORD_HASH_FILE",
                                  "DIB_AMP_LAYER_RESTORE", "PATH", "HOME", "TMP_DIR",
                                  "ELEMENTS_PATH", "DIB_NO_ELEMENT_READS_THIS"])
def test_where_this_build_keeps_things_is_not_a_key_input(element_dir, tmp_path, name):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    env[name] = "/somewhere/else"
    assert keys(element_dir, env) == before


@pytest.mark.parametrize("kind", ["git", "dir"])
def test_agents_that_change_under_their_name_get_no_agent_layer(element_dir, tmp_path, kind):
    assert keys(element_dir, base_env(tmp_path), kind=kind).agent is None


def test_the_same_elements_elsewhere_make_the_same_keys(element_dir, tmp_path):
    """A wheel's venv and a checkout hold the same elements at different paths."""
    copy = tmp_path / "venv" / "site-packages" / "amp_image" / "elements"
    shutil.copytree(element_dir, copy, symlinks=True)
    assert keys(copy, base_env(tmp_path)) == keys(element_dir, base_env(tmp_path))


def real_keys(plan, kind="pypi") -> layer_keys.LayerKeys:
    return layer_keys.layer_keys(elements=plan.elements,
                             element_dirs=[AMP_ELEMENTS, dib_elements.dib_elements_dir()],
                             dib_version="3.43.0", env=plan.env, agent_source_kind=kind,
                             index_dates=DATES)


@pytest.fixture
def real_opts(tmp_path) -> BuildOptions:
    return BuildOptions(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")


def test_real_plans_for_two_agent_releases_share_the_packages_key(real_opts):
    """The plan amp-image makes for 19.0.0 and for 18.0.1 (both trixie)."""
    found = [real_keys(make_plan(replace(real_opts, agent_version=v), HostContext(),
                                 AMP_ELEMENTS)) for v in ("19.0.0", "18.0.1")]
    assert found[0].packages == found[1].packages
    assert found[0].agent != found[1].agent
    git = make_plan(replace(real_opts, agent_source=AgentSource("git", "/src/octavia",
                                                                "refs/tags/x")),
                    HostContext(), AMP_ELEMENTS)
    assert real_keys(git, "git").agent is None
    assert real_keys(git, "git").packages == found[0].packages


def test_real_plan_without_sshd_restores_the_default_layers(real_opts):
    """remove-sshd's hooks and package removal all run in post-install.d."""
    default = real_keys(make_plan(real_opts, HostContext(), AMP_ELEMENTS))
    plan = make_plan(replace(real_opts, sshd=False), HostContext(), AMP_ELEMENTS)
    assert "remove-sshd" in plan.elements
    assert real_keys(plan) == default


@pytest.mark.parametrize("change", [
    # amphora-kernel's pre-install.d/06-initramfs-modules writes them into the initramfs.
    {"vf_drivers": ("mlx5_core", "iavf")},
    {"use_nftables": False},  # nftables or iptables: a package
    {"sriov": False},  # sriov-vf-drivers' packages and environment.d
    {"root_password_hash": "$6$x$y"},  # root-passwd stages the hash in extra-data.d
])
def test_real_plans_that_change_what_is_installed_change_the_packages_key(real_opts, change):
    default = real_keys(make_plan(real_opts, HostContext(), AMP_ELEMENTS))
    changed = real_keys(make_plan(replace(real_opts, **change), HostContext(), AMP_ELEMENTS))
    assert changed.packages != default.packages


def test_the_agents_install_hooks_run_between_the_real_save_points():
    """The save points are amphora-layer-cache's install.d hooks, and dib-run-parts runs
    every install.d hook of amphora-agent after the packages layer's and before the
    agent layer's: the packages layer holds none of the agent's work, the agent layer
    all of it (the install, the prune and the venv's compile)."""
    cache_hooks = AMP_ELEMENTS / "amphora-layer-cache" / "install.d"
    assert sorted(p.name for p in cache_hooks.iterdir()) == sorted(layer_keys.SAVE_POINTS.values())
    agent_hooks = sorted((AMP_ELEMENTS / "amphora-agent" / "install.d").iterdir())
    assert len(agent_hooks) >= 3
    for hook in agent_hooks:
        rel = PurePosixPath("install.d", hook.name)
        assert runs_after(rel, hook, PACKAGES), hook.name
        assert not runs_after(rel, hook, AGENT), hook.name


def test_where_the_real_elements_read_their_variables(real_opts):
    """The scan over amp-image's and DIB's elements in the default build, and DIB's own
    scripts: no whole-environment read, and each variable where a grep finds it."""
    plan = make_plan(replace(real_opts, root_password_hash="$6$x$y"), HostContext(),
                     AMP_ELEMENTS)
    members = element_set(dib_elements.dib_elements(plan.elements, plan.env["ARCH"]),
                                 [AMP_ELEMENTS, dib_elements.dib_elements_dir()])
    packages, agent = EarlyView(members, PACKAGES), EarlyView(members, AGENT)
    assert not packages.everything and not agent.everything
    # amphora-kernel's pre-install.d/06-initramfs-modules; disk-image-create itself
    for name in ("DIB_AMP_VF_DRIVERS", "DIB_AMP_SLIM", "DIB_RELEASE", "DIB_NO_TMPFS"):
        assert packages.reads(name), name
    # root-passwd's and bootloader's post-install.d and finalise.d; amphora-grub's finalise.d (its
    # environment.d only defaults it, which is no read)
    for name in ("DIB_AMP_ROOT_PASSWORD_SSH", "DIB_GRUB_TIMEOUT", "DIB_AMP_ESP_STAGED"):
        assert not agent.reads(name), name
    # the agent's install.d/75, between the save points
    assert not packages.reads("DIB_AMP_CA_IN_IMAGE") and agent.reads("DIB_AMP_CA_IN_IMAGE")
    assert packages.reads("DIB_INSTALLTYPE_anything")  # install-types' DIB_INSTALLTYPE_$x


class _Mirror(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    for suite, date in (("trixie", "Sat, 21 Nov 2026 09:12:01 UTC"),
                        ("trixie-updates", "Sat, 21 Nov 2026 20:00:00 UTC")):
        (root / "debian" / "dists" / suite).mkdir(parents=True)
        (root / "debian" / "dists" / suite / "InRelease").write_text(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n"
            f"Suite: {suite}\nDate: {date}\nSHA256:\n" + " x 1 y\n" * 5000)
    (root / "debian-security" / "dists" / "trixie-security").mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Mirror(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_mirror_index_dates_are_read_from_each_suites_inrelease(mirror):
    url, root = mirror
    (root / "debian-security/dists/trixie-security/InRelease").write_text(
        "Origin: Debian\nDate: Mon, 23 Nov 2026 01:00:00 UTC\n")
    dates = mirror_index_dates({"DIB_RELEASE": "trixie",
                                       "DIB_DISTRIBUTION_MIRROR": f"{url}/debian/",
                                       "DIB_DEBIAN_SECURITY_MIRROR": f"{url}/debian-security"})
    assert dates == {f"{url}/debian/dists/trixie": "Sat, 21 Nov 2026 09:12:01 UTC",
                     f"{url}/debian/dists/trixie-updates": "Sat, 21 Nov 2026 20:00:00 UTC",
                     f"{url}/debian-security/dists/trixie-security":
                         "Mon, 23 Nov 2026 01:00:00 UTC"}


def test_an_unreadable_mirror_index_is_a_key_error_naming_it(mirror):
    url, _ = mirror
    with pytest.raises(LayerKeyError, match="trixie-security/InRelease"):
        mirror_index_dates({"DIB_RELEASE": "trixie",
                                   "DIB_DISTRIBUTION_MIRROR": f"{url}/debian",
                                   "DIB_DEBIAN_SECURITY_MIRROR": f"{url}/debian-security"})


LAYER_KEYS = layer_keys.LayerKeys("p" * 64, "a" * 64, {"why": "test"})


def staged(tmp_path: Path, name: str, size: int = 4096) -> Path:
    path = tmp_path / "out" / f"{name}.tar.zst"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def test_a_stored_layer_is_found_and_its_use_recorded(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    stored = cache.store("packages", LAYER_KEYS.packages, staged(tmp_path, "packages"), {})
    assert not (tmp_path / "out" / "packages.tar.zst").exists()
    assert oct(cache.dir.stat().st_mode & 0o777) == "0o700"
    found = cache.lookup("packages", LAYER_KEYS.packages)
    assert found is not None and found.path == stored.path and found.size == 4096
    assert found.last_used >= stored.last_used
    assert cache.lookup("packages", "0" * 64) is None


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "record gone",
                                    "record garbled"])
def test_a_damaged_layer_is_removed_never_restored(tmp_path, damage):
    said = []
    cache = layers.LayerCache(tmp_path / "cache", emit=said.append)
    layer = cache.store("packages", LAYER_KEYS.packages, staged(tmp_path, "packages"), {})
    record = layer.path.with_name(layer.path.name.removesuffix(".tar.zst") + ".json")
    data = bytearray(layer.path.read_bytes())
    if damage == "flipped byte":
        data[1000] ^= 0xFF
        layer.path.write_bytes(data)
    elif damage == "truncated":
        layer.path.write_bytes(data[:2048])
    elif damage == "record gone":
        record.unlink()
    else:
        record.write_text("{not json")
    choice = cache.choose(LAYER_KEYS, use=True)
    assert choice.restore is None and choice.save == ("packages", "agent")
    assert not layer.path.exists() and not record.exists()
    assert len(said) == 1 and "damaged" in said[0] and "makes it again" in said[0]


def test_the_deepest_sound_layer_is_restored(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    assert cache.choose(LAYER_KEYS, use=True) == layers.Choice(None, ("packages", "agent"))
    cache.store("packages", LAYER_KEYS.packages, staged(tmp_path, "packages"), {})
    choice = cache.choose(LAYER_KEYS, use=True)
    assert choice.restore.name == "packages" and choice.save == ("agent",)
    assert choice.env(tmp_path / "out") == {
        "DIB_AMP_LAYER_RESTORE": str(choice.restore.path),
        "DIB_AMP_LAYER_RESTORE_POINT": "74-amp-layer-packages",
        "DIB_AMP_LAYER_SAVE": "agent", "DIB_AMP_LAYER_OUT": str(tmp_path / "out")}
    cache.store("agent", LAYER_KEYS.agent, staged(tmp_path, "agent"), {})
    choice = cache.choose(LAYER_KEYS, use=True)
    assert choice.restore.name == "agent" and choice.save == ()
    assert choice.env(tmp_path / "out")["DIB_AMP_LAYER_RESTORE_POINT"] == "78-amp-layer-agent"
    assert "DIB_AMP_LAYER_SAVE" not in choice.env(tmp_path / "out")


def test_no_cache_restores_nothing_and_saves_every_layer(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    cache.store("packages", LAYER_KEYS.packages, staged(tmp_path, "packages"), {})
    assert cache.choose(LAYER_KEYS, use=False) == layers.Choice(None, ("packages", "agent"))
    no_agent_layer = layer_keys.LayerKeys(LAYER_KEYS.packages, None)
    assert cache.choose(no_agent_layer, use=False).save == ("packages",)


def test_prune_keeps_the_most_recently_used_within_the_bound(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    made = []
    for number in range(4):
        key = str(number) * 64
        made.append(cache.store("packages", key, staged(tmp_path, "packages", 1 << 20), {}))
    cache.lookup("packages", "0" * 64)  # now the most recently used
    removed = cache.prune(2 << 20, keep=[made[1].path])
    assert sorted(layer.key[0] for layer in removed) == ["2", "3"]
    assert sorted(layer.key[0] for layer in cache.layers()) == ["0", "1"]
    assert cache.prune(0) and cache.layers() == []
    assert list(cache.dir.iterdir()) == []


def test_prune_removes_halves_of_layers(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    layer = cache.store("packages", "1" * 64, staged(tmp_path, "packages"), {})
    other = cache.store("agent", "2" * 64, staged(tmp_path, "agent"), {})
    layer.path.unlink()
    other.path.with_name(other.path.name.removesuffix(".tar.zst") + ".json").unlink()
    (cache.dir / "agent-3.tar.zst.partial").write_text("half")
    cache.prune(4 << 30)
    assert list(cache.dir.iterdir()) == []


@pytest.mark.parametrize(("text", "size"), [("4G", 4 << 30), ("500M", 500 << 20), ("0", 0),
                                            ("1.5GiB", 3 << 29), ("2048", 2048)])
def test_sizes(text, size):
    assert layers.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1G", ""])
def test_a_bad_size_is_a_one_line_error(text):
    with pytest.raises(PlanError, match="use e.g. 4G"):
        layers.parse_size(text)


def test_cache_prune_and_list_on_the_command_line(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    for number in range(3):
        cache.store("packages", str(number) * 64, staged(tmp_path, "packages", 1 << 20), {})
    runner = CliRunner()
    listed = runner.invoke(main, ["cache", "list", "--cache-dir", str(tmp_path / "cache")])
    assert listed.exit_code == 0 and listed.output.splitlines()[-1] == "3 layers, 3.0 MiB"
    kept = runner.invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path / "cache"),
                                "--max-size", "2M"])
    assert kept.exit_code == 0 and kept.output == "removed 1 layers, 1.0 MiB\n"
    emptied = runner.invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path / "cache")])
    assert emptied.exit_code == 0 and cache.layers() == []


def test_cache_prune_leaves_a_cache_in_use_alone(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    cache.store("packages", "1" * 64, staged(tmp_path, "packages"), {})
    with locks.package_cache(tmp_path / "cache") as user:
        assert user == ""
        result = subprocess.run([str(Path(sys.executable).parent / "amp-image"), "cache",
                                 "prune", "--cache-dir", str(tmp_path / "cache")],
                                capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("amp-image: error: the cache ")
    assert "is in use by amp-image PID" in result.stderr and len(result.stderr.splitlines()) == 1
    assert len(cache.layers()) == 1


def test_a_bad_cache_size_is_refused_before_anything(tmp_path):
    result = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path),
                                       "--max-size", "lots"])
    assert result.exit_code == 1 and "size 'lots' is not a size" in result.output
    built = CliRunner().invoke(main, ["build", "--dry-run", "--cache-max-size", "lots"])
    assert built.exit_code != 0 and "size 'lots' is not a size" in built.output


def test_cache_prune_of_a_cache_with_no_layers_touches_nothing(tmp_path):
    missing = tmp_path / "no-cache-here"
    result = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(missing)])
    assert result.exit_code == 0 and result.output == f"no layers in {missing}\n"
    assert not missing.exists()
