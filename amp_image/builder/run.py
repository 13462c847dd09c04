"""``run(request)``: one build from a request to an image, the one way to build.

It reads the request (request.py), resolves a git ref, learns the host, makes the
plan, and then (unless a dry run) checks the host and the mirrors, turns SIGTERM
into Ctrl-C and runs DIB (dib.py, which owns the work dir's lock, leftovers and
cleanup).  What lies above builder/ (reading an earlier image, publishing) comes in
through :class:`Hooks`; the command line (cli/build.py) only maps options to a
request, prints and exits."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from amp_image.builder import binfmt, dib, host, preflight
from amp_image.builder.dib_elements import elements_dir
from amp_image.builder.plan import BuildPlan, make_plan
from amp_image.builder.process import stop_on_sigterm
from amp_image.builder.request import (
    BuildRequest,
    EarlierImageReader,
    build_log,
    build_options,
    with_full_agent_ref,
)
from amp_image.errors import PlanError

DEBUG_IMAGE_WARNING = ("amp-image: warning: a root password makes a debug image; never use it "
                       "for production amphorae")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _nothing(plan: BuildPlan) -> None:
    pass


@dataclass(frozen=True)
class Hooks:
    """What the caller lends a build: where its lines go, and what lies above builder/."""

    emit: Callable[[str], None] = print
    warn: Callable[[str], None] = _to_stderr
    # Reads --pin-packages-from's earlier image or published folder (diff/read.py).
    read_earlier_image: EarlierImageReader | None = None
    # The caller's own checks of the plan, before anything is built (a publish folder).
    planned: Callable[[BuildPlan], None] = _nothing
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass(frozen=True)
class Build:
    plan: BuildPlan
    # None for a dry run.
    result: dib.BuildResult | None = None


def plan_request(request: BuildRequest, hooks: Hooks) -> BuildPlan:
    """The request read and planned; a git ref is looked up unless it is a dry run."""
    opts = build_options(request, hooks.environ, hooks.read_earlier_image)
    if not request.dry_run:
        opts = with_full_agent_ref(opts)
    context = host.host_context(hooks.environ, ca_bundle=request.ca_bundle or "",
                                mirror=request.mirror or "")
    return make_plan(opts, context, elements_dir())


def check_host(plan: BuildPlan, environ: MutableMapping[str, str]) -> None:
    """Root, the tools, emulation of a foreign architecture, the mirrors and indexes, and
    a writable output folder: each missing one fails before DIB starts."""
    host.check_root()
    host.check_tools()
    binfmt.check_emulation(plan.env["ARCH"])
    if plan.uefi:
        host.check_vfat_tools()
    preflight.check_sources(plan, environ)
    folder = plan.options.output.parent
    if not folder.is_dir():
        raise PlanError(f"the output folder {folder} does not exist; create "
                        "it or choose another -o")
    if not os.access(folder, os.W_OK):
        raise PlanError(f"cannot write to {folder} (read-only or not yours); "
                        "choose another -o")


def _building_line(plan: BuildPlan, log: object) -> str:
    opts = plan.options
    return (f"building {opts.output.name}: {opts.base_os} {plan.env['DIB_RELEASE']} "
            f"{plan.env['ARCH']}, agent {opts.agent_source.describe()} {opts.agent_version}, "
            f"sriov={'on' if opts.sriov else 'off'}; log {log}")


def run(request: BuildRequest, hooks: Hooks | None = None) -> Build:
    """Build what request asks for (or only plan it: request.dry_run).  Raises an
    AmpImageError whose text is the one line to show, or KeyboardInterrupt (Ctrl-C or
    SIGTERM) once the build is stopped and cleaned up."""
    hooks = hooks or Hooks()
    plan = plan_request(request, hooks)
    hooks.planned(plan)
    if plan.options.root_password_hash:
        hooks.warn(DEBUG_IMAGE_WARNING)
    if request.dry_run:
        return Build(plan)
    check_host(plan, hooks.environ)
    stop_on_sigterm()
    log = build_log(request.log_file, plan.options.output)
    hooks.emit(_building_line(plan, log))
    result = dib.run_build(plan, device_mapper=host.device_mapper_works(), log_file=log,
                           verbose=request.verbose, emit=hooks.emit, wait=request.wait)
    return Build(plan, result)
