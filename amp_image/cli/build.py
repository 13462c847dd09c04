"""The ``build`` command: options -> BuildOptions -> plan -> DIB (and --publish-dir)."""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import click
import yaml

from amp_image.builder import (
    binfmt,
    buildlog,
    constraints,
    dib,
    gitref,
    host,
    inputs,
    layers,
    preflight,
    rootpw,
)
from amp_image.builder.compat import BASE_OSES, choose_agent
from amp_image.builder.element_defaults import default_vf_drivers
from amp_image.builder.options import (
    DEFAULT_AGENT_VERSION,
    DEFAULT_CACHE_DIR,
    DEFAULT_LAYER_CACHE_BYTES,
    DEFAULT_OUTPUT,
    DEFAULT_SIZE_GB,
    IMAGE_FORMATS,
    AgentSource,
    BuildOptions,
)
from amp_image.builder.plan import BuildPlan, make_plan
from amp_image.cli import publish as publish_cli
from amp_image.cli.common import fail, stop_on_sigterm
from amp_image.errors import AmpImageError, PlanError
from amp_image.image.records import read_record
from amp_image.publish import imagediff
from amp_image.publish.folder import check_dest
from amp_image.publish.publisher import publish_image, published_names


def parse_agent_source(spec: str | None) -> AgentSource:
    """pypi (default), git+URL[@REF], or a local folder (a checkout or a wheelhouse)."""
    if not spec or spec == "pypi":
        return AgentSource()
    if spec.startswith("git+"):
        url, ref = spec[4:], ""
        # A ref follows the last '@' of the path (user@host comes before it).
        _, sep, rest = url.partition("://")
        path = rest[rest.find("/"):] if sep and "/" in rest else url
        if "@" in path:
            url, ref = url.rsplit("@", 1)
        if not url:
            raise PlanError(f"--agent-source {spec}: no URL after git+")
        return AgentSource("git", url, ref)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise PlanError(
            f"--agent-source {spec}: not 'pypi', a git+URL[@REF] or an existing folder"
        )
    path = path.resolve()
    if any(path.glob("*.whl")):
        return AgentSource("wheelhouse", str(path))
    if (path / "setup.py").exists() or (path / "pyproject.toml").exists():
        return AgentSource("dir", str(path))
    raise PlanError(
        f"--agent-source {spec}: folder has neither wheels nor setup.py/pyproject.toml"
    )


def with_full_agent_ref(opts: BuildOptions) -> BuildOptions:
    """A git source read with git ls-remote (it must exist and have the ref), its branch
    or tag named in full, so DIB's cache cannot serve a stale one."""
    src = opts.agent_source
    if src.kind != "git":
        return opts
    return replace(opts, agent_source=replace(src, ref=gitref.full_ref(src.location, src.ref)))


def _resolve(path: str | None) -> Path | None:
    return Path(path).expanduser().resolve() if path else None


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise PlanError(f"--root-password-prompt needs a terminal; set {rootpw.ENV_VAR} or "
                        "pass --root-password-file FILE instead")
    return click.prompt("Root password (debug image)", hide_input=True,
                        confirmation_prompt=True, err=True)


def root_password_hash(kw: dict) -> str:
    """Read root's password from its one source and hash it at once (see rootpw.py)."""
    if kw["root_password"] is not None:
        raise PlanError("--root-password would put the password on the command line, which "
                        f"every user of this host can read; {rootpw.SOURCES}")
    # Out of the environment: nothing amp-image runs may inherit it.
    env = {rootpw.ENV_VAR: os.environ.pop(rootpw.ENV_VAR, "")}
    password = rootpw.read_password(
        env, file=_resolve(kw["root_password_file"]),
        prompt=_prompt_password if kw["root_password_prompt"] else None)
    return rootpw.hash_password(password) if password else ""


def reproduce_options(snapshot: str | None, pin_from: str | None,
                      env: Mapping[str, str]) -> dict:
    """--snapshot, --pin-packages-from and SOURCE_DATE_EPOCH as BuildOptions fields."""
    fields: dict = {"snapshot": snapshot or ""}
    built_at = None
    if pin_from:
        try:
            earlier = imagediff.read_side(Path(pin_from).expanduser())
        except AmpImageError as exc:
            raise PlanError(f"--pin-packages-from: {exc}") from None
        # Foreign-architecture packages (name:arch) stay as the build makes them.
        fields["package_pins"] = tuple(sorted((name, version) for name, version
                                              in earlier.packages.items() if ":" not in name))
        built_at = earlier.build_date
    if env.get("SOURCE_DATE_EPOCH"):
        if not env["SOURCE_DATE_EPOCH"].isdigit():
            raise PlanError(f"SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']} is not a number of "
                            "seconds since 1970; unset it or give one")
        fields["source_date_epoch"] = int(env["SOURCE_DATE_EPOCH"])
    elif built_at:
        when = datetime.datetime.fromisoformat(built_at.replace("Z", "+00:00"))
        fields["source_date_epoch"] = int(when.timestamp())
    return fields


def build_options(**kw) -> BuildOptions:
    """BuildOptions from the command line; the files and folders it names are read
    here (inputs.py), so a bad one fails before anything else, --dry-run included."""
    constraints_file = _resolve(kw["constraints"])
    if constraints_file and not constraints_file.is_file():
        raise PlanError(f"--constraints {kw['constraints']}: no such file")
    if constraints_file:
        inputs.check_constraints_file(constraints_file, "--constraints")
    elements_paths = tuple(_resolve(p) for p in kw["elements_path"])
    for p in elements_paths:
        if not p.is_dir():
            raise PlanError(f"--elements-path {p}: no such folder")
        inputs.check_elements_path(p)
    vf_drivers = tuple(kw["vf_drivers"].split(",")) if kw["vf_drivers"] else default_vf_drivers()
    source = parse_agent_source(kw["agent_source"])
    version, series = choose_agent(kw["series"], kw["agent_version"], source)
    if source.kind == "wheelhouse":
        inputs.check_wheelhouse(Path(source.location), version)
    return BuildOptions(
        sriov=kw["sriov"],
        base_os=kw["base_os"],
        release=kw["release"] or "",
        arch=kw["arch"],
        output=_resolve(kw["output"]),
        image_format=kw["image_format"] or "",
        size_gb=kw["size"],
        cache_dir=_resolve(kw["cache_dir"]),
        layer_cache=kw["layer_cache"],
        cache_max_bytes=layers.parse_size(kw["cache_max_size"]),
        work_dir=_resolve(kw["work_dir"]),
        agent_version=version,
        series=series,
        agent_source=source,
        constraints_file=constraints_file,
        root_password_hash=root_password_hash(kw),
        root_password_ssh=kw["root_password_ssh"],
        sshd=kw["sshd"],
        cpu_pinning=kw["cpu_pinning"],
        fips=kw["fips"],
        extra_elements=tuple(kw["element"]),
        elements_paths=elements_paths,
        replace_elements=tuple(kw["replace_elements"].split()) if kw["replace_elements"] else (),
        use_nftables=kw["nftables"],
        vf_drivers=vf_drivers,
        datasources=kw["datasources"],
        kernel_package=kw["kernel_package"] or "",
        use_tmpfs=kw["tmpfs"],
        compression=kw["compression"],
        slim=kw["slim"],
        ca_in_image=kw["ca_in_image"],
        trace=kw["trace"],
        **reproduce_options(kw["snapshot"], kw["pin_packages_from"], os.environ),
    )


def build_log(log_file: str | None, output: Path) -> Path:
    """--log-file as given (each build overwrites it), else a new log of this build beside
    the image (OUTPUT.<UTC time>.log; OUTPUT.log links the newest; see buildlog.py), so a
    build never overwrites the log of the one before it."""
    return _resolve(log_file) or buildlog.new_log(output)


def print_plan(plan: BuildPlan) -> None:
    click.echo(yaml.safe_dump(plan.as_dict(), sort_keys=False, width=100), nl=False)


def print_summary(plan: BuildPlan, result: dib.BuildResult) -> None:
    record = read_record(result.manifests)
    size = result.image.stat().st_size
    minutes, seconds = divmod(int(result.seconds), 60)
    click.echo(f"built {result.image}")
    click.echo(f"  size        {size / 2**20:.1f} MiB ({plan.image_format})")
    click.echo(f"  duration    {minutes}m{seconds:02d}s")
    agent = record.agent
    click.echo(f"  agent       octavia {agent.get('AMPHORA_AGENT_VERSION', '?')}"
               f" from {agent.get('AMPHORA_AGENT_SOURCE_TYPE', '?')}")
    click.echo(f"  kernel      {', '.join(record.kernels) or '?'}")
    click.echo(f"  firewall    {record.firewall or '?'}")
    if plan.options.sriov:
        click.echo(f"  VF drivers  {' '.join(record.vf_drivers) or 'none recorded'}")
    click.echo(f"  layers      {result.layers}")
    click.echo(f"  log         {result.log_file}")


BUILD_OPTIONS = [
    click.option("--sriov/--no-sriov", default=True, show_default=True,
                 help="SR-IOV readiness: VF drivers checked at build time (nftables is on "
                      "either way)."),
    click.option("--base-os", type=click.Choice(sorted(BASE_OSES)), default="debian",
                 show_default=True),
    click.option("--release", help="Distribution release (Debian: trixie or bookworm) [the "
                                   "base OS's default if the agent's series supports its "
                                   "Python, else one whose Python it supports]."),
    click.option("--arch", default="amd64", show_default=True),
    click.option("-o", "--output", default=DEFAULT_OUTPUT, show_default=True,
                 help="Image file to write."),
    click.option("--format", "image_format", type=click.Choice(IMAGE_FORMATS),
                 help="Image format (default: from the output's extension, else qcow2)."),
    click.option("--size", type=int, default=DEFAULT_SIZE_GB, show_default=True,
                 help="Disk size in GB."),
    click.option("--cache-dir", default=DEFAULT_CACHE_DIR, show_default=True),
    click.option("--cache/--no-cache", "layer_cache", default=True, show_default=True,
                 help="Restore the layer an earlier build with the same inputs saved, and run "
                      "only the stages after it (--no-cache: run every stage; the build "
                      "saves fresh layers either way)."),
    click.option("--cache-max-size", default=f"{DEFAULT_LAYER_CACHE_BYTES >> 30}G",
                 show_default=True,
                 help="Bound of the layer cache; least recently used layers beyond it go."),
    click.option("--work-dir", default="~/.cache/amp-image/work", show_default=True),
    click.option("--agent-version", help="Octavia release installed from PyPI or a wheelhouse; "
                                         "its series picks the upper constraints and the "
                                         f"default --release [{DEFAULT_AGENT_VERSION}, or the "
                                         "newest of --series]."),
    click.option("--series", help="OpenStack series of the agent ("
                                  f"{', '.join(constraints.SERIES_BY_NAME)}): its newest octavia "
                                  "release, or the series --agent-version must be of [the "
                                  "series a git --agent-source's stable/ or unmaintained/ "
                                  "branch names]."),
    click.option("--agent-source", help="pypi (default), git+URL[@REF], a local checkout, "
                                        "or a wheelhouse folder."),
    click.option("--constraints", help="Upper-constraints file (default: the vendored one for "
                                       "the agent's series)."),
    # Refused: argv is readable by every user of the host (see root_password_hash).
    click.option("--root-password", hidden=True),
    click.option("--root-password-file", help="Debug images only: give root the password on "
                                              "this file's first line (the file must be mode "
                                              "600 or stricter). Or set AMP_ROOT_PASSWORD."),
    click.option("--root-password-prompt", is_flag=True, help="Debug images only: ask for "
                                                              "root's password (needs a "
                                                              "terminal; not echoed)."),
    click.option("--root-password-ssh", is_flag=True, help="Allow root's password over SSH too "
                                                           "(default: serial console only)."),
    click.option("--sshd/--no-sshd", default=True, show_default=True),
    click.option("--cpu-pinning", is_flag=True),
    click.option("--fips", is_flag=True, help="Enable FIPS mode (DIB's fips element)."),
    click.option("--element", multiple=True, help="Extra element (repeatable)."),
    click.option("--elements-path", multiple=True, help="Extra elements folder (repeatable)."),
    click.option("--replace-elements", help="Replace the default element list (space-separated)."),
    click.option("--nftables/--iptables", default=True, show_default=True),
    click.option("--vf-drivers", help="Comma-separated VF kernel modules "
                                      f"(default: {','.join(default_vf_drivers())})."),
    click.option("--datasources", default="ConfigDrive", show_default=True,
                 help="cloud-init datasources."),
    click.option("--kernel-package", help="Install this kernel package as well."),
    click.option("--mirror", envvar="DIB_DISTRIBUTION_MIRROR",
                 help="Debian mirror to build from [DIB_DISTRIBUTION_MIRROR, else the one "
                      "this host's apt sources use]; its security archive is the "
                      "debian-security beside it."),
    click.option("--snapshot", help="Build from Debian's archive as it was at this "
                 "snapshot.debian.org timestamp (YYYYMMDDTHHMMSSZ); SOURCE_DATE_EPOCH follows it."),
    click.option("--pin-packages-from", help="Install every Debian package at the version "
                 "this earlier image (or folder it was published to) records; "
                 "SOURCE_DATE_EPOCH follows its build date."),
    click.option("--ca-bundle", help="CA bundle pip trusts during the build (default: the "
                                     "host's, from SSL_CERT_FILE/PIP_CERT/REQUESTS_CA_BUNDLE)."),
    click.option("--ca-in-image", is_flag=True, help="Also add that CA bundle to the image's "
                                                     "trust store (default: build time only)."),
    click.option("--tmpfs/--no-tmpfs", default=True, show_default=True),
    click.option("--compression", type=click.Choice(["zstd", "zlib"]), default="zstd",
                 show_default=True, help="qcow2 compression (zstd needs QEMU >= 5.1 to read)."),
    click.option("--slim/--no-slim", default=True, show_default=True,
                 help="Leave out docs, translations and kernel modules no amphora uses."),
    click.option("--log-file", help="DIB log, overwritten by each build (default: a new "
                                    "OUTPUT.<UTC time>.log beside the image per build, the "
                                    f"{buildlog.KEEP} newest kept, OUTPUT.log links the "
                                    "newest)."),
    click.option("--trace", is_flag=True, help="DIB shell tracing (-x)."),
    click.option("--publish-dir", help="After the build, publish the image here (as amp-image "
                                       "publish --dest, without --force: a new or empty folder, "
                                       "or one amp-image published into)."),
    click.option("--no-wait", is_flag=True, help="Fail at once if another build is using the "
                                                 "work dir (default: wait for it)."),
    click.option("--dry-run", is_flag=True, help="Print the resolved plan and exit."),
    click.option("-v", "--verbose", is_flag=True, help="Stream DIB's full output."),
]


def build_options_decorator(func):
    for option in reversed(BUILD_OPTIONS):
        func = option(func)
    return func

@click.command()
@build_options_decorator
@publish_cli.sign_options
def build(ca_bundle, mirror, log_file, publish_dir, no_wait, dry_run, verbose, sign_key,
          cert_uuid, hash_method, key_type, **kw) -> None:
    """Build an amphora image with diskimage-builder."""
    try:
        opts = build_options(**kw)
        if not dry_run:
            opts = with_full_agent_ref(opts)
        context = host.host_context(os.environ, ca_bundle=ca_bundle or "", mirror=mirror or "")
        plan = make_plan(opts, context, dib.elements_dir())
        publish_to = _resolve(publish_dir)
        if sign_key and not publish_to:
            raise PlanError("--sign-key signs what --publish-dir publishes; add --publish-dir "
                            "(or sign later: amp-image publish IMAGE --sign-key KEY)")
        if publish_to:
            # Before the build, not after it: a folder holding other files is refused.
            check_dest(publish_to, published_names(opts.output.name, "", bool(sign_key)),
                       force=False, option="--publish-dir")
        # Before the build too: a bad key, a wrong passphrase or a prompt come first.
        signer = publish_cli.signer_from_options(sign_key, cert_uuid, hash_method, key_type)
        if opts.root_password_hash:
            click.echo("amp-image: warning: a root password makes a debug image; never use it "
                       "for production amphorae", err=True)
        if dry_run:
            print_plan(plan)
            return
        host.check_root()
        host.check_tools()
        binfmt.check_emulation(plan.env["ARCH"])
        if plan.uefi:
            host.check_vfat_tools()
        preflight.check_sources(plan, os.environ)
        if not opts.output.parent.is_dir():
            raise PlanError(f"the output folder {opts.output.parent} does not exist; create "
                            "it or choose another -o")
        if not os.access(opts.output.parent, os.W_OK):
            raise PlanError(f"cannot write to {opts.output.parent} (read-only or not yours); "
                            "choose another -o")
        stop_on_sigterm()
        log = build_log(log_file, opts.output)
        click.echo(f"building {opts.output.name}: {plan.options.base_os} "
                   f"{plan.env['DIB_RELEASE']} {plan.env['ARCH']}, agent "
                   f"{opts.agent_source.describe()} {opts.agent_version}, "
                   f"sriov={'on' if opts.sriov else 'off'}; log {log}")
        result = dib.run_build(plan, device_mapper=host.device_mapper_works(),
                               log_file=log, verbose=verbose, emit=click.echo,
                               wait=not no_wait)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; build cleaned up", 130)
    print_summary(plan, result)
    if publish_to:
        try:
            published = publish_image(result.image, publish_to, option="--publish-dir",
                                      signer=signer, emit=click.echo)
        except AmpImageError as exc:
            fail(f"built {result.image}, but publishing failed: {exc}", 1)
        publish_cli.print_published(published)
