"""``publish --upload --rotate KEEP``: after an upload, amp-image's older images of the
same name and tag keep at most KEEP copies tagged, so that Octavia (which boots the
newest image carrying ``amp_image_tag``) cannot pick the rest.  The extras lose the tag
and stay for rollback, or are deleted with ``--rotate-delete``.  Only images amp-image
uploaded are touched: in the same project, of the same name, carrying its record
property (``RECORD_PROPERTY``, the image file's SHA-256, set from glance.json)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

RECORD_PROPERTY = "amp_image_sha256"


@dataclass(frozen=True)
class Rotation:
    """What --rotate KEEP [--rotate-delete] asks for."""

    keep: int
    delete: bool = False


@dataclass(frozen=True)
class GlanceImage:
    id: str
    name: str
    owner: str
    created_at: str
    tags: tuple[str, ...]
    record: str  # its RECORD_PROPERTY, "" when amp-image did not upload it
    protected: bool = False


def extras(images: Iterable[GlanceImage], *, name: str, tag: str, owner: str,
           keep: int) -> list[GlanceImage]:
    """amp-image's tagged images of this name and project beyond the KEEP newest (pure)."""
    ours = [image for image in images
            if image.record and image.name == name and image.owner == owner
            and tag in image.tags]
    ours.sort(key=lambda image: (image.created_at, image.id), reverse=True)
    return ours[keep:]


def rotate(conn: Any, rotation: Rotation, *, name: str, tag: str,
           emit: Callable[[str], None]) -> list[str]:
    """Untag (or delete) the extras in Glance; return their IDs."""
    found = [_image(image) for image in conn.image.images(name=name, tag=tag)]
    done = []
    for image in extras(found, name=name, tag=tag, owner=conn.current_project_id,
                        keep=rotation.keep):
        if rotation.delete and image.protected:
            emit(f"kept {image.id} (created {image.created_at}): it is protected; "
                 f"untagged it instead")
        if rotation.delete and not image.protected:
            conn.image.delete_image(image.id)
            emit(f"deleted {image.id} (created {image.created_at})")
        else:
            conn.image.remove_tag(image.id, tag)
            emit(f"untagged {image.id} (created {image.created_at}); kept for rollback: "
                 f"openstack image set --tag {tag} {image.id}")
        done.append(image.id)
    return done


def _image(image: Any) -> GlanceImage:
    properties = image.properties or {}
    return GlanceImage(id=image.id, name=image.name, owner=image.owner_id or "",
                       created_at=image.created_at or "", tags=tuple(image.tags or ()),
                       record=str(properties.get(RECORD_PROPERTY, "")),
                       protected=bool(image.is_protected))
