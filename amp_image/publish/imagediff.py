"""Where cli/build.py (``--pin-packages-from``) still reads an earlier image's side:
the diff lives in amp_image.diff now.  Drop this module when cli/build.py imports
amp_image.diff.read itself (its rework is under way apart from this move)."""

from amp_image.diff.read import read_side

__all__ = ["read_side"]
