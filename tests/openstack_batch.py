"""Run several `openstack` commands in one process of the real client: a JSON list of
argument lists on stdin, a JSON list of {code, stdout, stderr} on stdout.  Each command
is the client's own shell (openstackclient.shell) with its plugins, as `openstack ARGS`
runs it; one process saves the ~3 s of imports each `openstack` start costs.  Run by
the test cloud's client venv (tests/cloud_client.py), not by amp-image's."""

import contextlib
import io
import json
import sys

from openstackclient import shell


def main() -> None:
    results = []
    for argv in json.load(sys.stdin):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = shell.OpenStackShell().run(argv)
        results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    json.dump(results, sys.__stdout__)


if __name__ == "__main__":
    main()
