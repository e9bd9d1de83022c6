"""TensorFlow's start-up lines, kept off the command line's stderr.

TensorFlow writes a few lines to the process's stderr (file descriptor 2)
from C++ while it is imported, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (the
oneDNN notice comes before its logging reads the setting). They are not the
user's concern in a ``groupcam`` run. :func:`quiet_framework_start` catches
what is written to descriptor 2 while a framework is imported and writes back
every line but those: a real error or warning still reaches the user.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["START_UP_LINES", "quiet_framework_start", "without_start_up_lines"]

#: Lines TensorFlow (and XLA under it) writes while it starts.
START_UP_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc"
    r"|^To enable the following instructions: .*rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|failed call to cuInit"
    r"|Could not find cuda drivers on your machine"
)

_redirecting = threading.RLock()


def without_start_up_lines(text: str) -> str:
    """``text`` without the lines :data:`START_UP_LINES` matches."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not START_UP_LINES.search(line))


@contextlib.contextmanager
def quiet_framework_start() -> Iterator[None]:
    """Import frameworks inside this block to keep TensorFlow's start-up lines off stderr.

    Everything else written to stderr meanwhile (Python's warnings included) is
    written back when the block ends, exceptions or not. Nothing is caught once
    TensorFlow is imported: its start-up lines are then behind us.
    """
    if "tensorflow" in sys.modules:
        yield
        return
    with _redirecting, tempfile.TemporaryFile() as captured:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_start_up_lines(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
