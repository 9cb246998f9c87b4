"""Sessions: tests, lint, docs, bench, demo, gpu. Every venv gets torch==2.13.0 (CPU) before the project,
so no resolver ever pulls a multi-GB CUDA build."""

from __future__ import annotations

import glob
import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

TORCH = "torch==2.13.0"
PYTHON = "3.11"


def install(session: nox.Session, extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run: everything but GPU tests, then the Triton kernels in the interpreter."""
    install(session, "all")
    session.run("pytest", "-m", "not kernels and not gpu", *session.posargs)
    session.run(
        "pytest",
        "tests/core/kernels",
        "-m",
        "kernels and not gpu",
        *session.posargs,
        env={"TRITON_INTERPRET": "1"},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the site offline and strictly (no remote inventories, no web fonts)."""
    install(session, "docs")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """CPU benchmarks: each script prints a markdown table of ratios measured side by side."""
    install(session, "all")
    for script in sorted(glob.glob("benchmarks/*.py")):
        if not os.path.basename(script).startswith(("gpu_", "_")):
            session.run("python", script, *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: every app trains briefly on its built-in data; writes runs/demo/report.md."""
    install(session, "all")
    session.run("python", "-m", "core.train.demo", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """On a lent GPU machine, with its own python3 (it reaches no registry): CUDA tests + GPU benches."""
    session.run(
        "python3", "-m", "pytest", "tests/core/kernels", "-m", "gpu", "-p", "no:cacheprovider"
    )
    for script in sorted(glob.glob("benchmarks/gpu_*.py")):
        session.run("python3", script)
