"""The root password of a debug image stays secret.

It never reaches argv (amp-image's or DIB's), the --dry-run plan, the plan's or
DIB's environment (which DIB records in its manifests), the build log, or a file
others can read; the image gets only its SHA-512 crypt hash.  By default the
password works on the serial console only; SSH only with --root-password-ssh.

No image is built here: the element's scripts run in a private mount namespace
with chpasswd stubbed, and the DIB runner runs a stand-in disk-image-create.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from amp_image.builder import dib, dib_elements, dib_env, rootpw
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.plan import make_plan
from amp_image.errors import PlanError

ROOT = Path(__file__).resolve().parent.parent
AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")
SECRET = "Sw0rdfish-not-in-any-log"
HASH = re.compile(r"\$6\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{86}")


def amp_image(*args: str, env: dict[str, str] | None = None, **kw):
    base = {k: v for k, v in os.environ.items() if k != rootpw.ENV_VAR}
    return subprocess.run([AMP_IMAGE, *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, **kw)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert not HASH.search(text), "a password hash"


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("amp-image: error: "), result.stderr
    return lines[0]


# --- hashing and the plan --------------------------------------------------------


def test_hash_is_sha512_crypt_of_the_password():
    hashed = rootpw.hash_password(SECRET)
    assert HASH.fullmatch(hashed)
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                           input=SECRET + "\n", capture_output=True, text=True, check=True)
    assert again.stdout.strip() == hashed
    assert rootpw.hash_password(SECRET) != hashed  # a fresh salt each time


def test_plan_carries_neither_password_nor_hash(tmp_path):
    hashed = rootpw.hash_password(SECRET)
    opts = BuildOptions(root_password_hash=hashed, work_dir=tmp_path / "w")
    plan = make_plan(opts, HostContext(), Path("/elements"))
    assert "root-passwd" in plan.elements
    printed = yaml.safe_dump(plan.as_dict())
    environment = dib_env.dib_environment(plan, tmp_path / "bin", {
        "PATH": "/usr/bin", rootpw.ENV_VAR: SECRET, "DIB_PASSWORD": SECRET})
    for text in (printed, repr(plan.env), repr(environment), repr(dib_env.dib_command(plan)),
                 repr(opts), repr(plan)):
        assert SECRET not in text and hashed not in text
    assert environment["DIB_AMP_ROOT_PASSWORD_HASH_FILE"] == \
        str(tmp_path / "w" / "secrets" / "root-password.hash")
    assert environment["DIB_AMP_ROOT_PASSWORD_SSH"] == "0"
    assert plan.as_dict()["root_password"] == "serial console"


@pytest.mark.parametrize("kw,message", [
    ({"root_password_ssh": True}, "--root-password-ssh needs a root password"),
    ({"root_password_ssh": True, "root_password_hash": "$6$s$h", "sshd": False},
     "--root-password-ssh needs sshd; drop --no-sshd"),
])
def test_password_ssh_needs_a_password_and_sshd(kw, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        make_plan(BuildOptions(**kw), HostContext(), Path("/elements"))


# --- the CLI: environment, file, prompt; never argv ---------------------------------


def test_environment_variable_dry_run_shows_no_secret(tmp_path):
    result = amp_image("build", "--dry-run", "--root-password-ssh", "-o",
                       str(tmp_path / "amp.qcow2"), env={rootpw.ENV_VAR: SECRET})
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    plan = yaml.safe_load(result.stdout)
    assert "root-passwd" in plan["elements"]
    assert plan["root_password"] == "serial console and SSH"
    assert plan["environment"]["DIB_AMP_ROOT_PASSWORD_SSH"] == "1"
    assert list(tmp_path.iterdir()) == []


def test_root_password_on_the_command_line_is_refused():
    result = amp_image("build", "--dry-run", "--root-password", SECRET)
    assert one_line_error(result) == (
        "amp-image: error: --root-password would put the password on the command line, which "
        "every user of this host can read; set AMP_ROOT_PASSWORD, or pass --root-password-file "
        "FILE or --root-password-prompt")
    assert result.stdout == ""


def test_password_file_must_be_private(tmp_path):
    secret = tmp_path / "root.pw"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o644)
    result = amp_image("build", "--dry-run", "--root-password-file", str(secret))
    assert one_line_error(result) == (
        f"amp-image: error: --root-password-file {secret} is readable by others (mode 0644); "
        f"chmod 600 {secret}")
    secret.chmod(0o600)
    result = amp_image("build", "--dry-run", "--root-password-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert "root-passwd" in yaml.safe_load(result.stdout)["elements"]
    assert_no_secret(result.stdout, result.stderr)


def test_one_source_only(tmp_path):
    secret = tmp_path / "root.pw"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    result = amp_image("build", "--dry-run", "--root-password-file", str(secret),
                       env={rootpw.ENV_VAR: SECRET})
    assert "root password given twice (AMP_ROOT_PASSWORD and --root-password-file)" in \
        one_line_error(result)


def test_prompt_needs_a_terminal():
    result = amp_image("build", "--dry-run", "--root-password-prompt", stdin=subprocess.DEVNULL)
    assert "--root-password-prompt needs a terminal" in one_line_error(result)


def read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} on the terminal; saw {bytes(seen)!r}"
        seen.extend(os.read(fd, 1024))


def test_prompt_on_a_terminal_does_not_echo(tmp_path):
    """The real CLI on a pseudo-terminal, in a session of its own (no other terminal)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([AMP_IMAGE, "build", "--dry-run", "--root-password-prompt", "-o",
                             str(tmp_path / "amp.qcow2")], stdin=slave, stderr=slave,
                            stdout=subprocess.PIPE, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != rootpw.ENV_VAR})
    os.close(slave)
    seen = bytearray()
    try:
        read_until(master, b"Root password (debug image):", seen)
        os.write(master, SECRET.encode() + b"\n")
        read_until(master, b"Repeat for confirmation:", seen)
        os.write(master, SECRET.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                seen.extend(os.read(master, 1024))
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0, bytes(seen)
    assert_no_secret(out.decode(), seen.decode(errors="replace"))
    assert "root-passwd" in yaml.safe_load(out)["elements"]


# --- diskimage-create.sh -r: upstream's flag, handed on in the environment ----------


def fake_venv(tmp_path: Path) -> Path:
    """A venv whose amp-image records its argv and whether the password came in its
    environment (diskimage-create.sh execs $AMP_VENV/bin/amp-image)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "record"
    script = venv / "bin" / "amp-image"
    script.write_text(f"""#!/bin/bash
printf '%s\\n' "$@" > {record}.argv
printf '%s' "${{AMP_ROOT_PASSWORD:-}}" > {record}.env
""")
    script.chmod(0o755)
    return venv


def test_diskimage_create_hands_the_password_on_in_the_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != rootpw.ENV_VAR}
    env.update(AMP_IMAGE_SKIP_SETUP="1", AMP_VENV=str(fake_venv(tmp_path)))
    result = subprocess.run([str(ROOT / "diskimage-create.sh"), "-r", SECRET], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "record.argv").read_text()
    assert argv.startswith("build\n") and SECRET not in argv
    assert (tmp_path / "record.env").read_text() == SECRET


def test_diskimage_create_r_end_to_end_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k != rootpw.ENV_VAR and not k.startswith("DIB_")}
    env.update(AMP_IMAGE_SKIP_SETUP="1", AMP_IMAGE_EXTRA_ARGS="--dry-run")
    result = subprocess.run([str(ROOT / "diskimage-create.sh"), "-r", SECRET], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert yaml.safe_load(result.stdout)["root_password"] == "serial console"


def test_diskimage_create_usage_warns_that_argv_is_visible():
    usage = subprocess.run([str(ROOT / "diskimage-create.sh"), "-h"], capture_output=True,
                           text=True).stdout
    assert "Command lines are visible to every user of this host" in usage
    assert "AMP_ROOT_PASSWORD" in usage


# --- the DIB runner: the hash reaches DIB only as a private file, for the build -----

FAKE_DIB = """#!{python}
# Stands in for disk-image-create: records what it was given, writes an image.
import json, os, stat, sys
from pathlib import Path

record = Path(os.environ["FAKE_DIB_RECORD"])
hash_file = Path(os.environ["DIB_AMP_ROOT_PASSWORD_HASH_FILE"])
record.write_text(json.dumps({{
    "argv": sys.argv, "env": dict(os.environ),
    "mode": stat.S_IMODE(hash_file.stat().st_mode),
    "dir_mode": stat.S_IMODE(hash_file.parent.stat().st_mode),
    "hash": hash_file.read_text(),
}}))
out = sys.argv[sys.argv.index("-o") + 1]
Path(out + ".qcow2").write_bytes(b"QFI\\xfb")
print("dib-run-parts Running /tmp/dib/hooks/post-install.d/98-root-passwd")
"""


def test_runner_gives_dib_the_hash_in_a_private_file_only(tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("AMP_IMAGE_EVENTS", raising=False)  # a stand-in is no build
    fake = tmp_path / "disk-image-create"
    fake.write_text(FAKE_DIB.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(dib, "dib_command",
                        lambda plan: [str(fake), *plan.dib_args, *plan.elements])
    hashed = rootpw.hash_password(SECRET)
    work = tmp_path / "work"
    opts = BuildOptions(root_password_hash=hashed, work_dir=work, cache_dir=tmp_path / "cache",
                        output=tmp_path / "amp.qcow2")
    plan = make_plan(opts, HostContext(), dib_elements.elements_dir())
    record = tmp_path / "record.json"
    base = {"PATH": os.environ["PATH"], "FAKE_DIB_RECORD": str(record),
            rootpw.ENV_VAR: SECRET, "DIB_PASSWORD": SECRET}
    said: list[str] = []
    result = dib.run_build(plan, device_mapper=True, log_file=tmp_path / "amp.log",
                           emit=said.append, base_env=base)
    seen = json.loads(record.read_text())
    assert seen["hash"] == hashed + "\n"
    assert seen["mode"] == 0o600 and seen["dir_mode"] == 0o700
    assert not (work / "secrets").exists()  # gone with the build
    assert_no_secret(json.dumps(seen["argv"]), json.dumps(seen["env"]),
                     result.log_file.read_text(), "\n".join(said))
    assert result.image.read_bytes() == b"QFI\xfb"
