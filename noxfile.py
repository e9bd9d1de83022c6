"""Sessions: lint, core (no framework), torch, bench, docs.

Run ``nox`` for the default sessions (lint, core, torch): the whole test suite.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "core", "torch"]
nox.options.reuse_existing_virtualenvs = True

# A local CPU build; an unpinned torch would pull a multi-GB CUDA build here.
TORCH = "torch==2.13.0"
RUFF = "ruff==0.17.6"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """Core tests with no deep-learning framework installed."""
    session.install(".", "pytest>=7.4", "scikit-image>=0.21", "matplotlib>=3.7", "pillow>=9.5")
    session.run("pytest", "tests/core", *session.posargs)


@nox.session
def torch(session: nox.Session) -> None:
    """PyTorch adapter tests, including the pretrained EfficientNet-Lite0 checks."""
    session.install(TORCH)
    session.install(".[torch,test]")
    session.run("pytest", "tests/torch", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmark; prints a table (see docs/benchmarks.md)."""
    session.install(TORCH)
    session.install(".[torch,test]")
    session.run("python", "benchmarks/bench_torch.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/."""
    session.install(".[docs]")
    session.run("mkdocs", "build", "--strict")
