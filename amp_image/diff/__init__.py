"""``amp-image diff``: what changed between two images or published folders (packages,
kernel, agent, units, size; with ``--files``, file by file)."""
