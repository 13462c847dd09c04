"""A client for the amphora agent's REST API, as the Octavia controller talks to it.

Mutual TLS: the client presents a certificate signed by the CA the agent
trusts, verifies the agent's certificate against the same CA, and checks that
the certificate's name is the amphora id (not the address it dialled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

API_VERSION = "1.0"


class AmphoraIdAdapter(HTTPAdapter):
    """Verify the server certificate's host name against the amphora id."""

    def __init__(self, amphora_id: str, **kw: Any) -> None:
        self.amphora_id = amphora_id
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        kw["assert_hostname"] = self.amphora_id
        kw["server_hostname"] = self.amphora_id
        super().init_poolmanager(*args, **kw)


class AgentClient:
    def __init__(self, port: int, amphora_id: str, ca: Path, client_pem: Path | None,
                 host: str = "127.0.0.1", timeout: float = 30) -> None:
        self.base = f"https://{host}:{port}/{API_VERSION}"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca)
        if client_pem is not None:
            self.session.cert = str(client_pem)
        self.session.mount("https://", AmphoraIdAdapter(amphora_id))

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.session.request(method, f"{self.base}/{path.lstrip('/')}", **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def info_ok(self) -> bool:
        """True once GET /info answers 200 over mutual TLS."""
        try:
            return self.get("info", timeout=10).status_code == 200
        except requests.RequestException:
            return False
