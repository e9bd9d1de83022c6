"""`groupcam compare` and `groupcam demo --framework` with missing frameworks (none is run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from groupcam.cli import main
from groupcam.zoo import explainers as ways
from groupcam_core.errors import ConfigError


def _missing(*modules: str):
    """A stand-in for ways.missing_modules_of: these modules are missing wherever needed."""
    return lambda name: [m for m in ways.get_way(name).modules if m in modules]


def test_install_commands() -> None:
    assert ways.get_way("torch").install_command() == "pip install 'groupcam[demo]'"
    assert ways.get_way("keras-jax").install_command() == "pip install 'groupcam[keras,jax,demo]'"
    assert ways.get_way("keras-torch").install_command(["keras"]) == "pip install 'groupcam[keras]'"
    assert ways.get_way("jax-nnx").install_command(["flax"]) == "pip install 'groupcam[jax]'"
    assert ways.get_way("torch").install_command(["torch"]) == "pip install 'groupcam[torch]'"
    assert ways.get_way("keras-jax").keras_backend == "jax"
    assert ways.get_way("jax-linen").keras_backend is None
    assert ways.get_way("jax-linen").framework == "jax"
    with pytest.raises(ConfigError, match="unknown way 'mxnet'"):
        ways.get_way("mxnet")


def test_missing_modules_looks_without_importing() -> None:
    """Checked against a clean interpreter (no tests/ on its path), which imports each module.

    A test folder named like a framework (tests/torch) once made find_spec find the
    folder in this process, so torch counted as installed where it was not.
    """
    needed = ways.get_way("torch").modules
    probe = (
        "import importlib, json, sys\n"
        "missing = []\n"
        f"for name in {list(needed)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        missing.append(name)\n"
        "print(json.dumps(missing))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    expected = json.loads(done.stdout.strip().splitlines()[-1])
    assert ways.missing_modules_of("torch") == expected


def test_compare_with_every_framework_missing(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(ways, "missing_modules_of", _missing("torch", "keras", "jax", "flax"))
    status = main(["compare", "--ways", "keras-jax,jax-nnx", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    assert (
        "keras-jax         skipped: keras, jax, torch not installed; install with "
        "pip install 'groupcam[torch,keras,jax]'" in captured.out
    )
    assert "jax-nnx           skipped: jax, flax, torch not installed" in captured.out
    assert "no way could run" in captured.err
    assert not (tmp_path / "out" / "comparison.md").exists()


def test_a_framework_that_fails_to_import_in_the_worker_is_skipped(
    monkeypatch, tmp_path, capsys
) -> None:
    """The worker process meets an ImportError (a broken jax): reported as skipped, no crash."""
    broken = tmp_path / "broken"
    (broken / "jax").mkdir(parents=True)
    (broken / "jax" / "__init__.py").write_text("raise ImportError('jax is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken))
    monkeypatch.setattr(ways, "missing_modules_of", lambda name: [])
    status = main(["compare", "--ways", "jax-functions", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    assert (
        "jax-functions     skipped: jax is broken here; install with "
        "pip install 'groupcam[jax,demo]'" in captured.out
    )


def test_compare_arguments() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--ways", "torch,mxnet"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["compare", "--variants", "paper,fancy"])


def test_demo_with_a_missing_framework(monkeypatch, capsys) -> None:
    monkeypatch.setattr(ways, "missing_modules_of", _missing("keras", "tensorflow"))
    assert main(["demo", "--framework", "keras", "--backend", "tensorflow"]) == 2
    message = capsys.readouterr().err
    assert "groupcam demo --framework keras needs keras, tensorflow" in message
    assert "pip install 'groupcam[keras]'" in message
    monkeypatch.setattr(ways, "missing_modules_of", _missing("flax"))
    assert main(["demo", "--framework", "jax"]) == 2
    assert "pip install 'groupcam[jax]'" in capsys.readouterr().err


def test_demo_backend_needs_keras(capsys) -> None:
    assert main(["demo", "--framework", "torch", "--backend", "jax"]) == 2
    assert "--backend chooses the Keras backend" in capsys.readouterr().err
