"""gitref: a git agent source's branch or tag named in full, read from real local
repositories with git ls-remote (no stubs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from amp_image.builder.gitref import full_ref, needs_lookup, pick_full_ref
from amp_image.builder.options import AgentSource, BuildOptions
from amp_image.builder.request import with_full_agent_ref
from amp_image.cli import main
from amp_image.errors import PlanError
from amp_image.verify.octavia_source import git


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


# Every git source is read before the build, whatever its ref: no ref (DIB's master), a
# full ref and a commit as well as a branch or tag name.

def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("ref", ["", "refs/tags/19.0.0", "2cf4567e359309e346b41ab567f1fe589fabfe98",
                                 "2cf4567"])
@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_missing_repository_fails_whatever_the_ref(tmp_path, scheme, ref):
    location = f"{scheme}{tmp_path / 'nonexistent' / 'repo'}"
    with pytest.raises(PlanError, match=rf"^--agent-source: cannot read git repository "
                                        rf"{location} \(.+\); check the URL and that git on "
                                        r"this host can reach it$"):
        full_ref(location, ref)


def test_a_folder_that_is_no_repository_fails(tmp_path):
    (tmp_path / "octavia").mkdir()
    with pytest.raises(PlanError, match=r"cannot read git repository .*octavia \(.*not .*git "
                                        r"repository"):
        full_ref(str(tmp_path / "octavia"), "")


def test_readable_refs_pass_as_given(repo):
    """A commit, a full ref it has, and no ref when it has master."""
    assert full_ref(str(repo), _head(repo)) == _head(repo)
    assert full_ref(str(repo), _head(repo)[:7]) == _head(repo)[:7]
    assert full_ref(str(repo), "refs/tags/19.0.0") == "refs/tags/19.0.0"
    assert full_ref(str(repo), "refs/heads/stable/2026.1") == "refs/heads/stable/2026.1"
    assert full_ref(f"file://{repo}", "") == ""


def test_a_missing_full_ref_names_the_fix(repo):
    with pytest.raises(PlanError, match=r"has no ref 'refs/tags/99\.0\.0'; name one it has"):
        full_ref(str(repo), "refs/tags/99.0.0")


def test_no_ref_needs_the_master_branch_dib_fetches(tmp_path):
    main_only = tmp_path / "main-only"
    main_only.mkdir()
    git(main_only, "init", "--quiet", "--initial-branch", "main")
    git(main_only, "commit", "--quiet", "--allow-empty", "-m", "one")
    with pytest.raises(PlanError, match=r"has no branch 'master', which the build fetches "
                                        r"when no @REF is given; add @REF"):
        full_ref(str(main_only), "")
    assert full_ref(str(main_only), "main") == "refs/heads/main"


# Through the command line.  --sign-key without --publish-dir is refused right after the
# agent's ref is resolved: were the git check missing, the command still stops there, and
# never reaches the host checks or a build.
STOP_AFTER_THE_REF = ("--sign-key", "/no/such/key.pem")
SIGN_KEY_REFUSED = "--sign-key signs what --publish-dir publishes"


def build_with_source(tmp_path: Path, spec: str):
    return CliRunner().invoke(main, ["build", "--agent-source", spec, "-o",
                                     str(tmp_path / "x.qcow2"), "--work-dir",
                                     str(tmp_path / "work"), *STOP_AFTER_THE_REF])


@pytest.mark.parametrize("suffix", ["", "@refs/tags/19.0.0", "@2cf4567e359309e346b41ab567f1fe5"])
def test_cli_a_missing_repository_is_one_line_before_the_build(tmp_path, suffix):
    result = build_with_source(tmp_path, f"git+file://{tmp_path}/nonexistent/repo{suffix}")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"amp-image: error: --agent-source: cannot read git "
                                    f"repository file://{tmp_path}/nonexistent/repo (")
    assert result.stderr.endswith("check the URL and that git on this host can reach it\n")
    assert not (tmp_path / "work").exists()


def test_cli_a_missing_ref_is_one_line_before_the_build(repo, tmp_path):
    result = build_with_source(tmp_path, f"git+{repo}@refs/heads/no-such-branch")
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"amp-image: error: --agent-source: {repo} has no ref "
                             "'refs/heads/no-such-branch'; name one it has, a branch, a tag "
                             "or a commit\n")


@pytest.mark.parametrize("suffix", ["", "@19.0.0", "@refs/tags/19.0.0", "@HEAD_COMMIT"])
def test_cli_a_readable_repository_passes_the_check(repo, tmp_path, suffix):
    suffix = suffix.replace("HEAD_COMMIT", _head(repo))
    result = build_with_source(tmp_path, f"git+file://{repo}{suffix}")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"amp-image: error: {SIGN_KEY_REFUSED}"), result.stderr
