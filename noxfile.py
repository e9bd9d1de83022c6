"""Sessions: lint, core, torch, keras-and-jax, ray (the test suite); bench, bench-reference,
gpu-check, evaluate, evaluate-volumes, docs.

Run ``nox`` for the default sessions: the whole test suite. ``nox -- -m "not slow"``
skips the slow tests for a quicker loop while developing.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "core", "torch", "keras-and-jax", "ray"]
nox.options.reuse_existing_virtualenvs = True

# A local CPU build; an unpinned torch would pull a multi-GB CUDA build here.
TORCH = "torch==2.13.0"
RUFF = "ruff==0.17.6"
IMPORT_LINTER = "import-linter==2.17"
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
JAX_WAYS = "jax-linen,jax-nnx,jax-functions"
# keras-hub for the tests that build its models from configs, without tensorflow-text
# (which only its tokenizers use, and which pulls the full TensorFlow beside
# tensorflow-cpu): keras-hub itself, then the rest of what it asks for.
KERAS_HUB = ("--no-deps", "keras-hub>=0.18")
# The torch session's share of the test-models extra (equinox would bring JAX there).
TRANSFORMERS = "transformers>=4.45"
KERAS_HUB_NEEDS = ("absl-py", "kagglehub", "kagglesdk==0.1.28", "regex", "rich")
KERAS_HUB_NEEDS += ("sentencepiece", "tokenizers")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check; the layers' import contract (import-linter, pyproject)."""
    session.install(RUFF, IMPORT_LINTER)
    session.install("--no-deps", ".")  # import-linter reads the installed packages' sources
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def core(session: nox.Session) -> None:
    """The core's and the application's tests with no deep-learning framework installed.

    The report's tests open it in Debian's chromium when it is installed (``.ci/run``
    installs it); the parquet export is read back with pandas.
    """
    session.install(
        ".[parquet,nifti]",
        "pandas>=2",
        "pytest>=7.4",
        "scikit-image>=0.21",
        "matplotlib>=3.7",
        "pillow>=9.5",
        "scipy>=1.9",
        "tqdm>=4.60",
    )
    session.run("pytest", "tests/core", "tests/application", *session.posargs)


@nox.session
def torch(session: nox.Session) -> None:
    """PyTorch adapter tests (torch alone), with the contract suite for the torch way."""
    session.install(TORCH)
    session.install(".[torch,test]", TRANSFORMERS)  # not equinox, which brings JAX
    session.run(
        "pytest",
        "tests/torch_adapter",
        "tests/contract",
        *session.posargs,
        env={"GROUPCAM_WAYS": "torch"},
    )


@nox.session(name="keras-and-jax")
def keras_and_jax(session: nox.Session) -> None:
    """Keras on each of its three backends, then the JAX adapter, in one environment.

    Keras picks its backend once per process, so each backend runs in its own
    pytest process; the contract suite runs for each Keras backend and for the
    three JAX ways in (linen, NNX, plain functions). torch is installed for the
    comparisons with groupcam_torch. Last, ``groupcam compare`` runs across frameworks
    (tests/crossframework).
    """
    session.install(TORCH)
    session.install(".[torch,keras,jax,test,test-models]", "jax[cpu]", "scikit-learn>=1.3")
    session.install(*KERAS_HUB_NEEDS)
    session.install(*KERAS_HUB)
    for backend in KERAS_BACKENDS:
        session.run(
            "pytest",
            "tests/keras_adapter",
            "tests/contract",
            *session.posargs,
            env={"KERAS_BACKEND": backend, "GROUPCAM_WAYS": f"keras-{backend}"},
        )
    session.run(
        "pytest",
        "tests/jax_adapter",
        "tests/contract",
        *session.posargs,
        env={"GROUPCAM_WAYS": JAX_WAYS},
    )
    # `groupcam compare` across frameworks: it starts one process per way itself.
    session.run("pytest", "tests/crossframework", *session.posargs)


@nox.session
def ray(session: nox.Session) -> None:
    """``groupcam explain --ray`` and ``groupcam.explain_dataset`` on a local Ray runtime.

    The tests start Ray themselves with ``num_cpus=2`` on this machine only, and
    shut it down afterwards.
    """
    session.install(TORCH)
    session.install(".[torch,test,ray]")
    session.run("pytest", "tests/ray_jobs", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmark; prints a table (see docs/benchmarks.md)."""
    session.install(TORCH)
    session.install(".[torch,keras,jax,test,ray]")
    session.run("python", "benchmarks/bench_torch.py", *session.posargs)
    session.run(
        "python", "benchmarks/bench_keras.py", *session.posargs, env={"KERAS_BACKEND": "tensorflow"}
    )
    session.run("python", "benchmarks/bench_jax.py", *session.posargs)
    session.run("python", "benchmarks/bench_explain.py", *session.posargs)
    session.run("python", "benchmarks/bench_volumes.py")


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """Speed, memory and device residency on a GPU (benchmarks/gpu_check.py); says so without one.

    Installs the CPU torch wheel like the other sessions: on a GPU machine, run
    ``python benchmarks/gpu_check.py`` in an environment with CUDA builds of
    torch and jax instead.
    """
    session.install(TORCH)
    session.install(".[torch,keras,jax,test]")
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)


@nox.session
def evaluate(session: nox.Session) -> None:
    """Group-CAM against Grad-CAM, Score-CAM and RISE; writes docs/evaluation.md and figures."""
    session.install(TORCH)
    session.install(".[torch,test]", "scikit-learn>=1.3")
    session.run("python", "evaluation/evaluate.py", *session.posargs)


@nox.session(name="evaluate-volumes")
def evaluate_volumes(session: nox.Session) -> None:
    """The synthetic 3-D evaluation; trains its 3-D CNN, writes docs/evaluation-volumes.md."""
    session.install(TORCH)
    session.install(".[torch,test]")
    session.run("python", "evaluation/evaluate_volumes.py", *session.posargs)


@nox.session(name="bench-reference")
def bench_reference(session: nox.Session) -> None:
    """groupcam beside the public reference code: ``nox -s bench-reference -- --reference PATH``."""
    session.install(TORCH)
    session.install(".[torch,demo]", "kornia", "scikit-learn")
    session.run("python", "benchmarks/bench_reference.py", *session.posargs)


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
