"""The cloud set-up: the OpenStack connection (openstacksdk, an optional extra), the
Glance image spec and upload, and ``openstack-config``'s aggregate, compute flavor and
Octavia flavor for (SR-IOV) amphorae, as commands or applied."""
