"""The OpenStack connection for publish --upload and openstack-config --apply.

openstacksdk is an optional extra (``amp-image[openstack]``) imported only
here, and only when a command talks to a cloud.  The cloud is checked before
anything is written or created, so a missing SDK or cloud fails first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amp_image.errors import AmpImageError

INSTALL_HINT = "install amp-image[openstack] (pip install 'amp-image[openstack]')"


class CloudError(AmpImageError):
    """No usable OpenStack cloud, or the SDK is missing."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def sdk() -> Any:
    try:
        import openstack
    except ImportError:
        raise CloudError(f"openstacksdk is not installed; {INSTALL_HINT}") from None
    return openstack


def cloud_name(cloud: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The clouds.yaml entry to use; None means the OS_* variables of an openrc."""
    env = os.environ if env is None else env
    name = cloud or env.get("OS_CLOUD") or None
    if name is None and not env.get("OS_AUTH_URL"):
        raise CloudError(
            "no OpenStack cloud configured; set OS_CLOUD to a cloud in clouds.yaml "
            "(or pass --cloud NAME, or source an openrc that sets OS_AUTH_URL)"
        )
    return name


def check_cloud(cloud: str | None) -> str | None:
    """Fail early, without network, unless the SDK and the cloud's settings are usable."""
    name = cloud_name(cloud)
    openstack = sdk()
    try:
        openstack.config.get_cloud_region(cloud=name)
    except Exception as exc:  # ConfigException, keystoneauth's MissingRequiredOptions, ...
        label = f"'{name}'" if name else "from the OS_* variables"
        raise CloudError(
            f"OpenStack cloud {label} is not usable: {one_line(exc).rstrip('.')}; "
            "check clouds.yaml (OS_CLIENT_CONFIG_FILE) or OS_CLOUD"
        ) from None
    return name


def connect(cloud: str | None) -> Any:
    """An openstack.connection.Connection to the checked cloud."""
    name = check_cloud(cloud)
    # keystoneauth logs its retries itself; the one-line error says what failed.
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    return sdk().connect(cloud=name, app_name="amp-image")


def upload_to_glance(spec: dict, image_path: Path, cloud_name: str | None) -> str:
    """Create the Glance image described by spec; return its ID."""
    conn = connect(cloud_name)
    image = conn.image.create_image(
        spec["name"], filename=str(image_path), disk_format=spec["disk_format"],
        container_format=spec["container_format"], tags=spec["tags"],
        visibility=spec["visibility"], min_disk=spec["min_disk"], wait=True,
        **spec["properties"],
    )
    return image.id
