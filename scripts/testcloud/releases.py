"""What the test cloud installs for a series: each service's release from PyPI, under
the series' upper constraints as amp-image vendors them (amp_image/data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amp_image.builder import constraints

# What every web service runs under, and talks to MariaDB with (both pinned by the
# constraints).
SERVER_EXTRAS = ("gunicorn", "PyMySQL")


@dataclass(frozen=True)
class Release:
    series: str
    # venv name -> its requirements (each venv holds one service, or the clients).
    venvs: dict[str, tuple[str, ...]]
    # Why a service is not at its newest release, for the docs and the status line.
    notes: tuple[str, ...] = ()

    @property
    def constraints_file(self) -> Path:
        return constraints.DATA_DIR / constraints.SERIES_BY_NAME[self.series].constraints


RELEASES = {
    "2026.2": Release(
        "2026.2",
        {
            "keystone": ("keystone==30.0.0", *SERVER_EXTRAS),
            "glance": ("glance==33.0.0", *SERVER_EXTRAS),
            "placement": ("openstack-placement==16.0.0", *SERVER_EXTRAS),
            "nova": ("nova==33.0.2", *SERVER_EXTRAS),
            "octavia": ("octavia==19.0.0", *SERVER_EXTRAS),
            # The real command-line client the tests read the cloud back with.
            "client": ("python-openstackclient", "python-octaviaclient"),
        },
        notes=(
            "nova 33.0.2, not 34.0.0: nova 34.0.0 needs keystoneauth1>=5.16.0 and "
            "oslo.versionedobjects>=3.12.0, newer than the vendored 2026.2 constraints "
            "(master of 2026-08-22) pin; Nova serves only flavors, aggregates and the "
            "compute host here",
        ),
    ),
}
DEFAULT_SERIES = constraints.SERIES[-1].name
# An older Octavia API beside the cloud's, on demand (cloud.start_older_octavia): the
# release gates amp-image predicts (allow_member_sriov from 16.x) against a real one.
# Its keystonemiddleware imports pkg_resources, which setuptools 81 dropped (the
# 2024.1 constraints do not pin setuptools; a venv made by uv has none).
OLDER_OCTAVIA = Release("2024.1", {"octavia-2024.1": ("octavia==14.0.2", "PyMySQL",
                                                      "setuptools<81")})


class ReleaseError(Exception):
    pass


def release(series: str) -> Release:
    try:
        return RELEASES[series]
    except KeyError:
        raise ReleaseError(
            f"the test cloud has no service releases for series {series}; use "
            f"{', '.join(RELEASES)}"
        ) from None
