"""The OpenStack connection for publish --upload and openstack-config --apply.

openstacksdk is an optional extra (``amp-image[openstack]``) imported only
here, and only when a command talks to a cloud.  The cloud is checked before
anything is written or created, so a missing SDK or cloud fails first.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amp_image.cloud import rotation
from amp_image.cloud.rotation import Rotation
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


def check_catalog(conn: Any, services: Mapping[str, str]) -> None:
    """Keystone answers, takes the credentials, and its catalog has each service (type ->
    name), or one line says which is wrong; nothing is created before this."""
    auth_url = conn.config.get_auth_args().get("auth_url", "(no auth_url)")
    try:
        conn.authorize()
    except sdk().exceptions.SDKException as exc:
        # The SDK wraps keystoneauth's exception; its class says what went wrong.
        cause = type(exc.__context__).__name__
        if cause == "Unauthorized":
            raise CloudError(f"Keystone at {auth_url} refused the credentials; check the "
                             "cloud's username, password and project in clouds.yaml") from None
        raise CloudError(f"Keystone at {auth_url} does not answer ({one_line(exc)}); check "
                         "auth_url in clouds.yaml and that Keystone runs") from None
    for service_type, name in services.items():
        if not conn.endpoint_for(service_type):
            raise CloudError(
                f"the cloud's catalog has no {service_type} service ({name}); check "
                f"`openstack catalog list` and the region in clouds.yaml"
            )


def check_glance(cloud_name: str | None) -> Any:
    """A connection to the cloud, whose Keystone takes the credentials and whose catalog
    has Glance: checked before publish writes anything."""
    conn = connect(cloud_name)
    check_catalog(conn, {"image": "Glance"})
    return conn


def remove_failed_upload(conn: Any, spec: dict) -> None:
    """The image record a failed upload left in Glance (created, never active): only this
    upload's, by its name, project and record property."""
    record = spec["properties"][rotation.RECORD_PROPERTY]
    for image in conn.image.images(name=spec["name"], owner=conn.current_project_id):
        properties = image.properties or {}
        if properties.get(rotation.RECORD_PROPERTY) == record and image.status != "active":
            conn.image.delete_image(image)


def upload_to_glance(spec: dict, image_path: Path, cloud_name: str | None, *,
                     rotate: Rotation | None = None,
                     emit: Callable[[str], None] = lambda _: None) -> str:
    """Create the Glance image described by spec; return its ID.  With rotate, then
    rotate amp-image's older images of that name and tag (cloud/rotation.py)."""
    conn = check_glance(cloud_name)
    try:
        image = conn.image.create_image(
            spec["name"], filename=str(image_path), disk_format=spec["disk_format"],
            container_format=spec["container_format"], tags=spec["tags"],
            visibility=spec["visibility"], min_disk=spec["min_disk"], wait=True,
            # A new image each time, even beside images of the same name (the SDK would
            # otherwise return an earlier one of equal checksum, and refuse a third
            # upload); --rotate deals with the older ones.
            allow_duplicates=True, validate_checksum=True,
            **spec["properties"],
        )
    except BaseException:
        # The upload's own error is the one to tell; a cleanup that fails too (Glance
        # gone meanwhile) must not hide it.
        with contextlib.suppress(Exception):
            remove_failed_upload(conn, spec)
        raise
    if rotate:
        for tag in spec["tags"]:
            rotation.rotate(conn, rotate, name=spec["name"], tag=tag, emit=emit)
    return image.id
