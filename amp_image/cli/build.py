"""The ``build`` command: options -> BuildRequest -> builder.run -> summary (and
--publish-dir's publication)."""

from __future__ import annotations

import sys

import click
import yaml

from amp_image.builder import buildlog, constraints, dib, rootpw
from amp_image.builder.compat import BASE_OSES
from amp_image.builder.element_defaults import default_vf_drivers
from amp_image.builder.options import (
    DEFAULT_AGENT_VERSION,
    DEFAULT_CACHE_DIR,
    DEFAULT_LAYER_CACHE_BYTES,
    DEFAULT_OUTPUT,
    DEFAULT_SIZE_GB,
    DEFAULT_WORK_DIR,
    IMAGE_FORMATS,
)
from amp_image.builder.plan import BuildPlan
from amp_image.builder.request import BuildRequest, resolve
from amp_image.builder.run import Hooks, run
from amp_image.cli import publish as publish_cli
from amp_image.cli.common import fail
from amp_image.diff.read import read_side
from amp_image.errors import AmpImageError, PlanError
from amp_image.image.records import read_record
from amp_image.publish.folder import check_dest
from amp_image.publish.publisher import publish_image, published_names
from amp_image.publish.signing import Signer


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise PlanError(f"--root-password-prompt needs a terminal; set {rootpw.ENV_VAR} or "
                        "pass --root-password-file FILE instead")
    return click.prompt("Root password (debug image)", hide_input=True,
                        confirmation_prompt=True, err=True)


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


class PublishAfterBuild:
    """--publish-dir and the signing options: checked once the plan is made (before
    anything is built), applied to the built image."""

    def __init__(self, publish_dir: str | None, sign: dict) -> None:
        self.dest = resolve(publish_dir)
        self.sign = sign
        self.signer: Signer | None = None

    def check(self, plan: BuildPlan) -> None:
        if self.sign["sign_key"] and not self.dest:
            raise PlanError("--sign-key signs what --publish-dir publishes; add --publish-dir "
                            "(or sign later: amp-image publish IMAGE --sign-key KEY)")
        if self.dest:
            # Before the build, not after it: a folder holding other files is refused.
            check_dest(self.dest, published_names(plan.options.output.name, "",
                                                  bool(self.sign["sign_key"])),
                       force=False, option="--publish-dir")
        # Before the build too: a bad key, a wrong passphrase or a prompt come first.
        self.signer = publish_cli.signer_from_options(**self.sign)

    def publish(self, result: dib.BuildResult) -> None:
        if not self.dest:
            return
        try:
            published = publish_image(result.image, self.dest, option="--publish-dir",
                                      signer=self.signer, emit=click.echo)
        except AmpImageError as exc:
            fail(f"built {result.image}, but publishing failed: {exc}", 1)
        publish_cli.print_published(published)


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
    click.option("--work-dir", default=DEFAULT_WORK_DIR, show_default=True),
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
    # Refused: argv is readable by every user of the host (see request.root_password_hash).
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
def build(publish_dir, no_wait, root_password_prompt, sign_key, cert_uuid, hash_method,
          key_type, **kw) -> None:
    """Build an amphora image with diskimage-builder."""
    publishing = PublishAfterBuild(publish_dir, {
        "sign_key": sign_key, "cert_uuid": cert_uuid, "hash_method": hash_method,
        "key_type": key_type})
    request = BuildRequest(**kw, wait=not no_wait, root_password_prompt=(
        _prompt_password if root_password_prompt else None))
    hooks = Hooks(emit=click.echo, warn=lambda line: click.echo(line, err=True),
                  read_earlier_image=read_side, planned=publishing.check)
    try:
        done = run(request, hooks)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; build cleaned up", 130)
    if done.result is None:
        print_plan(done.plan)
        return
    print_summary(done.plan, done.result)
    publishing.publish(done.result)
