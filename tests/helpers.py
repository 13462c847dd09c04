"""Small helpers shared by the test modules."""

from pathlib import Path


def no_cloud_env(tmp_path: Path) -> dict[str, str | None]:
    """No OS_CLOUD, no openrc, and a clouds.yaml search path that finds nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"OS_CLOUD": None, "OS_AUTH_URL": None,
            "OS_CLIENT_CONFIG_FILE": str(empty / "clouds.yaml"),
            "HOME": str(empty), "XDG_CONFIG_HOME": str(empty)}
