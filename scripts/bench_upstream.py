"""Octavia's own image build, for ``scripts/bench --upstream``: its elements and its
``diskimage-create.sh``, from the octavia sdist of the agent release amp-image's image
carries, run on this host with the fewest workarounds that let them build here
(``WORKAROUNDS``, each with why; docs/performance.md lists them too).

The upstream build runs as an operator runs it: ``diskimage-create.sh -o OUTPUT -w WORK
-c CACHE`` with diskimage-builder on PATH, the agent and its constraints through the
variables the script and its elements document.  The bench times it like amp-image's
build (cold: an empty cache; warm: the same inputs again).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from amp_image.builder import constraints, host
from amp_image.builder.dib_env import LEAKY_ENV_PREFIXES
from amp_image.builder.environment import security_mirror_for
from amp_image.builder.shims import install_shims
from amp_image.verify import octavia_source

RELEASE = "bookworm"
BENCH_ELEMENTS = Path(__file__).resolve().parent / "bench-elements"
GRUB_ELEMENT = Path(__file__).resolve().parent.parent / "amp_image" / "elements" / "amphora-grub"
# Each variable or step the upstream build gets beyond its own defaults, and why.
WORKAROUNDS = {
    f"AMP_BASEOS=debian-minimal, DIB_RELEASE={RELEASE}":
        "Ubuntu's archive (upstream's default base, noble) is unreachable here; `-i` offers "
        "no Debian, the script's AMP_BASEOS variable does",
    "DIB_REPOLOCATION_amphora_agent and DIB_REPOREF_amphora_agent":
        "opendev.org is unreachable: the agent from a local git repository of the same "
        "sdist, tagged with its version (what the amphora-agent element clones)",
    "DIB_REPOLOCATION_octavia_lib and DIB_REPOREF_octavia_lib":
        "opendev.org is unreachable: octavia-lib (the octavia-lib element clones it) from "
        "a local git repository of its sdist at the version the constraints pin",
    "DIB_REPOLOCATION_upper_constraints":
        "opendev.org is unreachable: the series' upper constraints that amp-image vendors "
        "(the same file amp-image's build uses)",
    "DIB_DISTRIBUTION_MIRROR and DIB_DEBIAN_SECURITY_MIRROR":
        "DIB's default Debian security mirror answers HTTP 400 here: the host's own "
        "mirror and its debian-security path",
    "DIB_PYTHON_VERSION=3": "diskimage-builder sets 2 for any Debian release",
    "amp-image's kpartx, dmsetup and losetup shims first on PATH":
        "this host has no device-mapper, so DIB cannot map the image's partitions",
    "the host's PIP_*, PYTHON*, VIRTUAL_ENV, CONDA* and PYENV* variables unset":
        "host settings that would reach pip in the chroot (PIP_CERT names the host's "
        "bundle path, which in the chroot is Debian's bundle without the proxy's CA), "
        "kept out as amp-image keeps them out of its own DIB run",
    "REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE unset":
        "they reach the chroot too, where the host's path names Debian's own bundle, and "
        "requests lets REQUESTS_CA_BUNDLE override the cert pip is given",
    "DIB_LOCAL_ELEMENTS=host-ca-bundle, DIB_LOCAL_ELEMENTS_PATH=scripts/bench-elements, "
    "DIB_HOST_CA_BUNDLE":
        "this host reaches PyPI through a TLS-inspecting proxy whose CA only the host "
        "trusts; upstream's elements have no CA option, so pip in the chroot fails "
        "CERTIFICATE_VERIFY_FAILED. The element stages the host's bundle for pip before "
        "the agent's install and removes it before the image is made",
    "DIB_LOCAL_ELEMENTS=amphora-grub (amp-image's element, copied into the bench's work "
    "folder) on a host without device-mapper":
        "partitions mapped through loop devices make grub-mkconfig write 'loopback loop1 "
        "/loop0' into every menu entry, and the image's GRUB stalls on them at boot; the "
        "element drops those lines after DIB's bootloader, as it does in amp-image's build, "
        "so both images boot through their own bootloaders",
    "amphora-agent's pkg-map: ubuntu-cloudimage-keyring mapped to nothing for Debian":
        "the element installs Ubuntu's cloud image keyring on every Debian-family image and "
        "maps it away only for Red Hat's; Debian has no such package",
}
UBUNTU_ONLY = ("ubuntu-cloudimage-keyring",)
CHROOT_LEAKS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class UpstreamInputs:
    """What the upstream build is made from: octavia's sdist as a tagged git repository
    (its diskimage-create/ and elements/ run from the working tree), the constraints
    file, and octavia-lib's repository."""

    repo: Path
    tag: str
    constraints: Path
    lib_repo: Path
    lib_tag: str


def pinned(constraints_file: Path, project: str) -> str:
    """The version an upper-constraints file pins project to."""
    for line in constraints_file.read_text().splitlines():
        name, _, version = line.partition("===")
        if name.strip().lower() == project:
            return version.split(";")[0].strip()
    raise SystemExit(f"bench: {constraints_file} pins no {project}")


def prepare(version: str, root: Path) -> UpstreamInputs:
    """octavia==version's sdist, and octavia-lib's at the version its constraints pin,
    each unpacked and made a tagged git repository under root."""
    shutil.rmtree(root, ignore_errors=True)
    pins = constraints.vendored_for(version)
    repo, _ = octavia_source.tagged_repository(version, root / "octavia")
    lib_version = pinned(pins, "octavia-lib")
    lib_repo, _ = octavia_source.tagged_repository(lib_version, root / "octavia-lib",
                                                   "octavia-lib")
    map_ubuntu_only_packages_away(repo / "elements" / "amphora-agent" / "pkg-map")
    return UpstreamInputs(repo, version, pins, lib_repo, lib_version)


def map_ubuntu_only_packages_away(pkg_map: Path) -> None:
    """The element's pkg-map with a Debian family entry mapping UBUNTU_ONLY to nothing
    (DIB's pkg-map idiom for "not on this distribution")."""
    mapping = json.loads(pkg_map.read_text())
    debian = mapping.setdefault("family", {}).setdefault("debian", {})
    debian.update({name: "" for name in UBUNTU_ONLY})
    pkg_map.write_text(json.dumps(mapping, indent=2) + "\n")


def environment(inputs: UpstreamInputs, shims: Path, base: dict[str, str],
                mirror: str, ca_bundle: str,
                local_elements: tuple[Path, ...] = ()) -> dict[str, str]:
    """The environment diskimage-create.sh runs in: the host's, without its pip and
    Python settings, with diskimage-builder and the shims on PATH and WORKAROUNDS'
    variables.  local_elements: element folders added to upstream's (host-ca-bundle
    comes with ca_bundle)."""
    env = {k: v for k, v in base.items()
           if not k.startswith(LEAKY_ENV_PREFIXES) and k not in CHROOT_LEAKS}
    tool_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([str(shims), tool_bin, base.get("PATH", ""),
                                   "/usr/sbin", "/sbin"])
    env.update({
        "AMP_BASEOS": "debian-minimal",
        "DIB_RELEASE": RELEASE,
        "DIB_PYTHON_VERSION": "3",
        "DIB_DISTRIBUTION_MIRROR": mirror,
        "DIB_DEBIAN_SECURITY_MIRROR": security_mirror_for(mirror),
        "DIB_REPOLOCATION_amphora_agent": str(inputs.repo),
        "DIB_REPOREF_amphora_agent": inputs.tag,
        "DIB_REPOLOCATION_octavia_lib": str(inputs.lib_repo),
        "DIB_REPOREF_octavia_lib": inputs.lib_tag,
        "DIB_REPOLOCATION_upper_constraints": f"file://{inputs.constraints}",
    })
    if ca_bundle:
        local_elements = (BENCH_ELEMENTS / "host-ca-bundle", *local_elements)
        env["DIB_HOST_CA_BUNDLE"] = ca_bundle
    if local_elements:
        env["DIB_LOCAL_ELEMENTS"] = " ".join(e.name for e in local_elements)
        folders = dict.fromkeys(str(e.parent) for e in local_elements)
        env["DIB_LOCAL_ELEMENTS_PATH"] = os.pathsep.join(folders)
    return env


def command(inputs: UpstreamInputs, output: Path, work: Path, cache: Path) -> list[str]:
    return ["bash", str(inputs.repo / "diskimage-create" / "diskimage-create.sh"),
            "-o", str(output), "-w", str(work), "-c", str(cache)]


def build_environment(inputs: UpstreamInputs, work: Path) -> dict[str, str]:
    """environment() for this host: its mirror, and the shims it needs in work/bin."""
    shims = work / "bin"
    device_mapper = host.device_mapper_works()
    install_shims(shims, device_mapper)
    local_elements: tuple[Path, ...] = ()
    if not device_mapper:
        # A copy of its own: amp-image's other elements share upstream's names.
        grub = work / "elements" / GRUB_ELEMENT.name
        shutil.copytree(GRUB_ELEMENT, grub, ignore=shutil.ignore_patterns("tests"))
        local_elements = (grub,)
    return environment(inputs, shims, dict(os.environ), host.debian_mirror(),
                       host.detect_ca_bundle(os.environ), local_elements)


# --- the side-by-side run -------------------------------------------------------------

# How both images boot in the side-by-side run: as Nova boots them.
BOOT = "bootloader"
BOOT_WHY = "each image's own GRUB, kernel and initramfs, as Nova boots it"

# Targets as ratios amp-image / upstream, in one run (issue 26); memory: not higher.
RATIO_TARGETS = {
    "cold build (s)": 0.40,
    "warm rebuild (s)": 0.12,
    "qcow2 size (MiB)": 0.37,
    "QEMU -> agent /info (s)": 0.50,
    "memory used after boot (MiB)": 1.0,
}
ABSOLUTE_TARGETS = {"warm rebuild, agent changed (s)": 60.0, "qcow2 size (MiB)": 200.0}
SETTLE_S = 20  # after the agent's first answer, before memory is read


def memory_used_mib(details: dict) -> float:
    """What the agent's /1.0/details says is in use: total less free, buffers and page
    cache (kB in, MiB out), as free(1) counted it before 'available'."""
    memory = details["memory"]
    used_kb = memory["total"] - memory["free"] - memory["buffers"] - memory["cached"]
    return used_kb / 1024


@dataclass
class BootFigures:
    ssh: list[float]
    agent: list[float]
    memory: list[float]
    boot_path: str = ""


def alternate_boots(images: dict[str, Path], runs: int,
                    boot: str) -> dict[str, BootFigures]:
    """First boots of fresh VMs at the seed's flavor (boot: the harness's boot path), the
    images taking turns; each boot's SSH banner, agent answer, and memory in use
    SETTLE_S after that answer (read from the agent, so no login is needed)."""
    import time

    from amp_image.verify.boottest import booted_amphora

    figures = {name: BootFigures([], [], []) for name in images}
    for run in range(runs):
        for name, image in images.items():
            print(f"bench: boot {run + 1}/{runs} of {name}...", flush=True)
            with booted_amphora(image, boot=boot) as amphora:
                time.sleep(SETTLE_S)
                details = amphora.agent().get("details").json()
                into = figures[name]
                into.ssh.append(amphora.report.ssh_banner_s)
                into.agent.append(amphora.report.agent_ready_s)
                into.memory.append(memory_used_mib(details))
                into.boot_path = f"{amphora.report.boot_path}, {amphora.report.accel}"
    return figures


def compare(upstream: dict[str, float], ours: dict[str, float]) -> list[dict]:
    """A row per figure: both values, amp-image's ratio to upstream's, the target (a
    ratio, or an absolute one for a figure upstream has no counterpart of) and whether
    it is met."""
    rows = []
    for name in ours:
        theirs = upstream.get(name)
        ratio = ours[name] / theirs if theirs else None
        target, met = RATIO_TARGETS.get(name), None
        if target is not None and ratio is not None:
            met = ratio <= target
        absolute = ABSOLUTE_TARGETS.get(name)
        if absolute is not None:
            met = (met is not False) and ours[name] <= absolute
        rows.append({"figure": name, "upstream": theirs, "amp_image": ours[name],
                     "ratio": ratio, "ratio_target": target, "absolute_target": absolute,
                     "met": met})
    return rows


def render(rows: list[dict]) -> str:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    lines = ["| figure | upstream | amp-image | ratio | target | met |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        targets = [f"ratio <= {r['ratio_target']}" if r["ratio_target"] is not None else "",
                   f"<= {r['absolute_target']:g}" if r["absolute_target"] is not None else ""]
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['figure']} | {number(r['upstream'])} | {number(r['amp_image'])} "
                     f"| {ratio} | {', '.join(t for t in targets if t)} | {met} |")
    return "\n".join(lines)
