"""The root password of a debug image: read without argv, kept only as a hash.

The password comes from the environment (AMP_ROOT_PASSWORD), a file only its
owner can read (--root-password-file) or a prompt (--root-password-prompt),
never from the command line, which every user of the host can read in ps or
/proc.  It is hashed at once on the host (SHA-512 crypt, ``openssl passwd -6``
fed on stdin) and the plain text is dropped; the build sees only the hash, in
a file only root can read (see workdir.py and the root-passwd element), never in
DIB's environment (which DIB records in its dib_environment manifests).
"""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from amp_image.errors import HostError, PlanError

ENV_VAR = "AMP_ROOT_PASSWORD"
SOURCES = f"set {ENV_VAR}, or pass --root-password-file FILE or --root-password-prompt"
SHA512_CRYPT = re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")


def from_file(path: Path) -> str:
    """The first line of a file that neither its group nor others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise PlanError(f"--root-password-file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PlanError(f"--root-password-file {path} is not a file")
    if mode & 0o077:
        raise PlanError(f"--root-password-file {path} is readable by others (mode "
                        f"{stat.S_IMODE(mode):04o}); chmod 600 {path}")
    return text.split("\n", 1)[0].rstrip("\r")


def read_password(env: Mapping[str, str], *, file: Path | None,
                  prompt: Callable[[], str] | None) -> str:
    """The password from its one source ('' if none was given)."""
    given = [name for name, on in ((ENV_VAR, env.get(ENV_VAR)), ("--root-password-file", file),
                                   ("--root-password-prompt", prompt)) if on]
    if len(given) > 1:
        raise PlanError(f"root password given twice ({' and '.join(given)}); give one")
    if file:
        password = from_file(file)
    elif prompt:
        password = prompt()
    else:
        password = env.get(ENV_VAR, "")
    if given and not password:
        raise PlanError(f"the root password from {given[0]} is empty")
    if "\n" in password or "\0" in password:
        raise PlanError("the root password holds a line break or NUL; choose another")
    return password


def hash_password(password: str) -> str:
    """SHA-512 crypt hash with a random salt; the password goes to openssl on stdin."""
    try:
        result = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                                capture_output=True, text=True)
    except FileNotFoundError:
        raise HostError("openssl is needed to hash the root password; install it "
                        "(apt install openssl)") from None
    hashed = result.stdout.strip()
    if result.returncode != 0 or not SHA512_CRYPT.fullmatch(hashed):
        raise HostError(f"openssl passwd -6 failed: {' '.join(result.stderr.split())}")
    return hashed
