"""The ``publish`` and ``openstack-config`` commands; cli.py adds them with register(main)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from amp_image import cloud, imagediff, signing
from amp_image import openstack_config as osconfig
from amp_image.cliutil import fail, stop_on_sigterm
from amp_image.constraints import DEFAULT_AGENT_VERSION
from amp_image.errors import AmpImageError
from amp_image.publish import DEFAULT_TAG, PublishResult, publish_image

SIGN_OPTIONS = [
    click.option("--sign-key", help="Sign the image for Glance (img_signature, verified by Nova "
                                    "with verify_glance_signatures) and the provenance with "
                                    "this PEM private key (RSA, EC secp384r1/secp521r1 or DSA). "
                                    "An encrypted key's passphrase: AMP_SIGN_KEY_PASSPHRASE, "
                                    "else asked for on a terminal."),
    click.option("--cert-uuid", default="", help="img_signature_certificate_uuid: the signing "
                                                 "certificate's ID in Barbican."),
    click.option("--hash-method", help="img_signature_hash_method: SHA-224, SHA-256, SHA-384 "
                                       "or SHA-512 [SHA-256]."),
    click.option("--key-type", help="img_signature_key_type: RSA-PSS (RSA keys), DSA, "
                                    "ECC_SECP384R1 or ECC_SECP521R1 [the key's]."),
]


def sign_options(func):
    for option in reversed(SIGN_OPTIONS):
        func = option(func)
    return func


def _interactive() -> bool:
    return sys.stdin.isatty()


def signer_from_options(sign_key: str | None, cert_uuid: str, hash_method: str | None,
                        key_type: str | None) -> signing.Signer | None:
    """The signing key, loaded and checked (asking for its passphrase if need be), or None."""
    if not sign_key:
        given = [o for o, v in (("--cert-uuid", cert_uuid), ("--hash-method", hash_method),
                                ("--key-type", key_type)) if v]
        if given:
            raise signing.SigningError(f"{given[0]} is for a signed image; give --sign-key "
                                       "KEY.pem too")
        return None
    env = signing.take_passphrase_env()
    ask = signing.passphrase_from(
        env, interactive=_interactive(),
        prompt=lambda text: click.prompt(text, hide_input=True, err=True))
    return signing.load_signer(Path(sign_key).expanduser(),
                               hash_method=hash_method or signing.DEFAULT_HASH_METHOD,
                               key_type=key_type, cert_uuid=cert_uuid, passphrase=ask)


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} bytes"


def print_published(result: PublishResult) -> None:
    click.echo(f"published {result.dest}")
    for name, size in result.files.items():
        click.echo(f"  {name:<32} {_size(size)}")
    for warning in result.warnings:
        click.echo(f"amp-image: warning: {warning}", err=True)
    signature = result.manifest.get("signature")
    if signature:
        uuid = signature[signing.CERT_UUID]
        click.echo(f"signed: {signature[signing.KEY_TYPE]}, {signature[signing.HASH_METHOD]}, "
                   f"key sha256:{signature['public_key_sha256'][:16]}..."
                   + (f", certificate {uuid}" if uuid else ""))
    if result.glance_image_id:
        click.echo(f"uploaded to Glance ({result.uploaded_to}): image {result.glance_image_id}")
    else:
        click.echo(f"upload with: (cd {result.dest} && {result.glance['command']})")


@click.command("publish")
@click.argument("image")
@click.option("--dest", required=True, help="Folder to publish into: new, empty, or one "
                                            "amp-image published into (only its own files "
                                            "there are replaced).")
@click.option("--name", default="", help="Glance image name (default: the file name without "
                                         "its extension).")
@click.option("--tag", default=DEFAULT_TAG, show_default=True,
              help="Glance tag Octavia finds the image by ([controller_worker] amp_image_tag).")
@click.option("--manifests", help="DIB's manifests folder, for what the image lacks "
                                  "(default: NAME.d/dib-manifests beside the image).")
@click.option("--prefix", default="", help="Prefix for the metadata files' names (e.g. "
                                           "'trixie-' for release assets).")
@click.option("--copy", is_flag=True, help="Copy the image even where a hard link would do.")
@click.option("--force", is_flag=True, help="Publish into --dest even though it holds other "
                                            "files (they are kept, never overwritten).")
@click.option("--upload", is_flag=True, help="Also create the image in Glance (openstacksdk; "
                                             "needs amp-image[openstack] and a cloud).")
@click.option("--cloud", "cloud_name", help="clouds.yaml cloud for --upload (default: $OS_CLOUD).")
@sign_options
def publish(image, dest, name, tag, manifests, prefix, copy, force, upload, cloud_name,
            sign_key, cert_uuid, hash_method, key_type) -> None:
    """Publish IMAGE with SHA256SUMS, manifest.json, an SBOM, glance.json and provenance.json."""
    stop_on_sigterm()
    try:
        signer = signer_from_options(sign_key, cert_uuid, hash_method, key_type)
        result = publish_image(
            Path(image), Path(dest).expanduser(), upload=upload, cloud_name=cloud_name,
            name=name, tag=tag, manifests=Path(manifests).expanduser() if manifests else None,
            prefix=prefix, copy=copy, force=force, signer=signer, emit=click.echo)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; nothing was published", 130)
    print_published(result)


@click.command("openstack-config")
@click.option("--sriov", is_flag=True, help="SR-IOV amphorae: host aggregate, matching compute "
                                            "flavor properties, Octavia flavor.")
@click.option("--host", "hosts", multiple=True, help="SR-IOV compute host (repeatable).")
@click.option("--vip-network", "vip_networks", multiple=True,
              help="Per-network properties: a VIP network the hosts offer as SR-IOV VFs.")
@click.option("--member-network", "member_networks", multiple=True,
              help="Per-network properties: a member network offered as SR-IOV VFs.")
@click.option("--aggregate", default="", help="Host aggregate name [amphora-sriov].")
@click.option("--compute-flavor", default="", help="Compute flavor name [amphora-sriov, or "
                                                   "amphora without --sriov].")
@click.option("--compute-flavor-id", default="", help="Compute flavor ID [the name].")
@click.option("--ram", type=int, default=1024, show_default=True, help="MB.")
@click.option("--disk", type=int, default=3, show_default=True, help="GB.")
@click.option("--vcpus", type=int, default=1, show_default=True)
@click.option("--project", default="", help="Give this project (Octavia's) access to the "
                                            "private flavor.")
@click.option("--flavor-profile", default="", help="Octavia flavor profile name "
                                                   "[<flavor>-profile].")
@click.option("--lb-flavor", default="", help="Octavia flavor name [the compute flavor's].")
@click.option("--description", default="", help="Octavia flavor description.")
@click.option("--sriov-vip", is_flag=True, help="Put the VIP on an SR-IOV VF (flavor data "
                                                "sriov_vip).")
@click.option("--allow-member-sriov", is_flag=True, help="Let users request SR-IOV member ports "
                                                         "(octavia 16.x, 2025.1, and newer).")
@click.option("--octavia-version", default=DEFAULT_AGENT_VERSION, show_default=True,
              help="The controller's octavia release: what its amphora provider accepts "
                   "(SR-IOV VIPs from 14.x, SR-IOV members from 16.x).")
@click.option("--topology", default="", help="SINGLE or ACTIVE_STANDBY (loadbalancer_topology).")
@click.option("--image-tag", default="", help="Glance tag of the amphora image (amp_image_tag).")
@click.option("--flavor-data", default="", help="More amphora flavor data, as a JSON object.")
@click.option("--apply", "do_apply", is_flag=True, help="Create it all with openstacksdk "
                                                        "instead of printing the commands.")
@click.option("--cloud", "cloud_name", help="clouds.yaml cloud for --apply (default: $OS_CLOUD).")
def openstack_config(flavor_data, do_apply, cloud_name, **kw) -> None:
    """Print (or --apply) the OpenStack steps for amphora load balancers."""
    try:
        extra = osconfig.parse_flavor_data(flavor_data) if flavor_data else {}
        opts = osconfig.AmphoraFlavorOptions(
            **{k: tuple(v) if isinstance(v, tuple) else v for k, v in kw.items()},
            extra_flavor_data=extra)
        osconfig.validate(opts)
        for warning in osconfig.warnings(opts):
            click.echo(f"amp-image: warning: {warning}", err=True)
        if not do_apply:
            click.echo(osconfig.render_script(opts), nl=False)
            return
        conn = cloud.connect(cloud_name)
        osconfig.apply(opts, conn, emit=click.echo)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except Exception as exc:
        if not do_apply:
            raise
        fail(f"openstack-config --apply failed: {cloud.one_line(exc)}; what is done is "
             "listed above, and re-running --apply completes the rest", 1)


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff(old, new, as_json) -> None:
    """What changed from OLD to NEW: packages, kernel, agent, haproxy, keepalived, units, size.

    OLD and NEW are images (read offline, as root) or folders amp-image published
    (their manifest.json), in any mix."""
    stop_on_sigterm()
    try:
        sides = [imagediff.read_side(Path(p).expanduser()) for p in (old, new)]
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    result = imagediff.diff(*sides)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(imagediff.render_table(result), nl=False)


COMMANDS = (publish, openstack_config, diff)


def register(group: click.Group) -> None:
    """Add the commands to amp-image's click group (once)."""
    for command in COMMANDS:
        if command.name not in group.commands:
            group.add_command(command)
