"""Sessions: tests, lint, docs, bench, demo, gpu.

tests, docs, bench and demo run in one shared virtualenv, which the session ``project`` (they require
it, so it runs first) creates once and keeps up to date: torch==2.13.0 (CPU) first, so no resolver ever
pulls a multi-GB CUDA build, then the project with all extras. lint keeps its own ruff-only env; gpu uses
the GPU machine's own python3.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

TORCH = "torch==2.13.0"
PYTHON = "3.11"
_shared_bin: list[str] = []  # the shared env's bin folder, once ``project`` has run in this process


@nox.session(python=PYTHON, default=False)
def project(session: nox.Session) -> None:
    """The environment tests, docs, bench and demo share: torch (CPU), then the project with all
    extras (pip reuses what is already installed)."""
    session.install(TORCH)
    session.install("-e", ".[all]")
    _shared_bin[:] = [session.bin]


def in_project_env(session: nox.Session) -> str:
    """Point ``session`` at the shared environment (as if activated); returns its python."""
    if not _shared_bin:
        session.error("the shared environment is missing: run without --no-deps so `project` runs")
    bin_dir = _shared_bin[0]
    session.env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
    session.env["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    return str(Path(bin_dir) / "python")


def benchmark_modules(prefix: str = "") -> list[str]:
    """``benchmarks.<name>`` for every benchmark module whose name starts with ``prefix``; modules
    starting with ``_`` are helpers and ``gpu_`` ones need CUDA (run only when ``prefix`` asks)."""
    names = sorted(path.stem for path in Path("benchmarks").glob(f"{prefix}*.py"))
    runnable = [n for n in names if not n.startswith("_") and (prefix or not n.startswith("gpu_"))]
    return [f"benchmarks.{name}" for name in runnable]


@nox.session(venv_backend="none", requires=["project"])
def tests(session: nox.Session) -> None:
    """The default test run: everything but GPU tests, then the Triton kernels in the interpreter (in
    their own process: TRITON_INTERPRET is read at import). Arguments after ``--`` go to both runs; a
    run they leave without tests (pytest's exit code 5) is not a failure."""
    python = in_project_env(session)
    pytest = [python, "-m", "pytest"]
    session.run(*pytest, "-m", "not kernels and not gpu", *session.posargs, success_codes=[0, 5])
    session.run(
        *pytest, "tests/core/kernels", "-m", "kernels and not gpu", *session.posargs,
        env={"TRITON_INTERPRET": "1"}, success_codes=[0, 5],
    )  # fmt: skip


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none", requires=["project"])
def docs(session: nox.Session) -> None:
    """Build the site offline and strictly (no remote inventories, no web fonts)."""
    python = in_project_env(session)
    session.run(
        python, "-m", "mkdocs", "build", "--strict", "--site-dir", "site",
        env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


@nox.session(venv_backend="none", requires=["project"])
def bench(session: nox.Session) -> None:
    """CPU benchmarks: each module prints a markdown table of ratios measured side by side."""
    python = in_project_env(session)
    for module in benchmark_modules():
        session.run(python, "-m", module, *session.posargs)


@nox.session(venv_backend="none", requires=["project"])
def demo(session: nox.Session) -> None:
    """The main job: every app trains briefly on its built-in data; writes runs/demo/report.md."""
    python = in_project_env(session)
    session.run(python, "-m", "core.train.demo", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """On a lent GPU machine, with its own python3 (it reaches no registry): CUDA tests + GPU benches."""
    session.run(
        "python3", "-m", "pytest", "tests/core/kernels", "-m", "gpu", "-p", "no:cacheprovider"
    )
    for module in benchmark_modules("gpu_"):
        session.run("python3", "-m", module)
