"""Every `from amp_image... import name` names something that module defines.

The conformance modules import octavia, which only the harness venv holds, so the
quick loop cannot import them; this reads every module's top-level names instead and
catches a name lost in a move (a moved helper renamed on the way once stopped a whole
conformance run at collection)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "amp_image"


def module_file(dotted: str) -> Path | None:
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def top_level_names(source: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    if source.name == "__init__.py":  # a package's submodules import from it too
        names.update(p.stem for p in source.parent.glob("*.py"))
        names.update(p.name for p in source.parent.iterdir() if (p / "__init__.py").is_file())
    return frozenset(names)


def optional_imports(tree: ast.Module) -> set[ast.AST]:
    """Imports inside a try that catches ImportError: allowed to be absent (a module the
    wheel's build writes, for one)."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                "ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers):
            optional.update(n for stmt in node.body for n in ast.walk(stmt))
    return optional


def unresolved_imports(source: Path) -> list[str]:
    place = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source.name
    tree = ast.parse(source.read_text())
    optional = optional_imports(tree)
    missing = []
    for node in ast.walk(tree):
        if node in optional:
            continue
        if not (isinstance(node, ast.ImportFrom) and node.module
                and node.module.split(".")[0] == "amp_image" and node.level == 0):
            continue
        target = module_file(node.module)
        if target is None:
            missing.append(f"{place}:{node.lineno}: no module {node.module}")
            continue
        for alias in node.names:
            if alias.name != "*" and alias.name not in top_level_names(target):
                missing.append(f"{place}:{node.lineno}: {node.module} has no {alias.name}")
    return missing


def test_every_amp_image_import_resolves():
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
               *(ROOT / "scripts").glob("*.py")]
    missing = [line for source in sorted(sources) for line in unresolved_imports(source)]
    assert not missing, "\n".join(missing)


def test_a_lost_name_is_found(tmp_path):
    """The check itself: a name the module does not define is reported."""
    user = tmp_path / "user.py"
    user.write_text("from amp_image.poll import poll_until, no_such_helper\n")
    assert unresolved_imports(user) == ["user.py:1: amp_image.poll has no no_such_helper"]

