"""gitref: a git agent source's branch or tag named in full, read from real local
repositories with git ls-remote (no stubs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from amp_image.build.gitref import full_ref, needs_lookup, pick_full_ref
from amp_image.build.plan import AgentSource, BuildOptions
from amp_image.cli.build import with_full_agent_ref
from amp_image.errors import PlanError


@pytest.fixture
def repo(tmp_path) -> Path:
    """A tag 19.0.0, a branch stable/2026.1, and a branch named like the tag."""
    repo = tmp_path / "octavia"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "master")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "one")
    git(repo, "tag", "19.0.0")
    git(repo, "branch", "stable/2026.1")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "two")
    git(repo, "branch", "19.0.0")
    return repo


@pytest.mark.parametrize("ref, looked_up", [
    ("19.0.0", True), ("stable/2026.1", True), ("", False), ("refs/changes/12/345/6", False),
    ("2cf4567e359309e346b41ab567f1fe589fabfe98", False), ("2cf4567", False),
])
def test_which_refs_are_looked_up(ref, looked_up):
    assert needs_lookup(ref) is looked_up


def test_tag_wins_over_a_branch_of_the_same_name_as_in_git():
    listing = "aaa\trefs/heads/19.0.0\nbbb\trefs/tags/19.0.0\nccc\trefs/tags/19.0.01\n"
    assert pick_full_ref("19.0.0", listing) == "refs/tags/19.0.0"
    assert pick_full_ref("19.0", listing) is None


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_full_names_from_a_real_repository(repo, scheme):
    location = f"{scheme}{repo}"
    assert full_ref(location, "19.0.0") == "refs/tags/19.0.0"
    assert full_ref(location, "stable/2026.1") == "refs/heads/stable/2026.1"
    assert full_ref(location, "master") == "refs/heads/master"


def test_a_missing_ref_names_the_fix(repo):
    with pytest.raises(PlanError, match=r"has no branch or tag 'stable/2099\.1'; name one"):
        full_ref(str(repo), "stable/2099.1")


def test_an_unreadable_repository_names_the_fix(tmp_path):
    with pytest.raises(PlanError, match=r"cannot read git repository .*check the URL"):
        full_ref(str(tmp_path / "nothing-here"), "19.0.0")


def test_build_options_get_the_full_ref_and_other_sources_are_untouched(repo):
    git_opts = BuildOptions(agent_source=AgentSource("git", str(repo), "19.0.0"))
    assert with_full_agent_ref(git_opts).agent_source.ref == "refs/tags/19.0.0"
    pypi = BuildOptions()
    assert with_full_agent_ref(pypi) is pypi
