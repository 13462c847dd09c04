"""Name a git agent source's ref in full (refs/tags/X, refs/heads/X) before DIB fetches it.

DIB's source-repositories updates its cached clone with ``git fetch +REF:REF``.  For a
bare tag name that writes refs/heads/REF beside the cached refs/tags/REF, and git then
reads the stale tag: a tag made again on another commit (or a repository made again at
the same path) silently builds the cached commit.  A full name is fetched over the
cached ref, so the build gets what the repository holds now.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from amp_image.errors import PlanError

# git's own order for a short name (git help revisions): a tag wins over a branch.
_SHORT_NAME_ORDER = ("refs/tags/{}", "refs/heads/{}")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def needs_lookup(ref: str) -> bool:
    """A branch or tag name; not empty (DIB's default, master), a full ref or a commit."""
    return bool(ref) and not ref.startswith("refs/") and not _COMMIT.fullmatch(ref)


def pick_full_ref(ref: str, listing: str) -> str | None:
    """The full name git would read ``ref`` as, from ``git ls-remote --refs`` output."""
    names = {line.split()[1] for line in listing.splitlines() if len(line.split()) == 2}
    return next((form.format(ref) for form in _SHORT_NAME_ORDER
                 if form.format(ref) in names), None)


def full_ref(location: str, ref: str,
             run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """``ref`` as a full ref name of the repository at ``location``; PlanError if it has none."""
    if not needs_lookup(ref):
        return ref
    patterns = [form.format(ref) for form in _SHORT_NAME_ORDER]
    try:
        listed = run(["git", "ls-remote", "--refs", location, *patterns],
                     capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise PlanError("--agent-source git+...: git is not installed on this host; "
                        "install it (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise PlanError(f"--agent-source: git repository {location} did not answer in 120 s; "
                        "check the URL and the network") from None
    if listed.returncode != 0:
        reason = (listed.stderr.strip().splitlines() or ["git ls-remote failed"])[-1]
        raise PlanError(f"--agent-source: cannot read git repository {location} ({reason}); "
                        "check the URL and that git on this host can reach it")
    found = pick_full_ref(ref, listed.stdout)
    if found is None:
        raise PlanError(f"--agent-source: {location} has no branch or tag '{ref}'; name one "
                        "it has, a commit, or a full ref (refs/...)")
    return found
