"""scripts/test-cloud up|down|status: see the package's docstring."""

from __future__ import annotations

import argparse
import signal
import sys

from testcloud import cloud
from testcloud.daemons import DaemonError
from testcloud.layout import CloudDir
from testcloud.releases import DEFAULT_SERIES, ReleaseError
from testcloud.venvs import VenvError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/test-cloud", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--series", default=DEFAULT_SERIES,
                        help=f"the services' release series (default {DEFAULT_SERIES})")
    args = parser.parse_args(argv)
    where = CloudDir.from_env()
    # SIGTERM unwinds like Ctrl-C, so that a stopped `up` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.action == "up":
            cloud.up(where, args.series)
        elif args.action == "down":
            stopped = cloud.down(where)
            print(f"test-cloud: down ({len(stopped)} processes stopped)")
        else:
            print(cloud.status(where))
    except (cloud.CloudError, DaemonError, ReleaseError, VenvError) as exc:
        print(f"test-cloud: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
