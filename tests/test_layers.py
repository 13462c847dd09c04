"""The layer cache's keys, records, choice and bound (amp_image/build/layers.py), on real
files and a real HTTP mirror index; the builds that save and restore layers are in
test_layer_builds.py."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from amp_image.build import layers, locks
from amp_image.build.plan import AgentSource, BuildOptions, HostContext, make_plan
from amp_image.cli import main
from amp_image.errors import PlanError

DATES = {"http://mirror/debian/dists/trixie": "Sat, 21 Nov 2026 09:12:01 UTC"}


@pytest.fixture
def element_dir(tmp_path) -> Path:
    folder = tmp_path / "elements"
    (folder / "amphora-base" / "install.d").mkdir(parents=True)
    hook = folder / "amphora-base" / "install.d" / "10-thing"
    hook.write_text("#!/bin/bash\necho thing\n")
    hook.chmod(0o755)
    (folder / "amphora-base" / "package-installs.yaml").write_text("haproxy:\n")
    return folder


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


def keys(element_dir: Path, env: dict[str, str], *, elements=("debian-minimal", "vm"),
         dib="3.43.0", dates=None, kind="pypi") -> layers.LayerKeys:
    return layers.layer_keys(elements=elements, element_dirs=[element_dir], dib_version=dib,
                             env=env, agent_source_kind=kind,
                             index_dates=DATES if dates is None else dates)


def test_same_inputs_same_keys(element_dir, tmp_path):
    assert keys(element_dir, base_env(tmp_path)) == keys(element_dir, base_env(tmp_path))


@pytest.mark.parametrize("change", [
    "hook content", "hook mode", "package list", "element list", "release", "architecture",
    "mirror index date", "DIB version", "CA bundle content", "proxy", "new DIB variable",
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
        kwargs["elements"] = ("debian-minimal", "vm", "cpu-pinning")
    elif change == "release":
        env["DIB_RELEASE"] = "bookworm"
    elif change == "architecture":
        env["ARCH"] = "arm64"
    elif change == "mirror index date":
        kwargs["dates"] = {**DATES, "http://mirror/debian/dists/trixie":
                           "Sun, 22 Nov 2026 09:12:01 UTC"}
    elif change == "DIB version":
        kwargs["dib"] = "3.44.0"
    elif change == "CA bundle content":
        Path(env["DIB_AMP_CA_BUNDLE"]).write_text("CA two\n")
    elif change == "proxy":
        env["http_proxy"] = "http://proxy:3128"
    elif change == "new DIB variable":
        env["DIB_AMP_VF_DRIVERS"] = "iavf"
    after = keys(element_dir, env, **kwargs)
    assert after.packages != before.packages
    assert after.agent != before.agent


@pytest.mark.parametrize("change", ["agent version", "constraints content"])
def test_an_agent_change_keeps_the_packages_layer(element_dir, tmp_path, change):
    env = base_env(tmp_path)
    before = keys(element_dir, env)
    if change == "agent version":
        env["DIB_AMP_AGENT_VERSION"] = "19.0.1"
    else:
        Path(env["DIB_AMP_AGENT_CONSTRAINTS"]).write_text("oslo.config===10.0.1\n")
    after = keys(element_dir, env)
    assert after.packages == before.packages
    assert after.agent != before.agent


@pytest.mark.parametrize("name", ["DIB_IMAGE_CACHE", "DIB_AMP_ROOT_PASSWORD_HASH_FILE",
                                  "DIB_AMP_LAYER_RESTORE", "PATH", "HOME", "TMP_DIR",
                                  "ELEMENTS_PATH"])
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


def test_real_plans_for_two_agent_releases_share_the_packages_key(tmp_path):
    """The plan amp-image makes for 19.0.0 and for 18.0.1 (both trixie)."""
    opts = BuildOptions(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")
    elements_dir = Path(layers.__file__).resolve().parents[1] / "elements"
    plans = [make_plan(replace(opts, agent_version=v), HostContext(), elements_dir)
             for v in ("19.0.0", "18.0.1")]
    found = [layers.layer_keys(elements=p.elements, element_dirs=[elements_dir],
                               dib_version="3.43.0", env=p.env, agent_source_kind="pypi",
                               index_dates=DATES) for p in plans]
    assert found[0].packages == found[1].packages
    assert found[0].agent != found[1].agent
    git = make_plan(replace(opts, agent_source=AgentSource("git", "/src/octavia", "refs/tags/x")),
                    HostContext(), elements_dir)
    assert layers.layer_keys(elements=git.elements, element_dirs=[elements_dir],
                             dib_version="3.43.0", env=git.env, agent_source_kind="git",
                             index_dates=DATES).agent is None


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
    dates = layers.mirror_index_dates({"DIB_RELEASE": "trixie",
                                       "DIB_DISTRIBUTION_MIRROR": f"{url}/debian/",
                                       "DIB_DEBIAN_SECURITY_MIRROR": f"{url}/debian-security"})
    assert dates == {f"{url}/debian/dists/trixie": "Sat, 21 Nov 2026 09:12:01 UTC",
                     f"{url}/debian/dists/trixie-updates": "Sat, 21 Nov 2026 20:00:00 UTC",
                     f"{url}/debian-security/dists/trixie-security":
                         "Mon, 23 Nov 2026 01:00:00 UTC"}


def test_an_unreadable_mirror_index_is_a_key_error_naming_it(mirror):
    url, _ = mirror
    with pytest.raises(layers.LayerKeyError, match="trixie-security/InRelease"):
        layers.mirror_index_dates({"DIB_RELEASE": "trixie",
                                   "DIB_DISTRIBUTION_MIRROR": f"{url}/debian",
                                   "DIB_DEBIAN_SECURITY_MIRROR": f"{url}/debian-security"})


LAYER_KEYS = layers.LayerKeys("p" * 64, "a" * 64, {"why": "test"})


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
    assert choice.env(tmp_path / "out")["DIB_AMP_LAYER_RESTORE_POINT"] == "77-amp-layer-agent"
    assert "DIB_AMP_LAYER_SAVE" not in choice.env(tmp_path / "out")


def test_no_cache_restores_nothing_and_saves_every_layer(tmp_path):
    cache = layers.LayerCache(tmp_path / "cache")
    cache.store("packages", LAYER_KEYS.packages, staged(tmp_path, "packages"), {})
    assert cache.choose(LAYER_KEYS, use=False) == layers.Choice(None, ("packages", "agent"))
    no_agent_layer = layers.LayerKeys(LAYER_KEYS.packages, None)
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
