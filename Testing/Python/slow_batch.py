"""``volumetricsr`` whose batch studies stop with their outputs staged, for the stop tests.

``python slow_batch.py infer-batch IN OUT ...``: every study but the first (``v0``) writes its
outputs into its staging folder, leaves a file named by its process id in ``OUT/../held`` and then
holds for a minute, so that a test can signal the run while the staging is on disk; with
``SLOW_BATCH_DEAF=1`` it holds with SIGTERM blocked (a worker stuck in native code), and the parent
gives workers one second to stop (``STOP_GRACE_S``) before it kills them. The patch is made
at import: spawned workers import this file as their main module; Ray workers get it through
:func:`held_ray_study`, which Ray pickles by value (it lives in ``__main__``).
"""
import os
import signal
import sys
import time
from pathlib import Path

from volumetricsr.app import api, batch

_write, _ray_study = api.write_frames, batch._ray_study


def held_write(frames, path, dtype=None, tx=None):
    done = _write(frames, path, dtype, tx)
    if tx is not None and not Path(path).name.startswith("v0"):
        deaf = bool(os.environ.get("SLOW_BATCH_DEAF"))
        if deaf:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        held = Path(path).parent.parent / "held"
        held.mkdir(exist_ok=True)
        (held / str(os.getpid())).write_text(Path(path).name)
        for _ in range(1 if deaf else 600):         # short sleeps: Ray's cancel acts between them
            time.sleep(60 if deaf else 0.1)
    return done


def held_ray_study(*args):
    api.write_frames = held_write
    return _ray_study(*args)


api.write_frames, batch._ray_study = held_write, held_ray_study
if os.environ.get("SLOW_BATCH_DEAF"):
    batch.STOP_GRACE_S = 1.0

if __name__ == "__main__":
    from volumetricsr.app.cli import main

    sys.exit(main(sys.argv[1:]))
