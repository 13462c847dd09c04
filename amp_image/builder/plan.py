"""The build plan: a pure function from build options to DIB elements and environment.

Nothing here touches the file system, the network or the environment: paths are
resolved and the host probed first (``request.py``, ``host.py``), then plain values
go to :func:`make_plan`.  That keeps the plan easy to test and to print
(``--dry-run``).  What can be built is ``compat.py``'s, the options' checks
``validate.py``'s, and DIB's environment ``environment.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amp_image.builder import constraints
from amp_image.builder.compat import (
    UEFI_ONLY_ARCHES,
    BaseOS,
    agent_series,
    base_os_named,
    choose_release,
    normalise_arch,
)
from amp_image.builder.environment import dib_args, dib_env
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.validate import check_choices, format_from_output, image_name_for

LAYER_CACHE_ELEMENT = "amphora-layer-cache"
AMPHORA_ELEMENTS = (
    "vm",
    "amphora-base",
    "haproxy-octavia",
    "rebind-sshd",
    "no-resolvconf",
    "amphora-agent",
    "certs-ramfs",
    "amphora-growroot",
    "keepalived-octavia",
    "ipvsadmin",
    "remove-default-ints",
    "amphora-nftables",
    "amphora-sos",
    "pip-cache",
)


@dataclass(frozen=True)
class BuildPlan:
    options: BuildOptions
    elements: tuple[str, ...]
    env: dict[str, str]
    dib_args: tuple[str, ...]
    image_name: str
    image_format: str
    constraints_file: Path
    # The agent's OpenStack series ("" for a release amp-image does not know).
    series: str = ""

    @property
    def uefi(self) -> bool:
        """The image boots through UEFI only: it has an EFI system partition (vfat)."""
        return self.env["ARCH"] in UEFI_ONLY_ARCHES

    def as_dict(self) -> dict:
        opts = self.options
        return {
            "output": str(opts.output),
            "format": self.image_format,
            "base_os": opts.base_os,
            "release": self.env.get("DIB_RELEASE", ""),
            "arch": self.env.get("ARCH", ""),
            "sriov": opts.sriov,
            "nftables": opts.use_nftables,
            "agent": {
                "version": opts.agent_version,
                "series": self.series,
                "source": opts.agent_source.describe(),
                "constraints": str(self.constraints_file),
            },
            "root_password": root_password_use(opts),
            "reproduce": {"snapshot": opts.snapshot or None,
                          "pinned_packages": len(opts.package_pins),
                          "source_date_epoch": self.env.get("SOURCE_DATE_EPOCH")},
            "elements": list(self.elements),
            "environment": dict(sorted(self.env.items())),
            "disk-image-create": ["disk-image-create", *self.dib_args, *self.elements],
        }


def root_password_use(opts: BuildOptions) -> str | None:
    """Where root's password works, for the printed plan (which never shows it)."""
    if not opts.root_password_hash:
        return None
    return "serial console and SSH" if opts.root_password_ssh else "serial console"


def choose_elements(opts: BuildOptions, base: BaseOS) -> tuple[str, ...]:
    if opts.replace_elements:
        elements = list(opts.replace_elements)
    else:
        elements = [base.element, *AMPHORA_ELEMENTS]
        if opts.sriov:
            elements.append("sriov-vf-drivers")
        # Restores and saves layers only when amp-image asks it to (DIB_AMP_LAYER_*).
        elements.append(LAYER_CACHE_ELEMENT)
    optional = {"root-passwd": bool(opts.root_password_hash), "remove-sshd": not opts.sshd,
                "cpu-pinning": opts.cpu_pinning, "fips": opts.fips,
                "pin-package-versions": bool(opts.package_pins)}
    elements += [element for element, wanted in optional.items() if wanted]
    elements.extend(opts.extra_elements)
    # Keep the first occurrence: DIB rejects nothing, but a repeated element
    # in the printed plan is noise.
    return tuple(dict.fromkeys(elements))


def make_plan(opts: BuildOptions, host: HostContext, elements_dir: Path) -> BuildPlan:
    """Resolve options into the elements, environment and DIB arguments of one build."""
    base = base_os_named(opts.base_os)
    arch = normalise_arch(opts.arch)
    series = agent_series(opts)
    constraints_file = opts.constraints_file or constraints.vendored_for(opts.agent_version)
    release = choose_release(opts, base, series)
    check_choices(opts)
    image_format = format_from_output(opts.output, opts.image_format)
    image_name = image_name_for(opts.output, image_format)
    env = dib_env(opts, host, base=base, arch=arch, release=release, series=series,
                  constraints_file=constraints_file, elements_dir=elements_dir)
    return BuildPlan(
        options=opts,
        elements=choose_elements(opts, base),
        env=env,
        dib_args=dib_args(opts, arch, image_name, image_format),
        image_name=image_name,
        image_format=image_format,
        constraints_file=constraints_file,
        series=series.name if series else "",
    )
