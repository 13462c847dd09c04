"""Octavia conformance: the controller's own driver code drives a booted amphora.

Runs in a virtualenv that holds the ``octavia`` release matching the image's
agent (:mod:`amp_image.verify.conformance.harness_venv`), never in amp-image's own,
and inside a network namespace of its own (:mod:`amp_image.verify.conformance.network`)
where the amphora's VIP and member NICs are taps on bridges, and the load
balancer's clients and backends are real sockets on those bridges.
"""
