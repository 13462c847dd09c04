"""The environment and arguments a plan gives disk-image-create: mirrors, the agent's
source, reproduction (snapshot, pins, SOURCE_DATE_EPOCH) and the image's shape.  Pure:
paths under the work dir are named here, written by workdir.py."""

from __future__ import annotations

import re
from pathlib import Path

from amp_image.builder import constraints
from amp_image.builder.compat import BaseOS
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.validate import snapshot_epoch

# Under the work dir; see root_password_hash.
ROOT_PASSWORD_HASH_FILE = "secrets/root-password.hash"
PACKAGE_PINS_FILE = "package-pins"
SNAPSHOT_ARCHIVE = "http://snapshot.debian.org/archive"


def security_mirror_for(distribution_mirror: str) -> str:
    """Debian's security archive lives beside the main one on the same host."""
    return re.sub(r"/debian/?$", "/debian-security", distribution_mirror.rstrip("/") + "/")


def _snapshot_env(snapshot: str, release: str) -> dict[str, str]:
    main = f"{SNAPSHOT_ARCHIVE}/debian/{snapshot}"
    security = f"{SNAPSHOT_ARCHIVE}/debian-security/{snapshot}"
    # An old snapshot's Release files are past their Valid-Until.
    deb = "deb [check-valid-until=no]"
    return {
        "DIB_DISTRIBUTION_MIRROR": main, "DIB_DEBIAN_SECURITY_MIRROR": security,
        "DIB_APT_SOURCES_CONF": f"default:{deb} {main} {release} main\n"
                                f"updates:{deb} {main} {release}-updates main\n"
                                f"security:{deb} {security} {release}-security main",
        # The cached debootstrap tarball is of today's archive, not the snapshot's.
        "DIB_DEBOOTSTRAP_CACHE": "0", "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "0",
    }


def reproduce_env(opts: BuildOptions, release: str) -> dict[str, str]:
    env: dict[str, str] = {}
    epoch = opts.source_date_epoch
    if opts.snapshot:
        taken = snapshot_epoch(opts.snapshot)  # a malformed timestamp fails the plan
        epoch = taken if epoch is None else epoch
        env.update(_snapshot_env(opts.snapshot, release))
    if opts.package_pins:
        env["DIB_AMP_PACKAGE_PINS"] = str(opts.work_dir / PACKAGE_PINS_FILE)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    return env


def agent_env(opts: BuildOptions, series: constraints.Series | None,
              constraints_file: Path) -> dict[str, str]:
    src = opts.agent_source
    env = {
        "DIB_AMP_AGENT_SOURCE_TYPE": src.kind,
        "DIB_AMP_AGENT_VERSION": opts.agent_version if src.kind in ("pypi", "wheelhouse") else "",
        "DIB_AMP_AGENT_CONSTRAINTS": str(constraints_file),
    }
    # A wheelhouse brings its wheels; the other sources resolve the constraints' pins,
    # some of them without wheels: the element installs a compiler, build-only
    # (amphora-agent/package-installs.yaml names series.build_packages).
    if series is not None and series.build_packages and src.kind != "wheelhouse":
        env["DIB_AMP_AGENT_COMPILE"] = "1"
    if src.kind == "git":
        # Upstream's variables: DIB's source-repositories fetches the repository.
        env["DIB_REPOLOCATION_amphora_agent"] = src.location
        if src.ref:
            env["DIB_REPOREF_amphora_agent"] = src.ref
    elif src.kind != "pypi":
        env["DIB_AMP_AGENT_SOURCE"] = src.location
    return env


def _base_env(opts: BuildOptions, arch: str, release: str,
              elements_dir: Path) -> dict[str, str]:
    return {
        "ARCH": arch,
        "DIB_RELEASE": release,
        "DIB_PYTHON_VERSION": "3",
        "DIB_IMAGE_CACHE": str(opts.cache_dir),
        "TMP_DIR": str(opts.work_dir / "tmp"),
        "ELEMENTS_PATH": ":".join(str(p) for p in (elements_dir, *opts.elements_paths)),
        "DIB_CLOUD_INIT_DATASOURCES": opts.datasources,
        "DIB_OCTAVIA_AMP_USE_NFTABLES": "True" if opts.use_nftables else "False",
        "DIB_GRUB_TIMEOUT": "0",
        "DIB_DEBIAN_COMPONENTS": "main",
        "DIB_AMP_SLIM": "1" if opts.slim else "0",
    }


def _debian_env(opts: BuildOptions, host: HostContext, release: str) -> dict[str, str]:
    env = {
        # Keep the debootstrap result as a tarball in the cache and start from
        # it next time (apt then upgrades it): ~15 s off every warm build.
        "DIB_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "DIB_DISTRIBUTION_MIRROR": host.distribution_mirror,
        "DIB_DEBIAN_SECURITY_MIRROR": security_mirror_for(host.distribution_mirror),
    }
    env.update(reproduce_env(opts, release))
    return env


def _option_env(opts: BuildOptions, host: HostContext) -> dict[str, str]:
    env: dict[str, str] = {}
    if opts.sriov:
        env["DIB_AMP_VF_DRIVERS"] = " ".join(opts.vf_drivers)
    if host.ca_bundle:
        env["DIB_AMP_CA_BUNDLE"] = host.ca_bundle
        if opts.ca_in_image:
            env["DIB_AMP_CA_IN_IMAGE"] = "1"
    if opts.root_password_hash:
        # The hash itself reaches DIB as a file (workdir.py writes it, mode 0600, for
        # the build only): DIB records its environment in the image's manifests.
        env["DIB_AMP_ROOT_PASSWORD_HASH_FILE"] = str(opts.work_dir / ROOT_PASSWORD_HASH_FILE)
        env["DIB_AMP_ROOT_PASSWORD_SSH"] = "1" if opts.root_password_ssh else "0"
    if opts.kernel_package:
        env["DIB_AMP_KERNEL_PACKAGE"] = opts.kernel_package
    if opts.trace:
        env["DIB_DEBUG_TRACE"] = "1"
    return env


def dib_env(opts: BuildOptions, host: HostContext, *, base: BaseOS, arch: str, release: str,
            series: constraints.Series | None, constraints_file: Path,
            elements_dir: Path) -> dict[str, str]:
    """disk-image-create's environment for these options (the host's proxies last)."""
    env = _base_env(opts, arch, release, elements_dir)
    if base.name == "debian":
        env.update(_debian_env(opts, host, release))
    env.update(agent_env(opts, series, constraints_file))
    env.update(_option_env(opts, host))
    env.update(host.proxies)
    return env


def dib_args(opts: BuildOptions, arch: str, image_name: str, image_format: str) -> tuple[str, ...]:
    args = ["-a", arch, "-o", str(opts.work_dir / "out" / image_name), "-t", image_format,
            "--image-size", str(opts.size_gb)]
    if image_format == "qcow2":
        args += ["--qemu-img-options", f"compression_type={opts.compression}"]
    if not opts.use_tmpfs:
        args.append("--no-tmpfs")
    if opts.trace:
        args.append("-x")
    return tuple(args)
