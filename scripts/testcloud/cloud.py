"""The test cloud's life: `up` (in order, each step waiting for what it needs) and
`down` (every process stopped, the run folder removed; the venvs and logs kept)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from testcloud import configs, daemons, mariadb, rabbitmq, venvs
from testcloud.layout import (
    CloudDir,
    State,
    free_port,
    load_state,
    new_state,
    save_state,
    write_private,
)
from testcloud.releases import DEFAULT_SERIES, OLDER_OCTAVIA, Release, release

CLOUD_NAME = "amp-test-cloud"
__all__ = ["CLOUD_NAME", "DEFAULT_SERIES", "CloudError", "down", "is_up",
           "start_older_octavia", "status", "up"]
# WSGI services: the venv's module, and the variable naming the folder of its config.
WSGI = {
    "keystone": ("keystone.wsgi.api:application", "OS_KEYSTONE_CONFIG_DIR"),
    "glance": ("glance.wsgi.api:application", "OS_GLANCE_CONFIG_DIR"),
    "placement": ("placement.wsgi.api:application", "OS_PLACEMENT_CONFIG_DIR"),
    "nova": ("nova.wsgi.osapi_compute:application", "OS_NOVA_CONFIG_DIR"),
}
# The catalog: service type -> (service, path under its port).
ENDPOINTS = {"image": ("glance", ""), "placement": ("placement", ""),
             "compute": ("nova", "/v2.1"), "load-balancer": ("octavia", "")}


class CloudError(Exception):
    pass


def up(cloud: CloudDir, series: str, say: Callable[[str], None] = print) -> State:
    """Start the whole cloud; on any failure stop what was started, then raise."""
    if is_up(cloud):
        raise CloudError(f"a test cloud is already up in {cloud.root}; run "
                         f"scripts/test-cloud down first")
    down(cloud)  # what a killed `up` or a lost `down` left
    wanted = release(series)
    started = time.monotonic()
    try:
        return _up(cloud, wanted, say, started)
    except BaseException:
        down(cloud)
        raise


def _up(cloud: CloudDir, wanted: Release, say: Callable[[str], None],
        started: float) -> State:
    def step(what: str) -> None:
        say(f"test-cloud: {time.monotonic() - started:6.1f} s  {what}")

    shutil.rmtree(cloud.logs, ignore_errors=True)
    cloud.run.mkdir(parents=True, mode=0o700)
    state = new_state(wanted.series)
    save_state(cloud, state)
    step("venvs")
    for name in wanted.venvs:
        venvs.ensure(cloud, wanted, name, "python3")
    step("MariaDB and RabbitMQ")
    rabbitmq.start(cloud, state)
    mariadb.start(cloud, state)
    _write_configs(cloud, state)
    step("Keystone")
    _start_keystone(cloud, state)
    step("the other services' databases")
    with ThreadPoolExecutor(max_workers=2) as pool:
        syncs = [pool.submit(sync, cloud) for sync in (_sync_nova, _sync_octavia,
                                                        _sync_glance, _sync_placement)]
        identity = pool.submit(_register_services, state)
        for future in (*syncs, identity):
            future.result()
    rabbitmq.wait_ready(cloud, state)
    step("Glance, Placement, Nova, Octavia")
    for service in ("glance", "placement", "nova"):
        _start_wsgi(cloud, state, service)
    nova_conf = str(configs.config_path(cloud, "nova"))
    for program in ("nova-conductor", "nova-compute"):
        daemons.start(cloud, program, [
            str(cloud.venv_bin("nova", program)), "--config-file", nova_conf,
            "--log-file", str(cloud.logs / f"{program}.log")])
    daemons.start(cloud, "octavia", [
        str(cloud.venv_bin("octavia", "octavia-api")), "--config-file",
        str(configs.config_path(cloud, "octavia"))])
    for service in ("glance", "placement", "nova", "octavia"):
        daemons.wait_for(cloud, service, lambda s=service: daemons.http_answers(state.url(s)))
    step(f"the compute host {configs.COMPUTE_HOST}")
    _discover_compute_host(cloud)
    write_private(cloud.clouds_yaml, configs.clouds_yaml(state, CLOUD_NAME))
    step(f"up; clouds.yaml: {cloud.clouds_yaml} (cloud {CLOUD_NAME})")
    return state


def is_up(cloud: CloudDir) -> bool:
    """Its state is written and its processes run (clouds.yaml: `up` got to its end)."""
    return cloud.clouds_yaml.is_file() and load_state(cloud) is not None and any(
        daemons.alive(pid) for pid in daemons.marked(cloud))


def down(cloud: CloudDir) -> list[int]:
    """Stop every process of the cloud and remove its run folder (data, configuration,
    secrets); also after an `up` that was killed.  Return the PIDs stopped."""
    stopped = daemons.stop_all(cloud)
    shutil.rmtree(cloud.run, ignore_errors=True)
    return stopped


def _write_configs(cloud: CloudDir, state: State) -> None:
    for service, make in configs.CONFIGS.items():
        write_private(configs.config_path(cloud, service), configs.render(make(cloud, state)))
    for service, paste in (("glance", "glance-api-paste.ini"), ("nova", "api-paste.ini")):
        source = cloud.venvs / service / "etc" / service / paste
        shutil.copyfile(source, cloud.service(service) / paste)


def _manage(cloud: CloudDir, service: str, program: str, *args: str) -> None:
    conf = configs.config_path(cloud, service)
    daemons.run(cloud, f"{program} {' '.join(args)}", [
        str(cloud.venv_bin(service, program)), "--config-file", str(conf), *args])


def _start_keystone(cloud: CloudDir, state: State) -> None:
    for args in (("db_sync",),
                 ("fernet_setup", "--keystone-user", "root", "--keystone-group", "root"),
                 ("credential_setup", "--keystone-user", "root", "--keystone-group", "root")):
        _manage(cloud, "keystone", "keystone-manage", *args)
    # The admin's password goes through the environment, never argv.
    conf = str(configs.config_path(cloud, "keystone"))
    daemons.run(cloud, "keystone-manage bootstrap", [
        str(cloud.venv_bin("keystone", "keystone-manage")), "--config-file", conf,
        "bootstrap", "--bootstrap-admin-url", state.auth_url, "--bootstrap-public-url",
        state.auth_url, "--bootstrap-internal-url", state.auth_url,
        "--bootstrap-region-id", configs.REGION],
        extra_env={"OS_BOOTSTRAP_PASSWORD": state.passwords["admin"]})
    _start_wsgi(cloud, state, "keystone")
    daemons.wait_for(cloud, "keystone", lambda: daemons.http_answers(state.auth_url))


def _start_wsgi(cloud: CloudDir, state: State, service: str) -> None:
    module, config_env = WSGI[service]
    home = cloud.service(service)
    gunicorn_conf = home / "gunicorn.conf.py"
    # The apps parse sys.argv with oslo.config: gunicorn's own arguments must go.
    gunicorn_conf.write_text("\n".join((
        "import sys",
        "sys.argv[1:] = []",
        f"wsgi_app = {module!r}",
        f"bind = '127.0.0.1:{state.ports[service]}'",
        "workers = 1",
        "threads = 4",
        "timeout = 300",
        f"errorlog = {str(cloud.logs / (service + '-gunicorn.log'))!r}",
        "control_socket_disable = True",
        "",
    )))
    daemons.start(cloud, service, [str(cloud.venv_bin(service, "gunicorn")), "-c",
                                   str(gunicorn_conf)], extra_env={config_env: str(home)})


def _sync_glance(cloud: CloudDir) -> None:
    _manage(cloud, "glance", "glance-manage", "db_sync")


def _sync_placement(cloud: CloudDir) -> None:
    _manage(cloud, "placement", "placement-manage", "db", "sync")


def _sync_octavia(cloud: CloudDir) -> None:
    _manage(cloud, "octavia", "octavia-db-manage", "upgrade", "head")


def _sync_nova(cloud: CloudDir) -> None:
    _manage(cloud, "nova", "nova-manage", "api_db", "sync")
    _manage(cloud, "nova", "nova-manage", "cell_v2", "map_cell0")
    _manage(cloud, "nova", "nova-manage", "cell_v2", "create_cell", "--name", "cell1")
    _manage(cloud, "nova", "nova-manage", "db", "sync")


def _register_services(state: State) -> None:
    """The services' users (admin in the service project) and the catalog."""
    import openstack

    conn = openstack.connect(
        auth_url=state.auth_url, username="admin", password=state.passwords["admin"],
        project_name="admin", user_domain_name="Default", project_domain_name="Default",
        region_name=configs.REGION, app_name="amp-test-cloud")
    project = conn.identity.create_project(name=configs.SERVICE_PROJECT,
                                           domain_id="default")
    admin_role = conn.identity.find_role("admin", ignore_missing=False)
    for service_type, (service, path) in ENDPOINTS.items():
        user = conn.identity.create_user(name=service, password=state.passwords[service],
                                         domain_id="default")
        conn.identity.assign_project_role_to_user(project, user, admin_role)
        entry = conn.identity.create_service(name=service, type=service_type)
        for interface in ("public", "internal", "admin"):
            conn.identity.create_endpoint(service_id=entry.id, interface=interface,
                                          url=state.url(service, path),
                                          region_id=configs.REGION)


def _discover_compute_host(cloud: CloudDir) -> None:
    """nova-compute registers itself; map it into cell1 once it has."""
    def mapped() -> bool:
        _manage(cloud, "nova", "nova-manage", "cell_v2", "discover_hosts", "--verbose")
        log = (cloud.logs / "set-up.log").read_text(errors="replace")
        return configs.COMPUTE_HOST in log.rsplit("== nova-manage cell_v2 discover", 1)[-1]
    daemons.wait_for(cloud, "nova-compute", mapped, timeout=120)


def start_older_octavia(cloud: CloudDir, state: State, older: Release = OLDER_OCTAVIA,
                        say: Callable[[str], None] = print) -> str:
    """An older Octavia API beside the cloud's (its own venv, database and port; the
    same Keystone, Nova and RabbitMQ), not in the catalog; return its URL.  Started once:
    a second call returns the running one's URL."""
    (venv_name,) = older.venvs
    home = cloud.service(venv_name)
    url_file = home / "url"
    if url_file.is_file():
        return url_file.read_text()
    started = time.monotonic()
    venvs.ensure(cloud, older, venv_name, "python3")
    database = venv_name.replace("-", "_").replace(".", "_")
    mariadb.create_databases(cloud, (database,))
    port = free_port()
    conf = home / "octavia.conf"
    write_private(conf, configs.render(configs.octavia(cloud, state, venv_name, port,
                                                       database)))
    daemons.run(cloud, f"{venv_name} octavia-db-manage upgrade head", [
        str(cloud.venv_bin(venv_name, "octavia-db-manage")), "--config-file", str(conf),
        "upgrade", "head"])
    daemons.start(cloud, venv_name, [str(cloud.venv_bin(venv_name, "octavia-api")),
                                     "--config-file", str(conf)])
    url = f"http://127.0.0.1:{port}"
    daemons.wait_for(cloud, venv_name, lambda: daemons.http_answers(url))
    url_file.write_text(url)
    say(f"test-cloud: {venv_name} ({older.venvs[venv_name][0]}) up at {url} in "
        f"{time.monotonic() - started:.1f} s")
    return url


def status(cloud: CloudDir) -> str:
    state = load_state(cloud)
    running = [pid for pid in daemons.marked(cloud) if daemons.alive(pid)]
    if state is None:
        return (f"test cloud: down ({len(running)} stray processes)" if running
                else "test cloud: down")
    return (f"test cloud: up in {cloud.root}, series {state.series}, "
            f"{len(running)} processes; keystone {state.auth_url}; "
            f"clouds.yaml {cloud.clouds_yaml}")


