"""Publish: the image's manifest, SBOM, signatures, provenance, Glance spec and
upload, the OpenStack configuration for amphorae."""
