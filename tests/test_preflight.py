"""preflight: the build's sources asked before the build, for real: a local HTTP server
as the Debian mirror, a closed local port as an unreachable one or a dead proxy, and
PyPI itself (this machine reaches it) for agent releases."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from amp_image.builder import host, preflight
from amp_image.errors import PlanError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends


@pytest.fixture
def mirror(tmp_path) -> str:
    """A Debian mirror with trixie only."""
    (tmp_path / "debian/dists/trixie").mkdir(parents=True)
    (tmp_path / "debian/dists/trixie/Release").write_text("Suite: stable\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    server.shutdown()


@pytest.fixture
def no_proxy_env(monkeypatch) -> dict[str, str]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return {}


def test_mirror_with_the_release_passes(mirror, no_proxy_env):
    preflight.check_mirror(mirror, "trixie", no_proxy_env)


def test_mirror_without_the_release_names_it(mirror, no_proxy_env):
    with pytest.raises(PlanError, match=r"has no bookworm \(HTTP 404 .*choose another "
                                        r"--mirror or --release$"):
        preflight.check_mirror(mirror, "bookworm", no_proxy_env)


def test_unreachable_mirror_names_the_fix(no_proxy_env):
    url = f"http://127.0.0.1:{closed_port()}/debian"
    with pytest.raises(PlanError, match=r"^the Debian mirror is unreachable: .*refused; "
                                        r".*\(--mirror URL\)$"):
        preflight.check_mirror(url, "trixie", no_proxy_env)


def test_unreachable_snapshot_archive_names_the_way_without_it(no_proxy_env):
    url = f"http://127.0.0.1:{closed_port()}/archive/debian/20261120T000000Z"
    with pytest.raises(PlanError, match=r"^the Debian snapshot archive is unreachable: .*; "
                                        r".*\(--pin-packages-from IMAGE\)$"):
        preflight.check_mirror(url, "trixie", no_proxy_env, preflight.SNAPSHOT)


def test_agent_release_on_pypi(no_proxy_env):
    preflight.check_agent_release("19.0.0", no_proxy_env)


def test_agent_release_not_on_pypi_names_the_newest(no_proxy_env):
    with pytest.raises(PlanError, match=r"^octavia 19\.0\.77 is not on PyPI .*the newest is "
                                        r"\d+\.\d+\.\d+\)$"):
        preflight.check_agent_release("19.0.77", no_proxy_env)


def test_dead_proxy_names_its_variable(monkeypatch, no_proxy_env):
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("https_proxy", proxy)
    with pytest.raises(PlanError, match=rf"^the Python package index is unreachable: .* "
                                        rf"through the proxy {proxy} \(https_proxy\): .*; "
                                        r"fix or unset https_proxy$"):
        preflight.check_agent_release("19.0.0", {"https_proxy": proxy})


def test_versions_from_wheel_and_sdist_names():
    files = [{"filename": "octavia-19.0.0-py3-none-any.whl"},
             {"filename": "octavia-19.0.0.tar.gz"}, {"filename": "octavia-0.10.0.zip"},
             {"filename": "octavia-20.0.0.0rc1.tar.gz"}]
    assert preflight.released_versions(files) == {"19.0.0", "0.10.0", "20.0.0.0rc1"}



def test_each_missing_build_tool_is_named_with_its_package():
    """A host without zstd (the layer cache) or debootstrap: both named, with the package
    to install (shutil.which stubbed)."""
    absent = {"zstd", "debootstrap"}
    missing = host.missing_tools(which=lambda tool, path=None: None if tool in absent else tool)
    assert missing == ["debootstrap (package debootstrap)", "zstd (package zstd)"]
