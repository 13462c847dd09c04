"""root-passwd with rebind-sshd, without a build: the host-side staging script, then
both elements' in-image scripts in a private mount namespace (chpasswd stubbed).
The image stores only the hash; password logins over SSH only when asked, through
a drop-in sshd reads before rebind-sshd's."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from amp_image.builder import rootpw

ELEMENT = Path(__file__).resolve().parent.parent
ELEMENTS = ELEMENT.parent
SECRET = "Sw0rdfish-not-in-any-log"


# --- the element: hash only, SSH only when asked, drop-in read first ----------------

IN_NAMESPACE = """
set -eu
hash=$(cat "$1")
# Private to this mount namespace: the host's /etc/ssh, /mnt and /tmp are untouched.
mount -t tmpfs amp-test /etc/ssh
# The elements may live under /tmp (a clone there): copied out before /tmp is hidden.
mount -t tmpfs amp-test /mnt
cp "$2/rebind-sshd/post-install.d/30-sshd-amphora" "$2/root-passwd/post-install.d/98-root-passwd" \
    /mnt/
mount -t tmpfs amp-test /tmp
mkdir -p /tmp/in_target.d/root-passwd /tmp/stub
printf '%s\\n' "$hash" > /tmp/in_target.d/root-passwd/hash
cat > /tmp/stub/chpasswd <<'STUB'
#!/bin/sh
{ echo "args: $*"; cat; } > /tmp/chpasswd.seen
STUB
chmod +x /tmp/stub/chpasswd
export PATH=/tmp/stub:$PATH
/mnt/30-sshd-amphora
AMP_IMAGE_ROOT=/tmp/image /mnt/98-root-passwd
cat /tmp/chpasswd.seen
echo "== record"
cat /tmp/image/etc/amp-image/root-password
for f in /etc/ssh/sshd_config.d/*.conf; do
    echo "== $(basename "$f")"
    cat "$f"
done
"""


def run_elements(tmp_path: Path, ssh: bool) -> tuple[str, dict[str, list[str]], list[str]]:
    """The host-side staging script, then rebind-sshd's and root-passwd's in-image
    scripts (chpasswd stubbed).  Returns what chpasswd got, the sshd drop-ins and the
    image's root-password record."""
    hashed = rootpw.hash_password(SECRET)
    hash_file = tmp_path / "root-password.hash"
    hash_file.write_text(hashed + "\n")
    hash_file.chmod(0o600)
    hooks = tmp_path / "hooks"
    env = {"PATH": os.environ["PATH"], "TMP_HOOKS_PATH": str(hooks),
           "DIB_AMP_ROOT_PASSWORD_HASH_FILE": str(hash_file)}
    staging = ELEMENT / "extra-data.d/50-root-passwd-hash"
    subprocess.run([str(staging)], env=env, check=True)
    staged = hooks / "root-passwd" / "hash"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    env["DIB_AMP_ROOT_PASSWORD_SSH"] = "1" if ssh else "0"
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                          IN_NAMESPACE, "-", str(staged), str(ELEMENTS)],
                         env=env, capture_output=True, text=True, check=True).stdout
    seen, _, rest = out.partition("== ")
    dropins: dict[str, list[str]] = {}
    for block in ("== " + rest).split("== ")[1:]:
        name, _, body = block.partition("\n")
        dropins[name] = body.splitlines()
    record = dropins.pop("record")
    assert SECRET not in out
    return seen.replace(hashed, "<HASH>"), dropins, record


def sshd_effective(dropins: dict[str, list[str]], keyword: str) -> str | None:
    """sshd_config(5): drop-ins are read in name order and, for each keyword, the
    first value obtained is used."""
    for name in sorted(dropins):
        for line in dropins[name]:
            words = line.split()
            if words and words[0].lower() == keyword.lower():
                return words[1]
    return None


def test_element_sets_only_the_hash_and_no_password_ssh_by_default(tmp_path):
    seen, dropins, record = run_elements(tmp_path, ssh=False)
    assert seen == "args: -e\nroot:<HASH>\n"
    assert record == ["AMP_ROOT_PASSWORD=set", "AMP_ROOT_PASSWORD_SSH=no"]
    assert sorted(dropins) == ["10-amphora.conf"]
    assert sshd_effective(dropins, "PasswordAuthentication") == "no"


def test_element_password_ssh_when_asked_wins_over_rebind_sshd(tmp_path):
    seen, dropins, record = run_elements(tmp_path, ssh=True)
    assert seen == "args: -e\nroot:<HASH>\n"
    assert record == ["AMP_ROOT_PASSWORD=set", "AMP_ROOT_PASSWORD_SSH=yes"]
    assert sorted(dropins) == ["05-root-passwd.conf", "10-amphora.conf"]
    assert sshd_effective(dropins, "PasswordAuthentication") == "yes"
    assert sshd_effective(dropins, "PermitRootLogin") == "yes"


def test_element_staging_refuses_a_missing_hash(tmp_path):
    result = subprocess.run(
        [str(ELEMENT / "extra-data.d/50-root-passwd-hash")],
        env={"PATH": os.environ["PATH"], "TMP_HOOKS_PATH": str(tmp_path),
             "DIB_AMP_ROOT_PASSWORD_HASH_FILE": str(tmp_path / "none")},
        capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("root-passwd: no root password hash at ")
