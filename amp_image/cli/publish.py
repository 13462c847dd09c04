"""The ``publish`` command, and the signing options and summary ``build --publish-dir`` shares."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from amp_image.builder.process import stop_on_sigterm
from amp_image.cli.common import fail
from amp_image.cloud.glance import DEFAULT_TAG
from amp_image.cloud.rotation import Rotation
from amp_image.errors import AmpImageError, PublishError
from amp_image.publish import signing
from amp_image.publish.publisher import PublishResult, publish_image

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
@click.option("--rotate", "keep", type=click.IntRange(min=1), default=None, metavar="KEEP",
              help="After --upload: keep the tag on the KEEP newest of amp-image's images of "
                   "this name and tag; the older ones lose it (kept for rollback).")
@click.option("--rotate-delete", is_flag=True, help="With --rotate: delete the older ones "
                                                    "instead of untagging them.")
@sign_options
def publish(image, dest, name, tag, manifests, prefix, copy, force, upload, cloud_name, keep,
            rotate_delete, sign_key, cert_uuid, hash_method, key_type) -> None:
    """Publish IMAGE with SHA256SUMS, manifest.json, an SBOM, glance.json and provenance.json."""
    stop_on_sigterm()
    try:
        if rotate_delete and keep is None:
            raise PublishError("--rotate-delete needs --rotate KEEP; add --rotate KEEP")
        signer = signer_from_options(sign_key, cert_uuid, hash_method, key_type)
        result = publish_image(
            Path(image), Path(dest).expanduser(), upload=upload, cloud_name=cloud_name,
            rotate=Rotation(keep, rotate_delete) if keep is not None else None,
            name=name, tag=tag, manifests=Path(manifests).expanduser() if manifests else None,
            prefix=prefix, copy=copy, force=force, signer=signer, emit=click.echo)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; nothing was published", 130)
    print_published(result)
