"""Entry point inside the conformance run's private network namespace.

``amp-image test --conformance`` starts ``unshare --net -- PYTHON -m
amp_image.verify.conformance.run PYTEST-ARGS`` with the harness venv's python.
"""

from __future__ import annotations

import sys

import pytest

from amp_image.verify.conformance import network

if __name__ == "__main__":
    if not network.in_private_netns():
        sys.exit("amp_image.verify.conformance.run: not in a private network namespace; "
                 "use `amp-image test --conformance`")
    network.ip("link", "set", "lo", "up")
    sys.exit(pytest.main(sys.argv[1:]))
