"""Every shell command of the README and the docs pages works as written.

The blocks run in order, page by page, in a fresh folder that holds links to the checkout's
Makefile, notebooks and virtual environment, with the test datasets as ``UNETLIB_DATA``:

- ``unetlib ...`` commands run for real, under the smoke profile where they train (``--profile``
  becomes ``smoke``, ``--iterations`` 2), each page's commands sharing the folder, so a chain
  (train, predict, evaluate) runs as a reader would type it;
- ``python -m unetlib.reproduce ...`` runs with ``--dry-run``: every option, report and notebook
  parameter is checked as in a real run, and nothing is trained (the reports themselves run under
  the smoke profile in ``tests/test_notebooks.py``);
- ``make TARGET ...`` is checked with ``make -n``, and the reproduction it would start with
  ``--dry-run``; ``make test`` is this suite and is not run again;
- ``papermill`` runs for real, with the parameters written, into a temporary output folder;
- ``export NAME=...`` is a reader's own setting: the test's data folder is used instead.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unetlib.environment import project_root

pytestmark = pytest.mark.slow

ROOT = project_root()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)```", re.S)


def shell_commands(text: str) -> list[str]:
    """The commands of every shell block of a Markdown text: continuation lines joined, comments dropped."""
    commands = []
    for block in _BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(line.strip())
    return commands


def test_the_pages_hold_commands_and_every_block_parses():
    found = {page.name: shell_commands(page.read_text(encoding="utf-8")) for page in PAGES}
    assert found["README.md"] and any("make reproduce" in c for c in found["README.md"])
    assert all(isinstance(c, str) for cs in found.values() for c in cs)


def _expand(command: str, env: dict) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}`` as the shell expands them."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)",
                  lambda m: env.get(m.group(1) or m.group(3)) or (m.group(2) or ""), command)


def _as_run(command: str, tmp: Path, env: dict) -> tuple[list[str], str] | None:
    """What the test runs for a command of the docs, and how it checks it; None to skip it."""
    words = shlex.split(_expand(command, env), comments=True)
    head = Path(words[0]).name
    if head == "export":
        return None
    if head == "make":
        if words[1:2] == ["test"]:
            return None
        return ["make", "-n", *words[1:], f"VENV={sys.prefix}"], "make"
    if head == "unetlib":
        words = [sys.executable, "-m", "unetlib", *words[1:]]
        for flag, value in (("--profile", "smoke"), ("--iterations", "2")):
            if flag in words:
                words[words.index(flag) + 1] = value
        return words, "run"
    if words[:3] == ["python", "-m", "unetlib.reproduce"]:
        return [sys.executable, *words[1:], "--dry-run"], "run"
    if head == "papermill":
        return [str(Path(sys.prefix) / "bin" / "papermill"), *words[1:], "-p", "OUTPUT_DIR", str(tmp / "out")], "run"
    raise AssertionError(f"the docs hold a command the test does not know how to check: {command}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_of_the_page_works_as_written(page, tmp_path, data_root):
    commands = shell_commands(page.read_text(encoding="utf-8"))
    if not commands:
        pytest.skip("no shell commands on this page")
    for name in ("Makefile", "pyproject.toml", "notebooks"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    env = {**os.environ, "UNETLIB_DATA": str(data_root), "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ['PATH']}"}
    for command in commands:
        planned = _as_run(command, tmp_path, env)
        if planned is None:
            continue
        argv, how = planned
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{page.name}: `{command}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if how == "make" and "unetlib.reproduce" in done.stdout:
            line = next(x for x in done.stdout.splitlines() if "unetlib.reproduce" in x)
            started = shlex.split(line)
            started = [sys.executable, *started[started.index("-m"):], "--dry-run"]
            checked = subprocess.run(started, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert checked.returncode == 0, f"{page.name}: `{command}` would start `{line}`, which fails:\n" \
                                            f"{checked.stderr[-2000:]}"


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link markup reduced to its text, lower case, every character but
    letters, digits, '_', '-' and spaces dropped, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+?)\s*#*$", text, flags=re.M)}


def broken_links(pages) -> list[str]:
    """Every relative link of ``pages`` whose file or heading does not exist (web addresses are not followed)."""
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in _LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no heading '{anchor}')")
    return broken


def test_every_link_of_the_pages_reaches_a_file_and_a_heading():
    broken = broken_links(PAGES)
    assert not broken, "\n".join(broken)


def test_the_link_check_reports_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# B\n", encoding="utf-8")
    page.write_text("# The test suite\n\n## `pixel_error` — [Speed](b.md), at a glance\n\n"
                    "[ok](#the-test-suite) [ok](#pixel_error--speed-at-a-glance) [bad](#nope) [bad](missing.md)\n",
                    encoding="utf-8")
    assert broken_links([page]) == ["a.md: #nope (no heading 'nope')", "a.md: missing.md (no such file)"]
