"""amp-image: build, boot-test and publish OpenStack Octavia amphora images.

The flow reads build -> verify -> publish: ``amp_image.builder`` (options, plan,
host, the DIB runner), ``amp_image.image`` (reading a built image),
``amp_image.verify`` (boot tests, checks, conformance), ``amp_image.publish``
(inventory, manifest, SBOM, Glance, upload) and ``amp_image.cli`` over them.
"""

from pathlib import Path

# The installed package: elements/, hostbin/ and data/ ship inside it.
PACKAGE_DIR = Path(__file__).resolve().parent
