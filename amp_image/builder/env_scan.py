"""Which DIB_ variables a text can read (pure): the words in it, and whether it lists
the whole environment; and a package-installs file's entries for the phases before
install.d ends."""

from __future__ import annotations

import json
import re

import yaml

# DIB's phases after install.d, in the order disk-image-create runs them; before it:
# root.d, extra-data.d, pre-install.d.  Both save points are install.d hooks.
LATER_PHASES = frozenset({"post-install.d", "post-root.d", "block-device.d", "pre-finalise.d",
                          "finalise.d", "cleanup.d"})
SAVE_PHASE = "install.d"
# Reads of the whole environment (or of every name with a prefix the scan would not
# see); one in a file before the save point keeps every DIB_ variable in the key.
WHOLE_ENVIRONMENT = re.compile(
    r"\bDIB_ENV\b|\bcompgen\b"
    r"|\b(?:declare|typeset|export|readonly)\s+-\w*[px]\w*[ \t]*(?:$|[;|&)>`])"
    r"|(?:^|[;|&(`{]|\$\()[ \t]*(?:env|printenv|set|export|declare|typeset)[ \t]*"
    r"(?:$|[;|&)>`}])"
    r"|\benviron\s*\.\s*(?:items|keys|values)\s*\("
    r"|(?:\bfor\b[^\n:]*\bin|\*\*|\b(?:dict|list|sorted|set|tuple|str|repr|print|dumps?|update)"
    r"\s*\()\s*(?:os\s*\.\s*)?environ\b(?!\s*\[|\s*\.\s*(?:get|setdefault|pop)\b)",
    re.MULTILINE)
# Whole-environment reads in DIB that were read through (DIB 3.43.0), left out of the
# scan: what they read is found by a name the scan does see.
REVIEWED_READS = {
    # disk-image-create records every DIB_ variable; the record is read through DIB_ENV
    # (the manifests element's cleanup.d), which the scan looks for.
    "export DIB_ENV=$(declare -p $(compgen -v | grep '^DIB_'))",
    # install-types lists the variables named by its PREFIX="DIB_INSTALLTYPE_", a prefix
    # the scan sees.
    "INSTALL_TYPE_VARS=$(env | grep ^$PREFIX | cut -d'=' -f1 || echo \"\")",
}
# VAR=${VAR:-default} (environment.d's idiom): defines VAR from itself, reads no other.
SELF_DEFAULT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=\$\{\1:?-")
WORD = re.compile(r"[A-Za-z0-9_]+")


def scan_text(text: str) -> tuple[bool, set[str]]:
    """Whether a text lists the whole environment, and the words in it (self-defaults
    left out)."""
    for reviewed in REVIEWED_READS:
        text = text.replace(reviewed, "")
    return (WHOLE_ENVIRONMENT.search(text) is not None,
            set(WORD.findall(SELF_DEFAULT.sub("", text))))


def early_package_installs(data: bytes) -> str | None:
    """A package-installs file's entries for phases before install.d ends, as package-
    installs-squash reads them, in order; None if it would not read them so."""
    try:
        text = data.decode()
        try:
            objs = json.loads(text)
        except ValueError:
            objs = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(objs, dict):
        return None
    kept = []
    for package, params in objs.items():
        listed = [{}] if not params else params if isinstance(params, list) else [params]
        if not all(isinstance(p, dict) and isinstance(p.get("phase", ""), str)
                   for p in listed):
            return None
        early = [p for p in listed if p.get("phase", SAVE_PHASE) not in LATER_PHASES]
        if early:
            kept.append([package, early])
    return json.dumps(kept, sort_keys=True, default=str)
