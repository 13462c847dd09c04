"""MariaDB from Debian's package: a server of the cloud's own (its data, socket and port
under the cloud's folder; the system's mariadb service is never started), with one
database per service for one user with a generated password."""

from __future__ import annotations

import shutil
import subprocess

from testcloud import daemons
from testcloud.layout import CloudDir, State

DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "octavia")
PROGRAMS = ("mariadb-install-db", "mariadbd", "mariadb-admin", "mariadb")


def socket(cloud: CloudDir) -> str:
    return str(cloud.service("mariadb") / "mysqld.sock")


def client(cloud: CloudDir, program: str) -> list[str]:
    return [program, "--no-defaults", f"--socket={socket(cloud)}", "--user=root"]


def start(cloud: CloudDir, state: State) -> None:
    missing = [program for program in PROGRAMS if not shutil.which(program)]
    if missing:
        raise daemons.DaemonError(f"{', '.join(missing)} not found; run "
                                  f"scripts/setup-host --cloud (installs mariadb-server)")
    home = cloud.service("mariadb")
    data = home / "data"
    data.mkdir(parents=True, mode=0o700)
    daemons.run(cloud, "mariadb-install-db", [
        "mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
        "--auth-root-authentication-method=socket", "--skip-test-db"])
    daemons.start(cloud, "mariadb", [
        "mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
        f"--socket={socket(cloud)}", f"--port={state.ports['mariadb']}",
        "--bind-address=127.0.0.1", f"--pid-file={home / 'mariadbd.pid'}",
        f"--log-error={cloud.logs / 'mariadb.log'}", "--skip-name-resolve",
        "--skip-log-bin", "--innodb-buffer-pool-size=64M",
        # A test cloud: losing the last second of commits on a host crash is fine.
        "--innodb-flush-log-at-trx-commit=0", "--max-connections=500"])
    daemons.wait_for(cloud, "mariadb", lambda: _pings(cloud), timeout=60)
    create_databases(cloud, DATABASES, f"CREATE USER 'openstack'@'127.0.0.1' IDENTIFIED BY "
                                       f"'{state.passwords['database']}';")


def create_databases(cloud: CloudDir, databases: tuple[str, ...], first: str = "") -> None:
    """Databases the services' user may use; first: a statement before them."""
    statements = [first] if first else []
    for database in databases:
        statements.append(f"CREATE DATABASE {database}; GRANT ALL ON {database}.* TO "
                          f"'openstack'@'127.0.0.1';")
    # The statements (with the password) go on stdin, never on a command line.
    result = subprocess.run(client(cloud, "mariadb"), input="\n".join(statements), text=True,
                            capture_output=True)
    if result.returncode != 0:
        raise daemons.DaemonError(f"could not create the databases: {result.stderr.strip()}")


def _pings(cloud: CloudDir) -> bool:
    return subprocess.run([*client(cloud, "mariadb-admin"), "ping"],
                          capture_output=True).returncode == 0
