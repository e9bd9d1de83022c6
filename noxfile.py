"""Sessions: lint, core, torch, keras-{tensorflow,jax,torch}, jax; bench, evaluate, docs.

Run ``nox`` for the default sessions: the whole test suite.
"""

from __future__ import annotations

import nox

nox.options.sessions = [
    "lint",
    "core",
    "torch",
    "keras-tensorflow",
    "keras-jax",
    "keras-torch",
    "jax",
]
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


KERAS_BACKENDS = {"tensorflow": [], "jax": ["jax[cpu]"], "torch": []}


def _keras(session: nox.Session, backend: str) -> None:
    # torch is installed in every Keras session: the parity tests compare with groupcam_torch.
    session.install(TORCH)
    session.install(".[torch,keras,test]", *KERAS_BACKENDS[backend])
    session.run("pytest", "tests/keras", *session.posargs, env={"KERAS_BACKEND": backend})


@nox.session(name="keras-tensorflow")
def keras_tensorflow(session: nox.Session) -> None:
    """Keras adapter tests on the TensorFlow backend."""
    _keras(session, "tensorflow")


@nox.session(name="keras-jax")
def keras_jax(session: nox.Session) -> None:
    """Keras adapter tests on the JAX backend."""
    _keras(session, "jax")


@nox.session(name="keras-torch")
def keras_torch(session: nox.Session) -> None:
    """Keras adapter tests on the PyTorch backend."""
    _keras(session, "torch")


@nox.session
def jax(session: nox.Session) -> None:
    """JAX adapter tests (Flax linen, Flax NNX, plain functions), with torch parity."""
    session.install(TORCH)
    session.install(".[torch,jax,test]", "jax[cpu]")
    session.run("pytest", "tests/jax_adapter", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmark; prints a table (see docs/benchmarks.md)."""
    session.install(TORCH)
    session.install(".[torch,keras,jax,test]")
    session.run("python", "benchmarks/bench_torch.py", *session.posargs)
    session.run(
        "python", "benchmarks/bench_keras.py", *session.posargs, env={"KERAS_BACKEND": "tensorflow"}
    )
    session.run("python", "benchmarks/bench_jax.py", *session.posargs)


@nox.session
def evaluate(session: nox.Session) -> None:
    """Group-CAM against Grad-CAM, Score-CAM and RISE; writes docs/evaluation.md and figures."""
    session.install(TORCH)
    session.install(".[torch,test]", "scikit-learn>=1.3")
    session.run("python", "evaluation/evaluate.py", *session.posargs)


@nox.session(name="train-synthetic")
def train_synthetic(session: nox.Session) -> None:
    """Retrain the synthetic-benchmark CNN (evaluation/synthetic_cnn.pt), seeded."""
    session.install(TORCH)
    session.install(".[torch]")
    session.run("python", "evaluation/train_synthetic.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/."""
    session.install(".[docs]")
    session.run("mkdocs", "build", "--strict")
