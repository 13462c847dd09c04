"""A small, real OpenStack on this machine for the tests of amp-image's cloud commands.

Keystone, Glance (file store), Placement, Nova (API, conductor, and one nova-compute on
Nova's fake virt driver named like the seed's SR-IOV host) and the Octavia API (amphora
provider), on MariaDB and RabbitMQ from Debian's packages.  Every service comes from
PyPI at the series' upper constraints, in a venv of its own under the cloud's folder;
every listener is on loopback.  ``scripts/test-cloud up|down|status`` drives it, and the
tests' ``test_cloud`` fixture (tests/conftest.py).

The flow: ``releases`` (what to install) -> ``venvs`` -> ``configs`` (pure: the
services' configuration files) -> ``daemons`` (start, wait, stop) with ``mariadb`` and
``rabbitmq`` -> ``cloud`` (up and down, in order).
"""
