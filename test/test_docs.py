"""README.md and docs/*.md stay true: every ``perception …`` command in their code blocks and inline code parses
(its verb and subcommands exist, its ``--help`` runs, every ``--option`` it uses is one of that command's; a
placeholder such as ``VERB``, ``<verb>`` or ``…`` in a verb's place is not checked), every relative
link (and #anchor) resolves, the README's parameter table shows the node's real defaults, and the README stays
short. All in this process: one ``build_parser`` per verb, no subprocess per command."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from perception.cli import VERBS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 320
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

_CMD = re.compile(r"^(?:\S*/)?perception$")  # perception, .venv/bin/perception, $BIN/perception
_INLINE = re.compile(r"(?<!`)`((?:\S*/)?perception [^`]+)`(?!`)")  # `perception eval ...`, may wrap a line
_PLACEHOLDER = re.compile(r"^(…|\.\.\.|<.*>|[A-Z][A-Z_]*)$")
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line in a fenced (```) or indented (4 spaces, after a blank line) code block,
    backslash continuations joined."""
    fence, indented, prev_blank, pending, start = False, False, True, "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        indented = line.startswith("    ") and (indented or prev_blank) and not fence
        prev_blank = not line.strip()
        if not (fence or indented):
            continue
        code = line.strip() if indented else line
        if pending:
            code, no = pending + " " + code.strip(), start
        if code.rstrip().endswith("\\"):
            pending, start = code.rstrip()[:-1], no
            continue
        pending = ""
        yield no, code


def commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, argv after ``perception``) of every ``perception …`` command in the code blocks and the inline code
    spans of ``text``."""
    spans = ((text.count("\n", 0, m.start()) + 1, m.group(1).replace("\n", " ")) for m in _INLINE.finditer(text))
    for no, line in [*code_lines(text), *spans]:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue  # prose in a block (an unmatched quote): not a command line
        for part in _split_commands(tokens):
            if part and _CMD.match(part[0]):
                yield no, part[1:]


def _split_commands(tokens: list[str]) -> Iterator[list[str]]:
    part: list[str] = []
    for tok in tokens:
        if tok in ("&&", "||", ";", "|"):
            yield part
            part = []
        else:
            part.append(tok)
    yield part


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def check_command(argv: list[str]) -> str | None:
    """What is wrong with ``perception <argv>`` (None: its verb chain exists, ``--help`` runs, every option is
    known). Placeholders (``...``, ``DIR``) are fine: values are not converted (no file is looked up)."""
    if (argv and _PLACEHOLDER.match(argv[0])) or argv[:1] in (["--help"], ["-h"]):
        return None
    if not argv or argv[0] not in VERBS:
        return f"unknown verb {argv[0] if argv else '(none)'!r} (verbs: {', '.join(VERBS)})"
    parser = build_parser(argv)
    p, chain = parser, []
    for tok in argv:
        sub = _subparsers(p)
        if sub is None or tok.startswith("-"):
            break
        if _PLACEHOLDER.match(tok):
            return None  # `perception bench …`: any benchmark
        if tok not in sub.choices:
            if sub.required or p is parser:
                return f"unknown subcommand {tok!r} of {' '.join(['perception', *chain])} ({', '.join(sub.choices)})"
            break
        p, chain = sub.choices[tok], [*chain, tok]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            parser.parse_args([*chain, "--help"])
            return f"`perception {' '.join(chain)} --help` did not exit"
        except SystemExit as e:
            if e.code != 0:
                return f"`perception {' '.join(chain)} --help` exited {e.code}: {out.getvalue()[-300:]}"
    known = p._option_string_actions
    for tok in argv[len(chain):]:
        if tok.startswith("-") and not re.fullmatch(r"-\d[\d.:]*", tok) and tok.split("=")[0] not in known:
            return f"`perception {' '.join(chain)}` has no option {tok.split('=')[0]}"
    return None


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(f"{page.relative_to(ROOT)}:{no}", argv)
            for page in PAGES for no, argv in commands(page.read_text(encoding="utf-8"))]


def test_every_documented_command_parses() -> None:
    found = _all_commands()
    assert len(found) > 100, f"too few commands found ({len(found)}): is the extraction broken?"
    bad = [f"{where}: perception {' '.join(argv)}\n    {problem}"
           for where, argv in found if (problem := check_command(argv))]
    assert not bad, "documented commands that do not parse:\n" + "\n".join(bad)


@pytest.mark.parametrize(("argv", "expected"), [
    (["frobnicate", "--out", "x"], "unknown verb"),
    (["bench", "nosuch"], "unknown subcommand 'nosuch' of perception bench"),
    (["bag", "verfy", "out/bag"], "unknown subcommand"),
    (["eval", "--checkpoint", "stan_s", "--no-such-flag"], "has no option --no-such-flag"),
    (["bench", "runtime", "--frobs=3"], "has no option --frobs"),
])
def test_a_broken_command_is_caught(argv: list[str], expected: str) -> None:
    problem = check_command(argv)
    assert problem is not None and expected in problem, problem


@pytest.mark.parametrize("argv", [
    ["replay", "out/drive_bag", "--deterministic", "--out", "out/x"],
    ["bench", "model", "--out", "out/bench"],
    ["run", "perception", "camera_topic:=/cam/image_raw"],
    ["eval", "--checkpoint", "runs/not/there"],  # values are not converted: a placeholder path is fine
])
def test_a_good_command_passes(argv: list[str]) -> None:
    assert check_command(argv) is None


def test_commands_are_extracted_from_code_and_inline_spans() -> None:
    text = ("Inline `perception nosuch` is checked too.\n\n```bash\n.venv/bin/perception sim --seed 0 \\\n"
            "    --frames 3   # comment\nmake data && .venv/bin/perception bag verify b\n```\n\n"
            "    perception replay d --no-node    # indented block\n    output, not a command\n")
    assert [argv for _, argv in commands(text)] == [
        ["sim", "--seed", "0", "--frames", "3"], ["bag", "verify", "b"], ["replay", "d", "--no-node"], ["nosuch"]]


# ------------------------------------------------------------------------------------------------ links
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^#{1,6} (.+)$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(text: str) -> Iterator[str]:
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            for m in _LINK.finditer(line):
                yield m.group(1) or m.group(2)


def check_link(page: Path, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):
        return None  # http(s), mailto: not checked here
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
        return f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
        return f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}"
    return None


def test_every_relative_link_resolves() -> None:
    checked, bad = 0, []
    for page in PAGES:
        for target in links(page.read_text(encoding="utf-8")):
            checked += 1
            if problem := check_link(page, target):
                bad.append(f"{page.relative_to(ROOT)}: {problem}")
    assert checked > 30
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_a_broken_link_is_caught() -> None:
    assert check_link(README, "docs/nosuch.md") is not None
    assert check_link(README, "docs/ros.md#no-such-heading") is not None
    assert check_link(README, "docs/ros.md#two-ways-to-get-ros-2") is None
    assert slug("Does the temporal memory pay? No -- and why") == "does-the-temporal-memory-pay-no----and-why"
    assert slug("Backbone: Lite0 (`stan_lite0*`)") == "backbone-lite0-stan_lite0"


# ------------------------------------------------------------------------------------------------ README
def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_readme_quick_start_is_what_ci_runs() -> None:
    """The two set-up commands a newcomer types, and .ci/run runs the README's test command."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")] == ["make test"]


def test_readme_parameter_defaults_are_the_nodes() -> None:
    from perception.ros.nodes.params import PARAMS_BY_NAME

    text = README.read_text(encoding="utf-8").split("**Main parameters**", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", text, re.M)
    assert len(rows) >= 10
    for name, shown in rows:
        assert name in PARAMS_BY_NAME, f"README's parameter table names {name}, which the node does not declare"
        expected = _as_yaml(PARAMS_BY_NAME[name].default)
        assert shown == expected, f"README: {name} default {shown}, params.py: {expected}"


def _as_yaml(value: object) -> str:
    """A default as the README's table writes it (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return f"[{', '.join(map(str, value))}]"
    return '""' if value == "" else str(value)
