"""A git agent source checked, and its ref named in full (refs/tags/X, refs/heads/X),
before DIB fetches it.

Every git source is read with ``git ls-remote`` before the build: a URL that does not
exist, or that git on this host cannot read, fails in seconds rather than in DIB's
source-repositories minutes in.  A branch or tag name, a full ref and the default
(no ref: DIB fetches master) must be there too; a commit id cannot be asked for by
ls-remote (it lists refs), so for one the repository only has to be readable.

DIB's source-repositories updates its cached clone with ``git fetch +REF:REF``.  For a
bare tag name that writes refs/heads/REF beside the cached refs/tags/REF, and git then
reads the stale tag: a tag made again on another commit (or a repository made again at
the same path) silently builds the cached commit.  A full name is fetched over the
cached ref, so the build gets what the repository holds now.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable

from amp_image.errors import PlanError

# git's own order for a short name (git help revisions): a tag wins over a branch.
_SHORT_NAME_ORDER = ("refs/tags/{}", "refs/heads/{}")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")
TIMEOUT_S = 120
# What DIB's source-repositories fetches for a git source given no ref.
DEFAULT_REF = "master"


def needs_lookup(ref: str) -> bool:
    """A branch or tag name; not empty (DIB's default, master), a full ref or a commit."""
    return bool(ref) and not ref.startswith("refs/") and not _COMMIT.fullmatch(ref)


def pick_full_ref(ref: str, listing: str) -> str | None:
    """The full name git would read ``ref`` as, from ``git ls-remote --refs`` output."""
    names = _names(listing)
    return next((form.format(ref) for form in _SHORT_NAME_ORDER
                 if form.format(ref) in names), None)


def _names(listing: str) -> set[str]:
    return {line.split()[1] for line in listing.splitlines() if len(line.split()) == 2}


def ls_remote(location: str, *patterns: str,
              run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """``git ls-remote --refs LOCATION PATTERNS...``: the refs (no HEAD, no peeled tags) of
    the repository at location; PlanError naming the cause if git cannot read it."""
    # No credential prompt on the terminal: a check that waits for one is no check.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        listed = run(["git", "ls-remote", "--refs", location, *patterns], capture_output=True,
                     text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise PlanError("--agent-source git+...: git is not installed on this host; "
                        "install it (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise PlanError(f"--agent-source: git repository {location} did not answer in "
                        f"{TIMEOUT_S} s; check the URL and the network") from None
    if listed.returncode != 0:
        raise PlanError(f"--agent-source: cannot read git repository {location} "
                        f"({failure_reason(listed.stderr)}); check the URL and that git on "
                        "this host can reach it")
    return listed.stdout


def failure_reason(stderr: str) -> str:
    """git's first "fatal:" (or "error:") line, the cause; not its closing advice
    ("Please make sure you have the correct access rights / and the repository exists.")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[0] if lines else "git ls-remote failed"


def full_ref(location: str, ref: str,
             run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """``ref`` as a full ref name of the repository at ``location``, once the repository
    is read and found to have it; PlanError naming the fix if not.  A commit, and no ref
    (DIB's master), are returned as given."""
    if _COMMIT.fullmatch(ref):
        # ls-remote lists refs, not commits: the repository only has to be readable.
        ls_remote(location, "HEAD", run=run)
        return ref
    if ref.startswith("refs/"):
        if ref not in _names(ls_remote(location, ref, run=run)):
            raise PlanError(f"--agent-source: {location} has no ref '{ref}'; name one it "
                            "has, a branch, a tag or a commit")
        return ref
    name = ref or DEFAULT_REF
    found = pick_full_ref(name, ls_remote(location, *(form.format(name)
                                                      for form in _SHORT_NAME_ORDER), run=run))
    if found is None and not ref:
        raise PlanError(f"--agent-source: {location} has no branch '{DEFAULT_REF}', which the "
                        "build fetches when no @REF is given; add @REF naming a branch, tag "
                        "or commit it has")
    if found is None:
        raise PlanError(f"--agent-source: {location} has no branch or tag '{ref}'; name one "
                        "it has, a commit, or a full ref (refs/...)")
    # No ref stays none: DIB fetches its default itself, as it always has.
    return found if ref else ref
