"""Checks of the build options the plan takes as they are, and the image's format and
name derived from the output path.  Pure: each bad value is one PlanError."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from amp_image.builder.options import IMAGE_FORMATS, QCOW2_COMPRESSION, BuildOptions
from amp_image.errors import PlanError


def check_choices(opts: BuildOptions) -> None:
    if opts.compression not in QCOW2_COMPRESSION:
        raise PlanError(f"unknown qcow2 compression '{opts.compression}'; use "
                        f"{' or '.join(QCOW2_COMPRESSION)}")
    if opts.size_gb < 2:
        raise PlanError(f"image size {opts.size_gb} GB is too small; use --size 2 or more")
    for element in (*opts.extra_elements, *opts.replace_elements):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", element):
            raise PlanError(f"invalid element name '{element}'")
    if opts.root_password_ssh and not opts.root_password_hash:
        raise PlanError("--root-password-ssh needs a root password; set AMP_ROOT_PASSWORD, or "
                        "pass --root-password-file FILE or --root-password-prompt")
    if opts.root_password_ssh and not opts.sshd:
        raise PlanError("--root-password-ssh needs sshd; drop --no-sshd")
    for driver in opts.vf_drivers:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", driver):
            raise PlanError(f"invalid kernel module name '{driver}' in the VF driver list")


def format_from_output(output: Path, requested: str) -> str:
    if requested:
        if requested not in IMAGE_FORMATS:
            raise PlanError(
                f"unknown image format '{requested}'; use one of {', '.join(IMAGE_FORMATS)}"
            )
        return requested
    suffix = output.suffix.lstrip(".")
    return suffix if suffix in IMAGE_FORMATS else "qcow2"


def image_name_for(output: Path, image_format: str) -> str:
    """DIB's -o takes a name without extension; it appends the format's."""
    name = output.name
    if name.endswith("." + image_format):
        name = name[: -len(image_format) - 1]
    if not name:
        raise PlanError(f"output '{output}' has no file name; pass -o NAME.{image_format}")
    return name


def snapshot_epoch(stamp: str) -> int:
    """snapshot.debian.org's timestamp (YYYYMMDDTHHMMSSZ) as seconds since the epoch."""
    try:
        when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise PlanError(f"--snapshot {stamp}: not a snapshot.debian.org timestamp; use "
                        "YYYYMMDDTHHMMSSZ, e.g. 20261120T000000Z") from None
    return int(when.replace(tzinfo=datetime.UTC).timestamp())
