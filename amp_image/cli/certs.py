"""The ``check-certs`` command: does the agent accept the controller's certificate?"""

from __future__ import annotations

from pathlib import Path

import click

from amp_image.cli.common import fail
from amp_image.errors import AmpImageError
from amp_image.image.python_version import parse_python_version
from amp_image.verify.certs.check import check_client
from amp_image.verify.certs.files import CertInputError
from amp_image.verify.certs.handshake import STRICT_PYTHON
from amp_image.verify.certs.image_python import python_version_of_image


def _agent_python(agent_python: str | None, image: str | None) -> tuple[int, int]:
    if agent_python and image:
        fail("give --agent-python or --image, not both", 2)
    try:
        if image:
            return python_version_of_image(Path(image).expanduser())
        return parse_python_version(agent_python or "3.13")
    except ValueError as exc:
        fail(f"--agent-python: {exc}", 2)
    except AmpImageError as exc:
        fail(str(exc), 2)


@click.command("check-certs")
@click.option("--ca", "ca", required=True, metavar="CA.pem",
              help="The CA the agent trusts for clients: the amphorae's client_ca.pem "
                   "(Octavia's [controller_worker] client_ca).")
@click.option("--client-cert", required=True, metavar="CERT.pem",
              help="The controller's client certificate, with its key ([haproxy_amphora] "
                   "client_cert) or with --client-key.")
@click.option("--client-key", metavar="KEY.pem", help="The client key, if not in --client-cert.")
@click.option("--agent-python", metavar="3.13",
              help="Python version of the agent in the image [3.13: Debian trixie; bookworm "
                   "has 3.11].")
@click.option("--image", metavar="IMAGE",
              help="Read the agent's Python from this image (its DIB manifests, else its dpkg "
                   "database through a read-only mount, as root).")
def check_certs(ca, client_cert, client_key, agent_python, image) -> None:
    """Check that the agent accepts the controller's client certificate.

    A real TLS handshake on 127.0.0.1 against a server set up as the agent's gunicorn
    on the image's Python (3.13 verifies with X509_STRICT). Exit 1 if refused, with the
    problem and the fix; 2 if a file cannot be read."""
    version = _agent_python(agent_python, image)
    try:
        result = check_client(Path(ca).expanduser(), Path(client_cert).expanduser(),
                              Path(client_key).expanduser() if client_key else None,
                              agent_python=version)
        later = None
        if result.accepted and not result.strict:
            later = check_client(
                Path(ca).expanduser(), Path(client_cert).expanduser(),
                Path(client_key).expanduser() if client_key else None,
                agent_python=STRICT_PYTHON)
    except CertInputError as exc:
        fail(str(exc), 2)
    except AmpImageError as exc:
        fail(str(exc), 1)
    if not result.accepted:
        fail(result.message(), 1)
    click.echo(result.message())
    warnings = result.advice()
    if later is not None and not later.accepted:
        # Accepted today, refused by the agents of Debian trixie images.
        warnings = [later.message()] + [w for w in warnings if w != later.fix]
    for line in warnings:
        click.echo(f"amp-image: warning: {line}", err=True)

