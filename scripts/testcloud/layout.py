"""Where the test cloud keeps its files, and its state: ports and secrets."""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "AMP_TEST_CLOUD_DIR"
# Every daemon of a cloud carries MARKER_ENV=<its root> in its environment, and so does
# everything it starts (gunicorn's workers, epmd): `down` stops them by it, also after
# an `up` killed before it wrote down a single PID.
MARKER_ENV = "AMP_TEST_CLOUD"
CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = CHECKOUT / "build" / "test-cloud"

PORT_NAMES = ("mariadb", "rabbitmq", "rabbitmq_dist", "epmd", "keystone", "glance",
              "placement", "nova", "octavia")
PASSWORD_NAMES = ("database", "rabbitmq", "admin", "glance", "placement", "nova", "octavia")


@dataclass(frozen=True)
class CloudDir:
    root: Path

    @classmethod
    def from_env(cls) -> CloudDir:
        return cls(Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT).resolve())

    @property
    def venvs(self) -> Path:
        """Kept by `down`: the services' venvs, reused by the next `up`."""
        return self.root / "venvs"

    @property
    def logs(self) -> Path:
        """Kept by `down`, emptied by `up`: each daemon's log."""
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """What `down` removes: data, configuration, secrets, state."""
        return self.root / "run"

    def service(self, name: str) -> Path:
        return self.run / name

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def clouds_yaml(self) -> Path:
        return self.run / "clouds.yaml"

    def venv_bin(self, venv: str, program: str) -> Path:
        return self.venvs / venv / "bin" / program


@dataclass(frozen=True)
class State:
    ports: dict[str, int]
    passwords: dict[str, str]
    series: str

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    @property
    def auth_url(self) -> str:
        return self.url("keystone", "/v3")

    @property
    def database(self) -> str:
        return f"mysql+pymysql://openstack:{self.passwords['database']}@127.0.0.1:" \
               f"{self.ports['mariadb']}"

    @property
    def transport_url(self) -> str:
        return f"rabbit://amp:{self.passwords['rabbitmq']}@127.0.0.1:{self.ports['rabbitmq']}/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_state(series: str) -> State:
    return State(ports={name: free_port() for name in PORT_NAMES},
                 passwords={name: secrets.token_urlsafe(18) for name in PASSWORD_NAMES},
                 series=series)


def write_private(path: Path, text: str) -> None:
    """A file only its owner reads (it may hold a password), never world-readable even
    for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def save_state(cloud: CloudDir, state: State) -> None:
    write_private(cloud.state_file, json.dumps(
        {"ports": state.ports, "passwords": state.passwords, "series": state.series},
        indent=2))


def load_state(cloud: CloudDir) -> State | None:
    try:
        data = json.loads(cloud.state_file.read_text())
    except FileNotFoundError:
        return None
    return State(ports=data["ports"], passwords=data["passwords"], series=data["series"])
