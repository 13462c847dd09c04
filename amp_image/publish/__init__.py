"""Publish: a checked image to a folder, with its checksums, manifest, SBOM, signatures
and provenance, and its Glance spec and upload (through amp_image.cloud)."""
