"""amp-image command line: build, test and publish Octavia amphora images.

One module per command (group); this one holds the click group, ``main``, the
console script's entry point."""

from __future__ import annotations

import click

from amp_image import version
from amp_image.cli import build, cache, certs, diff, openstack_config, publish, test


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version.source().describe())
        ctx.exit()


@click.group()
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Show the version and the git commit amp-image was built from, and exit.")
def main() -> None:
    """Build, boot-test and publish SR-IOV ready OpenStack Octavia amphora images."""


for _command in (build.build, test.test_image, publish.publish, openstack_config.openstack_config,
                 diff.diff, certs.check_certs, cache.cache):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
