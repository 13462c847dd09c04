"""amp-image's elements in DIB's idiom (issue 27): facts read from the element folders,
so that a new hook, variable or service map is held to them without a list to update."""

from __future__ import annotations

import collections
import re
import subprocess
from pathlib import Path

import diskimage_builder
import yaml

ELEMENTS = Path(__file__).resolve().parent.parent / "amp_image" / "elements"
DIB_PACKAGE = Path(diskimage_builder.__file__).resolve().parent
# Folders of an element that no build reads (its README is left out by name).
NOT_READ = ("tests", "__pycache__")
VARIABLE = re.compile(r"\bDIB_[A-Za-z0-9_]*[A-Za-z0-9]")


def _elements() -> list[Path]:
    return sorted(p for p in ELEMENTS.iterdir() if p.is_dir() and not p.name.startswith("."))


def _phase_files(element: Path) -> dict[str, list[Path]]:
    """Each phase folder's files (environment.d's too, sourced in the same order), and
    those of an install type's subfolder (install-types links them into the phase)."""
    phases: dict[str, list[Path]] = {}
    for phase in sorted(element.glob("*.d")):
        if phase.is_dir():
            phases[phase.name] = sorted(p for p in phase.rglob("*") if p.is_file())
    return phases


def _element_files(element: Path) -> list[Path]:
    """What the build reads of an element: every file but its README and tests."""
    return sorted(p for p in element.rglob("*") if p.is_file() and p.name != "README.rst"
                  and not set(p.relative_to(element).parts) & set(NOT_READ))


def test_each_phase_gives_every_hook_of_amp_images_elements_a_number_of_its_own():
    """dib-run-parts orders hooks by number, then by name (LANG=C sort -n): two of
    amp-image's hooks with one number in one phase would be ordered by the alphabet."""
    numbers: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    hooks = 0
    for element in _elements():
        for phase, files in _phase_files(element).items():
            for hook in files:
                number = re.match(r"(\d\d)-", hook.name)
                assert number, f"{element.name}/{phase}/{hook.name}: no two-digit number"
                numbers[phase, number.group(1)].append(f"{element.name}/{phase}/{hook.name}")
                hooks += 1
    assert hooks > 40  # the scan finds the elements' hooks
    shared = {f"{phase} {number}": names for (phase, number), names in numbers.items()
              if len(names) > 1}
    assert not shared, shared


def test_every_distro_guard_is_a_case_on_distro_name():
    """One guard on DISTRO_NAME across the elements, as DIB's own elements refuse a
    distribution they do not support (elrepo's pre-install.d): a ``case`` whose ``*)``
    branch says so; other lines name DISTRO_NAME only in their messages."""
    guards = 0
    for element in _elements():
        for path in _element_files(element):
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                code = line.strip()
                if "DISTRO_NAME" not in code or code.startswith(("#", "echo ")):
                    continue
                where = f"{path.relative_to(ELEMENTS)}:{number}: {code}"
                assert re.fullmatch(r'case "\$(DISTRO_NAME|\{DISTRO_NAME(:-[a-z]+)?\})" in',
                                    code), where
                guards += 1
    assert guards >= 5


def test_every_svc_map_names_the_common_service_under_default():
    """svc-map's most specific section wins, then the family's, then ``default``: each
    service's name is under ``default``, and a distribution or family section only where
    its name differs from it."""
    maps = sorted(ELEMENTS.glob("*/svc-map"))
    assert maps
    for path in maps:
        for service, sections in yaml.safe_load(path.read_text()).items():
            assert "default" in sections, f"{path.relative_to(ELEMENTS)}: {service}"
            for section, name in sections.items():
                assert section == "default" or name != sections["default"], \
                    f"{path.relative_to(ELEMENTS)}: {service}: {section} repeats default"


def _dib_names() -> str:
    """The text of DIB's own scripts, modules and elements."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(DIB_PACKAGE.rglob("*"))
                     if p.is_file() and p.suffix != ".pyc" and p.stat().st_size < 1_000_000)


def _own_variables(element: Path, dib_text: str) -> set[str]:
    """The DIB_ variables an element names that are its own: amp-image's DIB_AMP_*, a
    name DIB never uses, or one the element defines (a DIB variable it changes)."""
    own = set()
    defined = "\n".join(p.read_text() for p in sorted(element.glob("environment.d/*")))
    for path in _element_files(element):
        for name in VARIABLE.findall(path.read_text(errors="replace")):
            if name.startswith("DIB_AMP_") or not re.search(rf"\b{name}\b", dib_text) \
                    or re.search(rf"\b{name}=", defined):
                own.add(name)
    return own


def _readme_blocks(readme: str) -> dict[str, list[tuple[str, str]]]:
    """DIB's variable blocks: the name alone on its line, then its indented ``:Field:
    value`` lines (a value's continuation lines indented further)."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    lines = readme.splitlines()
    for index, line in enumerate(lines):
        if not VARIABLE.fullmatch(line):
            continue
        fields = []
        for body in lines[index + 1:]:
            if not body.startswith(" "):
                break
            field = re.match(r"\s+:(\w+):\s*(.*)", body)
            if field:
                fields.append((field.group(1), field.group(2)))
        blocks[line] = fields
    return blocks


def test_every_variable_of_an_element_is_in_its_readme():
    """Each DIB_ variable an element reads or defines that is its own has a block in its
    README.rst: ``:Required:``, ``:Default:`` (always for one that is not required) and
    ``:Description:``, once each and in that order."""
    dib_text = _dib_names()
    checked = 0
    wrong = {}
    for element in _elements():
        blocks = _readme_blocks((element / "README.rst").read_text())
        for name in sorted(_own_variables(element, dib_text)):
            checked += 1
            fields = blocks.get(name)
            names = [field for field, _ in fields or []]
            optional = bool(fields) and fields[0][0] == "Required" \
                and fields[0][1].startswith("No")
            if names not in ([["Required", "Default", "Description"]] if optional else
                             [["Required", "Description"], ["Required", "Default", "Description"]]):
                wrong[f"{element.name}: {name}"] = names or "no block"
    assert checked > 20  # the scan finds the elements' variables
    assert not wrong, wrong


def test_a_plain_dib_build_gets_amp_images_defaults(tmp_path):
    """What the elements' environment.d files give a plain disk-image-create (sourced in
    DIB's order, from an empty environment) is what amp-image's default plan sets, for
    every element variable the plan sets but the host's inputs (the constraints file and
    CA bundle, which tests/test_plain_dib.py passes as a DIB user would); and the EFI
    partition is DIB's mounted one, as amp-image leaves it on a host that mounts vfat."""
    from amp_image.builder.plan import BuildOptions, HostContext, make_plan

    plan = make_plan(BuildOptions(work_dir=tmp_path / "w", cache_dir=tmp_path / "c"),
                     HostContext(), ELEMENTS)
    members = {ELEMENTS / name for name in plan.elements} | {
        ELEMENTS / dep for name in plan.elements if (ELEMENTS / name).is_dir()
        for dep in _deps(ELEMENTS / name)}
    sources = sorted((p for m in members for p in m.glob("environment.d/*")),
                     key=lambda p: p.name)
    script = "".join(f'. "{p}"\n' for p in sources) + "env -0\n"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, check=True)
    defaults = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    host_inputs = {"DIB_AMP_AGENT_CONSTRAINTS", "DIB_AMP_CA_BUNDLE"}
    own = {name for name in plan.env if name.startswith(("DIB_AMP_", "DIB_OCTAVIA_"))}
    assert len(own - host_inputs) >= 5
    differ = {name: (defaults.get(name), plan.env[name]) for name in own - host_inputs
              if defaults.get(name) != plan.env[name]}
    assert not differ, differ
    assert defaults["DIB_AMP_ESP_STAGED"] == "0" and "DIB_AMP_ESP_STAGED" not in plan.env


def _deps(element: Path) -> set[str]:
    """The element's element-deps, and theirs, among amp-image's elements."""
    found: set[str] = set()
    queue = [element]
    while queue:
        deps = queue.pop() / "element-deps"
        for name in deps.read_text().split() if deps.is_file() else ():
            if name not in found and (ELEMENTS / name).is_dir():
                found.add(name)
                queue.append(ELEMENTS / name)
    return found


def test_an_elements_tests_feed_no_layer_key_nor_provenance_digest_and_its_hooks_do(tmp_path):
    """On a copy of amp-image's elements and the default plan: an edited or new file
    under an element's tests/ (or byte code) leaves both layer keys and the element's
    digest (provenance's: tree_digest with element=True) as they were; an edited hook
    before the save points changes all three."""
    import shutil

    from amp_image.builder import dib_elements, layer_keys
    from amp_image.builder.digests import tree_digest
    from amp_image.builder.plan import BuildOptions, HostContext, make_plan

    copy = tmp_path / "elements"
    shutil.copytree(ELEMENTS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    plan = make_plan(BuildOptions(work_dir=tmp_path / "w", cache_dir=tmp_path / "c"),
                     HostContext(), copy)

    def state() -> tuple[str, str | None, str]:
        keys = layer_keys.layer_keys(
            elements=plan.elements, element_dirs=[copy, dib_elements.dib_elements_dir()],
            dib_version="3.43.0", env=plan.env, agent_source_kind="pypi", index_dates={})
        return keys.packages, keys.agent, tree_digest(copy / "amphora-kernel", element=True)

    before = state()
    tests = copy / "amphora-kernel" / "tests"
    tests.mkdir()
    (tests / "test_kernel.py").write_text("def test_kernel():\n    pass\n")
    (tests / "__pycache__").mkdir()
    (tests / "__pycache__" / "test_kernel.cpython-313.pyc").write_bytes(b"\0")
    for existing in (copy / "amphora-agent" / "tests").glob("test_*.py"):
        existing.write_text(existing.read_text() + "\n# edited\n")
    assert state() == before
    hook = copy / "amphora-kernel" / "pre-install.d" / "06-initramfs-modules"
    hook.write_text(hook.read_text() + "# edited\n")
    after = state()
    assert all(a != b for a, b in zip(after, before, strict=True)), (before, after)
