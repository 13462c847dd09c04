"""amphora-layer-cache's hooks without a build: a layer saved from a scratch root
(AMP_IMAGE_ROOT), exported, and restored into an empty one with real tar and zstd,
against a hooks folder laid out as DIB's TMP_HOOKS_PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ELEMENT = Path(__file__).resolve().parent.parent
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep


def run(script: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env})


def write(path: Path, text: str = "x\n", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def root(tmp_path):
    """A root tree as it stands at install.d/74: the kernel's file systems and DIB's
    scratch mounted on it, as in the chroot, over the tree's own /dev nodes."""
    root = tmp_path / "root"
    write(root / "etc/hostname", "amphora\n")
    write(root / "etc/resolv.conf", "nameserver 192.0.2.53  # DIB's stand-in\n", 0o777)
    write(root / "etc/resolv.conf.ORIG", "# the image's own\n", 0o644)
    ping = write(root / "usr/bin/ping", "#!/bin/sh\n", 0o755)
    os.setxattr(ping, "security.capability", CAPABILITY)
    os.symlink("usr/bin", root / "bin")
    write(root / "opt/amphora-agent-venv/bin/python", "venv\n", 0o755)
    write(root / "run/sshd/keep")
    for scratch in ("var/cache/apt/archives/haproxy_3.0_amd64.deb",
                    "opt/amphora-agent/setup.py", "etc/dib-source-repositories"):
        write(root / scratch)
    (root / "var/cache/apt/archives/partial").mkdir()
    for folder in ("proc", "sys", "dev", "tmp/in_target.d"):
        (root / folder).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    os.mknod(root / "dev/null", 0o20666, os.makedev(1, 3))
    mounts = []
    for folder in ("proc", "sys", "dev", "tmp/in_target.d"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=555", "scratch", root / folder],
                       check=True)
        mounts.append(root / folder)
        write(root / folder / "mounted-over")
    yield root
    for mount in reversed(mounts):
        subprocess.run(["umount", mount], check=True)


def hooks_folder(tmp_path: Path) -> Path:
    """TMP_HOOKS_PATH: this element's hooks and others around them, one a link into
    an element (cp -a copies links as links)."""
    hooks = tmp_path / "hooks"
    for folder in ("root.d", "extra-data.d", "install.d", "post-root.d"):
        shutil.copytree(ELEMENT / folder, hooks / folder, dirs_exist_ok=True)
    shutil.copy(ELEMENT / "amp-layer-cache-functions", hooks)
    for hook in ("root.d/08-debootstrap", "root.d/11-pip-cache", "root.d/50-shared-apt-cache",
                 "root.d/50-block-daemons", "pre-install.d/01-dib-python",
                 "pre-install.d/99-apt-get-update", "install.d/01-package-installs",
                 "install.d/75-amphora-agent-install", "install.d/76-amphora-agent-prune",
                 "install.d/77-amphora-agent-venv-compile", "install.d/99-package-uninstalls",
                 "extra-data.d/98-source-repositories"):
        write(hooks / hook, f"#!/bin/bash\necho {hook} ran\n", 0o755)
    elsewhere = write(tmp_path / "dib/elements/debian-minimal/root.d/75-debian-minimal-baseinstall",
                      "#!/bin/bash\necho the real baseinstall\n", 0o755)
    os.symlink(elsewhere, hooks / "root.d/75-debian-minimal-baseinstall")
    return hooks


def save_and_export(root: Path, out: Path, name: str = "packages") -> Path:
    hook = {"packages": "74-amp-layer-packages", "agent": "78-amp-layer-agent"}[name]
    saved = run(ELEMENT / "install.d" / hook, AMP_IMAGE_ROOT=str(root),
                DIB_AMP_LAYER_SAVE="packages agent")
    assert saved.returncode == 0, saved.stderr
    assert (root / f"var/cache/amp-layer/{name}.tar").is_file()
    # The bind mount tar read from is gone, and its folder with it.
    assert not (root / "var/cache/amp-layer/view").exists()
    exported = run(ELEMENT / "post-root.d/05-amp-layer-export", TMP_MOUNT_PATH=str(root),
                   DIB_AMP_LAYER_OUT=str(out))
    assert exported.returncode == 0, exported.stderr
    assert not (root / "var/cache/amp-layer").exists()
    assert [p.name for p in out.iterdir()] == [f"{name}.tar.zst"]
    return out / f"{name}.tar.zst"


def hook_text(hooks: Path, hook: str) -> str:
    return (hooks / hook).read_text()


def skipped(hooks: Path, hook: str) -> bool:
    path = hooks / hook
    return (not path.is_symlink() and os.access(path, os.X_OK)
            and "skipped: the restored layer holds its work" in path.read_text())


def test_a_saved_layer_restores_the_tree_without_mounts_or_scratch(tmp_path, root):
    layer = save_and_export(root, tmp_path / "out")
    assert not (root / "var/cache/amp-layer").exists()
    hooks = hooks_folder(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    restored = run(hooks / "root.d/07-amp-layer-restore", TARGET_ROOT=str(target),
                   TMP_HOOKS_PATH=str(hooks), DIB_AMP_LAYER_RESTORE=str(layer))
    assert restored.returncode == 0, restored.stderr
    assert (target / "etc/hostname").read_text() == "amphora\n"
    assert os.getxattr(target / "usr/bin/ping", "security.capability") == CAPABILITY
    assert os.readlink(target / "bin") == "usr/bin"
    assert (target / "opt/amphora-agent-venv/bin/python").is_file()
    assert (target / "run/sshd/keep").is_file()
    # What lay under the mounts, not what was mounted there.
    assert sorted(p.name for p in (target / "dev").iterdir()) == ["null"]
    assert os.major((target / "dev/null").stat().st_rdev) == 1
    for folder in ("proc", "sys"):
        assert list((target / folder).iterdir()) == [], folder
        assert oct((target / folder).stat().st_mode & 0o7777) == "0o755", folder
    assert list((target / "tmp").iterdir()) == []
    assert oct((target / "tmp").stat().st_mode & 0o7777) == "0o1777"
    # The image's resolv.conf, not DIB's stand-in: DIB sets that aside again.
    assert (target / "etc/resolv.conf").read_text() == "# the image's own\n"
    assert oct((target / "etc/resolv.conf").stat().st_mode & 0o777) == "0o644"
    assert not (target / "etc/resolv.conf.ORIG").exists()
    assert [p.name for p in (target / "var/cache/apt/archives").iterdir()] == ["partial"]
    assert not (target / "opt/amphora-agent").exists()
    assert not (target / "etc/dib-source-repositories").exists()
    assert not (target / "var/cache/amp-layer").exists()


def test_restoring_turns_the_root_hooks_that_made_the_tree_into_no_ops(tmp_path, root):
    layer = save_and_export(root, tmp_path / "out")
    hooks = hooks_folder(tmp_path)
    link_target = os.readlink(hooks / "root.d/75-debian-minimal-baseinstall")
    target = tmp_path / "target"
    target.mkdir()
    run(hooks / "root.d/07-amp-layer-restore", TARGET_ROOT=str(target),
        TMP_HOOKS_PATH=str(hooks), DIB_AMP_LAYER_RESTORE=str(layer))
    for hook in ("08-debootstrap", "50-block-daemons", "75-debian-minimal-baseinstall"):
        assert skipped(hooks, f"root.d/{hook}"), hook
    # The element's copy behind the link is untouched: the link was replaced.
    assert Path(link_target).read_text() == "#!/bin/bash\necho the real baseinstall\n"
    for kept in ("11-pip-cache", "50-shared-apt-cache"):
        assert hook_text(hooks, f"root.d/{kept}").endswith(" ran\n"), kept
    assert not skipped(hooks, "root.d/07-amp-layer-restore")
    result = run(hooks / "root.d/08-debootstrap")
    assert result.returncode == 0 and "skipped" in result.stdout


@pytest.mark.parametrize(("point", "skipped_install", "kept_install"), [
    ("74-amp-layer-packages", ["01-package-installs", "74-amp-layer-packages"],
     ["75-amphora-agent-install", "76-amphora-agent-prune", "77-amphora-agent-venv-compile",
      "78-amp-layer-agent", "99-package-uninstalls"]),
    ("78-amp-layer-agent", ["01-package-installs", "74-amp-layer-packages",
                            "75-amphora-agent-install", "76-amphora-agent-prune",
                            "77-amphora-agent-venv-compile", "78-amp-layer-agent"],
     ["99-package-uninstalls"]),
])
def test_pre_install_and_install_run_only_after_the_restored_layer(tmp_path, point,
                                                                    skipped_install,
                                                                    kept_install):
    hooks = hooks_folder(tmp_path)
    result = run(hooks / "extra-data.d/99-zz-amp-layer-skip", TMP_HOOKS_PATH=str(hooks),
                 DIB_AMP_LAYER_RESTORE="/cache/layer.tar.zst", DIB_AMP_LAYER_RESTORE_POINT=point)
    assert result.returncode == 0, result.stderr
    assert skipped(hooks, "pre-install.d/01-dib-python")
    assert skipped(hooks, "pre-install.d/99-apt-get-update")
    for hook in skipped_install:
        assert skipped(hooks, f"install.d/{hook}"), hook
    for hook in kept_install:
        assert not skipped(hooks, f"install.d/{hook}"), hook
    assert not skipped(hooks, "extra-data.d/98-source-repositories")


def test_a_restore_point_the_build_lacks_fails(tmp_path):
    hooks = hooks_folder(tmp_path)
    result = run(hooks / "extra-data.d/99-zz-amp-layer-skip", TMP_HOOKS_PATH=str(hooks),
                 DIB_AMP_LAYER_RESTORE="/cache/layer.tar.zst",
                 DIB_AMP_LAYER_RESTORE_POINT="76-no-such-hook")
    assert result.returncode == 1
    assert "no hook install.d/76-no-such-hook" in result.stderr
    assert not skipped(hooks, "install.d/01-package-installs")


def test_without_amp_image_asking_the_hooks_do_nothing(tmp_path, root):
    hooks = hooks_folder(tmp_path)
    before = {p: p.read_bytes() for p in hooks.rglob("*") if p.is_file()}
    for script in ("root.d/07-amp-layer-restore", "extra-data.d/99-zz-amp-layer-skip"):
        result = run(hooks / script, TARGET_ROOT=str(root), TMP_HOOKS_PATH=str(hooks))
        assert result.returncode == 0, result.stderr
    saved = run(ELEMENT / "install.d/74-amp-layer-packages", AMP_IMAGE_ROOT=str(root))
    assert saved.returncode == 0 and not (root / "var/cache/amp-layer").exists()
    assert {p: p.read_bytes() for p in hooks.rglob("*") if p.is_file()} == before


def test_only_the_layers_asked_for_are_saved(tmp_path, root):
    result = run(ELEMENT / "install.d/78-amp-layer-agent", AMP_IMAGE_ROOT=str(root),
                 DIB_AMP_LAYER_SAVE="packages")
    assert result.returncode == 0 and not (root / "var/cache/amp-layer").exists()
    save_and_export(root, tmp_path / "out", "agent")


def test_a_missing_layer_file_fails_the_restore(tmp_path):
    hooks = hooks_folder(tmp_path)
    result = run(hooks / "root.d/07-amp-layer-restore", TARGET_ROOT=str(tmp_path),
                 TMP_HOOKS_PATH=str(hooks), DIB_AMP_LAYER_RESTORE=str(tmp_path / "gone.zst"))
    assert result.returncode == 1 and "no layer at" in result.stderr
    assert not skipped(hooks, "root.d/08-debootstrap")
