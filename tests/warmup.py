"""What a test run builds once for all its workers (the model, about a minute; the demo month, half a minute),
built in a process of its own as soon as the tests are collected, while the workers run the tests that need
neither. The builder holds the run's locks from before the first test starts, so a test that needs the model
waits for this build instead of starting a second one; a worker that finds the lock free (the builder died
or was never started) builds what it needs itself, as before.

`python tests/warmup.py ROOT MODEL_FD DEMO_FD`: the descriptors are the locks, held open from the parent; -1
for a lock not taken (that part is not built).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def build_demo_month(root: Path) -> Path:
    """The demo run on the sample month in ``root``/demo-month, unless an earlier build finished: its output
    folder. Call with the run's "demo-month" lock held."""
    from mynawatch.demo import run_demo

    out = root / "demo-month" / "out"
    if not (out.parent / "done").exists():
        shutil.rmtree(out.parent, ignore_errors=True)
        out.parent.mkdir()
        run_demo(out, say=lambda *_: None)
        (out.parent / "done").touch()
    return out


def main(root: Path, model_fd: int, demo_fd: int) -> None:
    try:
        if model_fd >= 0:
            from classifier.cache import load_or_train

            load_or_train()
    finally:
        if model_fd >= 0:
            os.close(model_fd)  # the last holder of the lock: the workers may load the model now
    try:
        if demo_fd >= 0:
            build_demo_month(root)
    finally:
        if demo_fd >= 0:
            os.close(demo_fd)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
