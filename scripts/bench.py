"""Benchmarks: build time (cold, warm, agent change), image size, boot-to-ready.

Run through ``scripts/bench``.  Prints a table and writes JSON.  Figures that
take under a minute are measured over several runs (min/median/max); longer
ones once.  Builds run the real ``amp-image build`` and boots the real harness.

``--matrix SERIES...`` instead builds each series' image (shared cache) and
boot-tests it with ``amp-image test``: the README's compatibility rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from amp_image.builder.process import stop_on_sigterm
from amp_image.image import qemuimg
from amp_image.image.imagefs import mounted_image
from amp_image.image.records import read_image_record
from amp_image.verify.boottest import booted_amphora

AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")
TARGETS = {
    "cold build (s)": 100,
    "warm rebuild (s)": 60,
    "warm rebuild, agent changed (s)": 60,
    "qcow2 size (MiB)": 250,
    "QEMU -> agent /info (s)": 35,
}
CRITICAL_CHAIN = ("systemd-analyze time; "
                  "systemd-analyze critical-chain --no-pager amphora-agent.service")
# How long a build stopped by the bench gets to undo its mounts and loop devices.
CHILD_CLEANUP_S = 300
SHARED_CACHE = Path("~/.cache/image-create").expanduser()


@dataclass
class Figure:
    name: str
    values: list[float] = field(default_factory=list)
    unit: str = ""

    def row(self) -> dict:
        values = self.values
        target = TARGETS.get(self.name)
        median = statistics.median(values)
        return {
            "figure": self.name, "runs": len(values), "min": min(values),
            "median": median, "max": max(values), "target": target,
            "met": None if target is None else median <= target,
        }


class ResourceSampler:
    """Peak memory in use and peak disk growth on the work dir's file system."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.peak_mem = 0
        self.peak_disk = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _mem_used() -> int:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
        return kib * 1024

    def _disk_used(self) -> int:
        usage = shutil.disk_usage(self.path)
        return usage.used

    def _run(self) -> None:
        base_mem, base_disk = self._mem_used(), self._disk_used()
        while not self._stop.wait(self.interval):
            self.peak_mem = max(self.peak_mem, self._mem_used() - base_mem)
            self.peak_disk = max(self.peak_disk, self._disk_used() - base_disk)

    def __enter__(self) -> ResourceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_to_end(cmd: list[str], **kw) -> int:
    """Run a child (a build) and return its exit code.

    On Ctrl-C or SIGTERM the child gets one SIGTERM (amp-image build then undoes
    its mounts, loop devices and lock) and the bench waits for it to finish
    before it stops too.  The child has its own session, so a Ctrl-C on the
    terminal reaches it only this way, once.
    """
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    try:
        return proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=CHILD_CLEANUP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


@dataclass
class BuildRun:
    seconds: float
    peak_mem: int
    peak_disk: int
    layers: str  # the build's "layer cache: restored ...; saving ..." line
    steps: list[tuple[str, float]]  # DIB's slowest scripts, slowest first


# DIB's summary after each phase: "dib-run-parts 75-amphora-agent-install   23.702"
DIB_SCRIPT_TIME = re.compile(r"\| dib-run-parts (\d\d-\S+)\s+(\d+\.\d+)$")
SLOW_STEP_S = 3.0


def slowest_steps(dib_log: str) -> list[tuple[str, float]]:
    """The DIB scripts that took SLOW_STEP_S or more, slowest first."""
    steps = [(m.group(1), float(m.group(2)))
             for m in map(DIB_SCRIPT_TIME.search, dib_log.splitlines()) if m]
    return sorted((s for s in steps if s[1] >= SLOW_STEP_S), key=lambda s: -s[1])


def timed_build(output: Path, cache: Path, work: Path, *extra: str) -> BuildRun:
    cmd = [AMP_IMAGE, "build", "--sriov", "-o", str(output), "--cache-dir", str(cache),
           "--work-dir", str(work), *extra]
    work.mkdir(parents=True, exist_ok=True)
    said = work.parent / "build-output.txt"
    start = time.monotonic()
    with ResourceSampler(work) as sampler, open(said, "w") as out:
        returncode = run_to_end(cmd, stdin=subprocess.DEVNULL, stdout=out)
    seconds = time.monotonic() - start
    if returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed; see {output}.log")
    layers = next((line.strip() for line in said.read_text().splitlines()
                   if line.startswith("layer cache:")), "layer cache: not used")
    dib_log = output.with_name(output.name + ".log")
    steps = slowest_steps(dib_log.read_text(errors="replace")) if dib_log.is_file() else []
    return BuildRun(seconds, sampler.peak_mem, sampler.peak_disk, layers, steps)


def image_sizes(image: Path) -> dict[str, float]:
    info = qemuimg.info(image)
    with mounted_image(image) as root:
        usage = shutil.disk_usage(root)
    return {"qcow2 size (MiB)": image.stat().st_size / 2**20,
            "virtual size (MiB)": info["virtual-size"] / 2**20,
            "used inside (MiB)": usage.used / 2**20}


def boot_times(image: Path, runs: int) -> tuple[list[float], list[float], str, str]:
    """First boots of fresh VMs (a second boot of one VM is not what Nova does), and the
    last one's systemd critical chain up to the agent."""
    ssh, agent, path, chain = [], [], "", ""
    for run in range(runs):
        with booted_amphora(image) as amphora:
            ssh.append(amphora.report.ssh_banner_s)
            agent.append(amphora.report.agent_ready_s)
            path = f"{amphora.report.boot_path}, {amphora.report.accel}"
            if run == runs - 1:
                chain = amphora.testinfra_host().run(CRITICAL_CHAIN).stdout
    return ssh, agent, path, chain


def render(rows: list[dict]) -> str:
    lines = [f"{'figure':<28} {'runs':>4} {'min':>8} {'median':>8} {'max':>8} "
             f"{'target':>7}  met",
             "-" * 74]
    for r in rows:
        target = "" if r["target"] is None else f"<= {r['target']}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['figure']:<28} {r['runs']:>4} {r['min']:>8.1f} {r['median']:>8.1f} "
                     f"{r['max']:>8.1f} {target:>7}  {met}")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gib": f"{int(mem) / 2**20:.0f}",
            "kernel": platform.release(), "date": datetime.now(UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("build/bench"),
                        help="Scratch and results folder (ignored by git).")
    parser.add_argument("--boot-runs", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true",
                        help="Reuse the bench cache instead of starting from an empty one.")
    parser.add_argument("--other-agent-version", default="18.0.1",
                        help="Agent version for the 'warm rebuild, agent changed' figure.")
    parser.add_argument("--image", type=Path,
                        help="Measure this image's size and boots only (no builds).")
    parser.add_argument("--matrix", nargs="+", metavar="SERIES",
                        help="Build and boot-test each OpenStack series' image instead.")
    parser.add_argument("--arch", default="amd64", help="Architecture for --matrix.")
    parser.add_argument("--upstream", action="store_true",
                        help="Build Octavia's own elements with its diskimage-create.sh "
                             "too, and boot both images in turn: every figure for both, "
                             "with amp-image's ratio (scripts/bench_upstream.py).")
    parser.add_argument("--reuse-builds", action="store_true",
                        help="With --upstream: the build figures and images of the last "
                             "run (build/bench/upstream-builds.json); boot them again.")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.matrix:
        return run_matrix(args.matrix, args.arch, root)
    if args.upstream:
        return side_by_side(args, root)
    cache, work = root / "cache", root / "work"
    image = args.image.resolve() if args.image else root / "amphora-x64-haproxy.qcow2"
    figures: list[Figure] = []
    extra: dict[str, float] = {}
    builds = build_figures(args, image, cache, work, figures, extra) if not args.image else {}
    layers = {label: run.layers for label, run in builds.items()}
    steps = {label: run.steps for label, run in builds.items()}
    for name, value in image_sizes(image).items():
        figures.append(Figure(name, [value]))
    print(f"bench: {args.boot_runs} boots...", flush=True)
    ssh, agent, boot_path, chain = boot_times(image, args.boot_runs)
    figures.append(Figure("QEMU -> SSH banner (s)", ssh))
    figures.append(Figure("QEMU -> agent /info (s)", agent))
    for name, value in extra.items():
        figures.append(Figure(name, [value]))

    rows = [f.row() for f in figures]
    result = {"machine": machine(), "image": str(image), "boot_path": boot_path,
              "figures": rows, "layer_cache": layers, "slowest_steps": steps,
              "critical_chain": chain}
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(rows))
    for build, line in layers.items():
        print(f"{build}: {line}")
        slow = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.get(build, []))
        print(f"  DIB scripts of {SLOW_STEP_S:.0f} s or more: {slow or 'none'}")
    print(f"boot path: {boot_path}")
    print(f"critical chain of the last boot:\n{chain}")
    print(f"machine: {result['machine']}")
    print(f"bench: results in {out}")
    return 0


def build_figures(args: argparse.Namespace, image: Path, cache: Path, work: Path,
                  figures: list[Figure], extra: dict[str, float]) -> dict[str, BuildRun]:
    """Cold build (unless --skip-cold), warm rebuild, warm rebuild with another agent;
    returns each build's run (its layer cache line and slowest DIB scripts among it)."""
    builds = {}
    if not args.skip_cold:
        shutil.rmtree(cache, ignore_errors=True)
        print("bench: cold build (empty cache)...", flush=True)
        run = timed_build(image, cache, work)
        figures.append(Figure("cold build (s)", [run.seconds]))
        extra.update({"cold build peak memory (MiB)": run.peak_mem / 2**20,
                      "cold build peak disk (MiB)": run.peak_disk / 2**20})
        builds["cold build"] = run
    print("bench: warm rebuild...", flush=True)
    run = timed_build(image, cache, work)
    figures.append(Figure("warm rebuild (s)", [run.seconds]))
    extra.update({"warm build peak memory (MiB)": run.peak_mem / 2**20,
                  "warm build peak disk (MiB)": run.peak_disk / 2**20})
    builds["warm rebuild"] = run
    print(f"bench: warm rebuild, agent {args.other_agent_version}...", flush=True)
    other = image.with_name("agent-changed.qcow2")
    run = timed_build(other, cache, work, "--agent-version", args.other_agent_version)
    figures.append(Figure("warm rebuild, agent changed (s)", [run.seconds]))
    builds["agent changed"] = run
    other.unlink(missing_ok=True)
    return builds


def timed_command(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Seconds a command (a build) took; its output to log; a failure ends the bench."""
    start = time.monotonic()
    with open(log, "w") as out:
        returncode = run_to_end(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    if returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed (exit {returncode}); see {log}")
    return time.monotonic() - start


def upstream_builds(version: str, root: Path, image: Path) -> dict[str, float]:
    """Octavia's diskimage-create.sh from octavia==version's sdist: cold (empty cache),
    then warm (the same inputs again)."""
    import bench_upstream

    inputs = bench_upstream.prepare(version, root / "src")
    cache, work = root / "cache", root / "work"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = bench_upstream.build_environment(inputs, work)
    cmd = bench_upstream.command(inputs, image, work, cache)
    seconds = {}
    for label in ("cold build (s)", "warm rebuild (s)"):
        print(f"bench: upstream {label.split(' (')[0]}: {' '.join(cmd)}", flush=True)
        seconds[label] = timed_command(cmd, env, root / f"{label.split()[0]}-build.log")
    return seconds


def side_by_side(args: argparse.Namespace, root: Path) -> int:
    """Upstream's build and amp-image's in one run, then both images booted in turn."""
    import bench_upstream

    from amp_image.builder.options import DEFAULT_AGENT_VERSION

    upstream_image = root / "upstream" / "amphora-upstream.qcow2"
    ours_image = root / "amphora-x64-haproxy.qcow2"
    built = root / "upstream-builds.json"
    if args.reuse_builds:
        missing = [p for p in (built, upstream_image, ours_image) if not p.is_file()]
        if missing:
            raise SystemExit(f"bench: --reuse-builds: no {missing[0]}; run scripts/bench "
                             "--upstream without it first")
        saved = json.loads(built.read_text())
        theirs, ours = saved["upstream"], saved["amp-image"]
    else:
        theirs = upstream_builds(DEFAULT_AGENT_VERSION, root / "upstream", upstream_image)
        figures: list[Figure] = []
        builds = build_figures(args, ours_image, root / "cache", root / "work", figures, {})
        ours = {f.name: statistics.median(f.values) for f in figures}
        for side, image in (("upstream", upstream_image), ("amp-image", ours_image)):
            size = image.stat().st_size / 2**20
            (theirs if side == "upstream" else ours)["qcow2 size (MiB)"] = size
        ours["layer cache"] = {label: run.layers for label, run in builds.items()}
        # Kept at once: the boots take as long again, and --reuse-builds starts there.
        built.write_text(json.dumps({"upstream": theirs, "amp-image": ours}, indent=2) + "\n")
    layers = ours.pop("layer cache", {})
    boots = bench_upstream.alternate_boots(
        {"upstream": upstream_image, "amp-image": ours_image}, args.boot_runs,
        bench_upstream.BOOT)
    for side, figure in boots.items():
        into = theirs if side == "upstream" else ours
        into["QEMU -> SSH banner (s)"] = statistics.median(figure.ssh)
        into["QEMU -> agent /info (s)"] = statistics.median(figure.agent)
        into["memory used after boot (MiB)"] = statistics.median(figure.memory)
    rows = bench_upstream.compare(theirs, ours)
    result = {"machine": machine(), "agent_version": DEFAULT_AGENT_VERSION,
              "workarounds": bench_upstream.WORKAROUNDS, "rows": rows,
              "boots": {side: vars(figure) for side, figure in boots.items()},
              "layer_cache": layers, "boot": bench_upstream.BOOT,
              "boot_why": bench_upstream.BOOT_WHY}
    out = root / f"upstream-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(bench_upstream.render(rows))
    print(f"boots: {args.boot_runs} each, in turn, seed's flavor, {bench_upstream.BOOT} "
          f"({bench_upstream.BOOT_WHY}); "
          f"{boots['amp-image'].boot_path}")
    print("upstream's workarounds here: " + "; ".join(bench_upstream.WORKAROUNDS))
    print(f"bench: results in {out}")
    return 0


def matrix_cell(series: str, arch: str, root: Path) -> dict:
    """Build one series' image with the shared cache, then `amp-image test` it."""
    image = root / f"amphora-{series}-{arch}.qcow2"
    report = image.with_name(image.stem + ".report.json")
    report.unlink(missing_ok=True)
    cell: dict = {"series": series, "arch": arch, "image": str(image)}
    cmd = [AMP_IMAGE, "build", "--series", series, "--arch", arch, "-o", str(image),
           "--cache-dir", str(SHARED_CACHE), "--work-dir", str(root / "work")]
    print(f"bench: {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    built = run_to_end(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    cell["build_s"] = round(time.monotonic() - start, 1)
    if built != 0:
        return {**cell, "result": f"build failed (exit {built}); see {image}.log"}
    record = read_image_record(image)
    cell.update(octavia=record.agent.get("AMPHORA_AGENT_VERSION", "?"),
                release=next((i.suite for i in record.apt_indexes if "-" not in i.suite), "?"),
                qcow2_mib=round(image.stat().st_size / 2**20, 1))
    with open(image.with_name(image.stem + ".test.log"), "wb") as log:
        tested = run_to_end([AMP_IMAGE, "test", str(image), "--report", str(report)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    if not report.is_file():
        return {**cell, "result": f"amp-image test wrote no report (exit {tested})"}
    booted = json.loads(report.read_text())
    outcomes = [c["outcome"] for c in booted["checks"].values()]
    counts = {o: outcomes.count(o) for o in ("passed", "skipped")}
    counts["failed"] = len(outcomes) - counts["passed"] - counts["skipped"]
    return {**cell, **counts, "agent_ready_s": round(booted["agent_ready_s"], 1),
            "result": "passed" if tested == 0 else f"amp-image test exit {tested}"}


def render_matrix(cells: list[dict]) -> str:
    lines = ["| series | octavia | Debian release | architecture | build | qcow2 | "
             "QEMU -> agent ready | checks | result |", "|" + " --- |" * 9]
    for c in cells:
        checks = (f"{c['passed']} passed, {c['skipped']} n/a, {c['failed']} failed"
                  if "passed" in c else "")
        ready = f"{c['agent_ready_s']} s" if "agent_ready_s" in c else ""
        size = f"{c['qcow2_mib']} MiB" if "qcow2_mib" in c else ""
        lines.append(f"| {c['series']} | {c.get('octavia', '')} | {c.get('release', '')} | "
                     f"{c['arch']} | {c['build_s']} s | {size} | {ready} | {checks} | "
                     f"{c['result']} |")
    return "\n".join(lines)


def run_matrix(series: list[str], arch: str, root: Path) -> int:
    root = root / "matrix"
    root.mkdir(parents=True, exist_ok=True)
    cells = [matrix_cell(s, arch, root) for s in series]
    out = root / f"matrix-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"machine": machine(), "cells": cells}, indent=2) + "\n")
    print(render_matrix(cells))
    print(f"bench: results in {out}")
    return 0 if all(c["result"] == "passed" for c in cells) else 1


def cli(argv: list[str] | None = None) -> int:
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("bench: interrupted; builds and VMs stopped and cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
