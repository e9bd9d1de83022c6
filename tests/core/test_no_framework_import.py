"""groupcam_core must import, and explain, without importing any framework."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax")


def test_core_imports_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "import groupcam_core, groupcam_core.cli, groupcam_core.visualization\n"
        "import groupcam_core.zoo_weights\n"
        "from groupcam_core import explain_group_cam, make_config\n"
        "sys.path.insert(0, 'tests')\n"
        "from _support.fake_backend import FakeNumpyBackend\n"
        "x = np.random.default_rng(0).normal(size=(2, 3, 16, 16))\n"
        "explain_group_cam(FakeNumpyBackend(), x, config=make_config(groups=4))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_explain_job_runs_without_a_framework(tmp_path) -> None:
    """``groupcam explain`` on a numpy backend imports no framework, and no Ray."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "sys.path.insert(0, 'tests')\n"
        "import groupcam_core.distributed, groupcam_core.jobs.command\n"
        "from groupcam_core.cli import main\n"
        f"folder = {str(tmp_path)!r}\n"
        "Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder + '/a.png')\n"
        "status = main(['explain', '_support.fake_backend:FakeNumpyBackend', folder + '/a.png',\n"
        "               '--out', folder + '/out', '--size', '32', '--groups', '4', '--quiet'])\n"
        "assert status == 0, status\n"
        f"found = sorted(m for m in sys.modules if m.split('.')[0] in {(*FRAMEWORKS, 'ray')!r})\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
