"""Publish: the image's inventory, manifest, SBOM, signatures, provenance, Glance spec and
upload, the OpenStack configuration for amphorae, and diffs between images."""
