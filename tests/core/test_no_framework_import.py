"""groupcam_core imports, and explains, without any framework; the application imports none
until a job needs one."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax")
ABOVE_THE_CORE = ("groupcam", "groupcam_torch", "groupcam_keras", "groupcam_jax")


def _imported_by(code: str, watched: tuple[str, ...]) -> list[str]:
    """The modules of the ``watched`` packages that running ``code`` in a new process imported."""
    code += (
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_imports_no_framework() -> None:
    """Every module of groupcam_core, imported: no framework, no adapter, no application."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import numpy as np\n"
        "import groupcam_core\n"
        "for found in pkgutil.walk_packages(groupcam_core.__path__, 'groupcam_core.'):\n"
        "    importlib.import_module(found.name)\n"
        "from groupcam_core import explain_group_cam, make_config\n"
        "sys.path.insert(0, 'tests')\n"
        "from _support.fake_backend import FakeNumpyBackend\n"
        "x = np.random.default_rng(0).normal(size=(2, 3, 16, 16))\n"
        "explain_group_cam(FakeNumpyBackend(), x, config=make_config(groups=4))\n"
    )
    assert _imported_by(code, (*FRAMEWORKS, *ABOVE_THE_CORE)) == []


def test_the_application_imports_no_framework_until_it_needs_one() -> None:
    code = (
        "import groupcam, groupcam.cli, groupcam.zoo, groupcam.zoo.explainers\n"
        "import groupcam.zoo.lite0_weights, groupcam.loaders, groupcam.compare.child\n"
    )
    assert _imported_by(code, FRAMEWORKS) == []


def test_explain_job_runs_without_a_framework(tmp_path) -> None:
    """``groupcam explain`` on a numpy backend imports no framework, and no Ray."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "sys.path.insert(0, 'tests')\n"
        "import groupcam.jobs.ray_runner, groupcam.cli.explain\n"
        "from groupcam.cli import main\n"
        f"folder = {str(tmp_path)!r}\n"
        "Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder + '/a.png')\n"
        "status = main(['explain', '_support.fake_backend:FakeNumpyBackend', folder + '/a.png',\n"
        "               '--out', folder + '/out', '--size', '32', '--groups', '4', '--quiet'])\n"
        "assert status == 0, status\n"
    )
    assert _imported_by(code, (*FRAMEWORKS, "ray")) == []
