"""The tests' side of the real test cloud (scripts/testcloud): the session's cloud, and
the real `openstack` command-line client (python-openstackclient and
python-octaviaclient, in the cloud's client venv) to read back what amp-image made."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from testcloud import cloud as cloud_life  # noqa: E402
from testcloud.layout import CloudDir, State, load_state  # noqa: E402

__all__ = ["CloudDir", "RealCloud", "cloud_life", "load_state"]

# How the client says that a named resource does not exist.
NOT_THERE = r"No \w+ (found|with a name or ID)|not found|Unable to locate|could not be found"
BATCH = Path(__file__).with_name("openstack_batch.py")
AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")


@dataclass(frozen=True)
class RealCloud:
    where: CloudDir
    state: State

    @property
    def env(self) -> dict[str, str]:
        """amp-image's and the client's environment: the cloud's clouds.yaml, no other
        cloud settings of the host."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(self.where.clouds_yaml),
                   OS_CLOUD=cloud_life.CLOUD_NAME)
        return env

    def env_with(self, folder: Path, *, settings: dict | None = None,
                 **auth: str) -> dict[str, str]:
        """The environment of a copy of the cloud's clouds.yaml with other auth settings
        (a wrong password, another auth_url) or other settings (region_name, an
        endpoint override)."""
        clouds = json.loads(self.where.clouds_yaml.read_text())
        entry = clouds["clouds"][cloud_life.CLOUD_NAME]
        entry["auth"].update(auth)
        entry.update(settings or {})
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "clouds.yaml"
        path.write_text(json.dumps(clouds))
        path.chmod(0o600)
        return {**self.env, "OS_CLIENT_CONFIG_FILE": str(path)}

    def client_bin(self) -> Path:
        return self.where.venvs / "client" / "bin"

    def openstack(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.client_bin() / "openstack"), *args],
                              env=self.env, capture_output=True, text=True, check=check,
                              stdin=subprocess.DEVNULL)

    def batch(self, *commands: tuple[str, ...]) -> list[dict]:
        """Several `openstack` commands in one process of the real client
        (tests/openstack_batch.py): their exit codes and outputs, in order."""
        result = subprocess.run([str(self.client_bin() / "python"), str(BATCH)], env=self.env,
                                input=json.dumps([list(args) for args in commands]),
                                capture_output=True, text=True, check=True)
        return json.loads(result.stdout)

    def read(self, *args: str):
        """`openstack ARGS -f json`, parsed; None when the client says it is not there."""
        return self.read_all({"one": args})["one"]

    def read_all(self, commands: dict[str, tuple[str, ...]]) -> dict:
        """Several reads (`-f json`, parsed; None for what is not there) in one client."""
        results = self.batch(*((*args, "-f", "json") for args in commands.values()))
        read = {}
        for (name, args), result in zip(commands.items(), results, strict=True):
            if result["code"] == 0:
                read[name] = json.loads(result["stdout"])
            elif re.search(NOT_THERE, result["stderr"], re.I):
                read[name] = None
            else:
                raise AssertionError(f"openstack {' '.join(args)}: {result['stderr'].strip()}")
        return read

    def sdk(self, env: dict[str, str] | None = None):
        """An openstacksdk connection as the cloud's admin (or by env_with's
        clouds.yaml), for the tests' own set-up and clean-up (what is checked is read
        with the client)."""
        from openstack import config, connection

        clouds_yaml = (env or self.env)["OS_CLIENT_CONFIG_FILE"]
        region = config.OpenStackConfig(config_files=[clouds_yaml],
                                        load_envvars=False).get_one(cloud_life.CLOUD_NAME)
        return connection.Connection(config=region)

    def amp_image(self, *args: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess:
        return subprocess.run([AMP_IMAGE, *args], env=env or self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)

    def sh(self, script: str) -> subprocess.CompletedProcess:
        """A shell script (printed commands) with the real client first on PATH."""
        env = {**self.env, "PATH": f"{self.client_bin()}:{os.environ['PATH']}"}
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
