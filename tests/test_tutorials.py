"""Every documented command of every app tutorial runs, at a tiny size.

For each app (a folder of ``apps/`` with ``__main__.py``), the ```` ```bash ```` blocks of
``docs/<app>.md`` are read and the commands that start with ``python -m apps.`` or
``.venv/bin/python -m apps.`` (``\\`` continuations joined) run in document order, in this process
(the app's ``main(args)``, as the CLI calls it, without paying a new interpreter's imports for every
command), from the repository root, in one temporary runs root (``MANYHEADS_RUNS``). After its own
arguments each gets the app's tiny overlay ``tests/apps/<app>/tiny.yaml``, a temporary
``--data.root`` and a limit of two test/predict batches (so these win over the document's sizes), and
it keeps the run name the document gives it. A command that reads a real file (``data/<app>/…`` or
``../shared/data/…``) uses the repository's copy, else the copy in ``../shared/data``, else it is
skipped and reported as a warning. Every command that runs must exit 0.
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FENCE = re.compile(r"^[ \t]*```bash[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
COMMAND = re.compile(r"^(?:\.venv/bin/)?python -m (apps\.\w+)\s")
SHELL_SYNTAX = ("|", "||", "&&", ";", ">", ">>", "<", "&", "2>&1")
# a real test file is read and checked whole, but only its first batches are evaluated
FEW_BATCHES = ["--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2"]


class SkippedCommand(UserWarning):
    """A documented command that needs a real data file this machine does not have."""


@dataclass
class Command:
    """One documented command: the module it runs and its arguments, as written."""

    text: str
    module: str
    args: list[str]


def tutorial_apps() -> list[str]:
    return sorted(path.parent.name for path in (REPO / "apps").glob("*/__main__.py"))


def documented_commands(markdown: str) -> list[Command]:
    """The ``python -m apps.…`` commands of the bash blocks of ``markdown``, in order."""
    commands = []
    for block in FENCE.findall(markdown):
        lines: list[str] = []
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            lines.append(pending + line)
            pending = ""
        if pending:
            lines.append(pending)
        for line in lines:
            found = COMMAND.match(line)
            if found:
                tokens = shlex.split(line, comments=True)
                commands.append(Command(line, found.group(1), tokens[3:]))
    return commands


def run_name(args: list[str]) -> str | None:
    """The run a command names: its ``--run_name``, else its last config file's stem."""
    name, configs = None, []
    for flag, value in zip(args, [*args[1:], None], strict=True):
        if flag == "--run_name":
            name = value
        elif flag in ("-c", "--config") and value is not None:
            configs.append(value)
    return name or (Path(configs[-1]).stem if configs else None)


def real_file(path: str) -> str | bool | None:
    """For a documented path to a real data file: the path to use (the repository's file or the copy
    in ``../shared/data``), None when neither exists, False when ``path`` is no such path."""
    if not path.startswith(("data/", "../shared/data/")) or not Path(path).suffix:
        return False
    if (REPO / path).is_file():
        return path
    shared = SHARED / path.removeprefix("../shared/")
    return str(shared) if shared.is_file() else None


def prepared(command: Command, tmp: Path) -> tuple[list[str] | None, str]:
    """The argument list to run (None: skip), and why it is skipped or which real files it reads."""
    args, files = [], []
    for token in command.args:
        flag, equals, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if token in SHELL_SYNTAX:
            raise AssertionError(f"keep documented commands plain (no {token!r}): {command.text}")
        found = real_file(value)
        if found is None:
            return None, f"needs {value}, absent here and in {SHARED / 'data'}"
        if found:
            value = found
            files.append(found)
        elif value.startswith("runs/"):
            value = str(tmp / value)
        args.append(f"{flag}{equals}{value}")
    app = command.module.split(".")[1]
    args += ["-c", f"tests/apps/{app}/tiny.yaml", "--data.root", str(tmp / "cache"), *FEW_BATCHES]
    name = run_name(command.args)
    if name is not None:
        args += ["--run_name", name]  # the tiny overlay, given last, must not rename the run
    return args, f"reads {', '.join(files)}" if files else ""


def test_commands_are_parsed_from_bash_blocks_only():
    markdown = (
        "```bash\n"
        ".venv/bin/python -m apps.toy fit -c configs/toy/default.yaml  # train\n"
        "python -m apps.toy test -c configs/toy/default.yaml \\\n"
        "    -c configs/toy/small.yaml --ckpt_path best\n"
        "nox -s docs\n"
        "```\n"
        "```text\npython -m apps.toy predict\n```\n"
        "* in a list:\n\n  ```bash\n  python -m apps.toy predict -c configs/toy/default.yaml\n  ```\n"
    )
    commands = documented_commands(markdown)
    assert [c.args for c in commands] == [
        ["fit", "-c", "configs/toy/default.yaml"],
        ["test", "-c", "configs/toy/default.yaml", "-c", "configs/toy/small.yaml",
         "--ckpt_path", "best"],
        ["predict", "-c", "configs/toy/default.yaml"],
    ]  # fmt: skip
    assert [run_name(c.args) for c in commands] == ["default", "small", "default"]
    assert run_name(["fit", "-c", "a.yaml", "--run_name", "mine"]) == "mine"


def test_real_files_come_from_the_repository_or_the_shared_copy(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "SHARED", tmp_path / "shared")
    missing = Command("", "apps.toy", ["test", "--data.test_file", "data/toy/sample.txt"])
    args, reason = prepared(missing, tmp_path)
    assert args is None and "data/toy/sample.txt" in reason
    (tmp_path / "shared/data/toy").mkdir(parents=True)
    (tmp_path / "shared/data/toy/sample.txt").write_text("1 2\n")
    for path in ("data/toy/sample.txt", "../shared/data/toy/sample.txt"):
        args, _ = prepared(Command("", "apps.toy", ["test", f"--data.test_file={path}"]), tmp_path)
        assert args[1] == f"--data.test_file={tmp_path}/shared/data/toy/sample.txt"
    ckpt = Command("", "apps.toy", ["test", "-c", "c/d.yaml", "--ckpt_path", "runs/toy/d/x.ckpt"])
    args, _ = prepared(ckpt, tmp_path)
    assert args == [
        "test", "-c", "c/d.yaml", "--ckpt_path", f"{tmp_path}/runs/toy/d/x.ckpt",
        "-c", "tests/apps/toy/tiny.yaml", "--data.root", f"{tmp_path}/cache", *FEW_BATCHES,
        "--run_name", "d",
    ]  # fmt: skip


def run_in_process(module: str, args: list[str]) -> tuple[int, str]:
    """``python -m <module> <args>`` as the app's ``main(args)``: its exit status (0, or the
    status a ``SystemExit`` carries) and, when it failed, the error."""
    try:
        importlib.import_module(f"{module}.__main__").main(args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        return code, "" if code == 0 else f"SystemExit({stop.code!r})"
    except Exception:  # a bug: report it with its traceback, as the interpreter would
        return 1, traceback.format_exc()
    return 0, ""


@pytest.mark.parametrize("app", tutorial_apps())
def test_tutorial_commands_run(app, tmp_path, monkeypatch, capsys):
    doc = REPO / "docs" / f"{app}.md"
    assert doc.is_file(), f"every app has a tutorial: {doc} is missing"
    assert (REPO / "tests" / "apps" / app / "tiny.yaml").is_file(), f"{app} has no tiny overlay"
    commands = documented_commands(doc.read_text())
    assert commands, f"{doc} documents no `python -m apps.{app}` command in a bash block"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MANYHEADS_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MANYHEADS_LOG_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", [f"python -m {app}"])  # the CLI reads args=, not pytest's
    ran, skipped = [], []
    for command in commands:
        args, note = prepared(command, tmp_path)
        if args is None:
            skipped.append(f"{command.text}  ({note})")
            continue
        start = time.perf_counter()
        code, error = run_in_process(command.module, args)
        seconds = time.perf_counter() - start
        stderr = capsys.readouterr().err
        assert code == 0, (
            f"docs/{app}.md: `{command.text}` exited {code}\n"
            f"ran: {shlex.join(args)}\nstderr (end):\n{stderr[-3000:]}\n{error[-3000:]}"
        )
        ran.append(f"{seconds:5.1f} s  {command.text}" + (f"  ({note})" if note else ""))
    print(f"docs/{app}.md: {len(ran)} ran, {len(skipped)} skipped", *ran, sep="\n  ")
    for line in skipped:
        warnings.warn(f"docs/{app}.md: skipped {line}", SkippedCommand, stacklevel=1)
    assert ran, f"every documented command of docs/{app}.md was skipped"
