"""Deliberate pause points, for tests that kill a process at an exact moment.

``DRVOICE_PAUSE_AT=name`` (or ``name@step``) makes the process stop at that point: it writes
``<folder>/.paused-<name>`` and waits there until it is killed. Unset (always, outside tests),
``pause_point`` does nothing. Points: ``checkpoint`` (a resume checkpoint written, not yet
renamed into place), ``base-backbone`` (the Core-Cocktail M0 copy written, not yet in
place), ``export`` (the new model folder complete, not yet swapped in).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def pause_point(name: str, folder: str | Path, step: int | None = None) -> None:
    wanted = os.environ.get("DRVOICE_PAUSE_AT")
    if not wanted:
        return
    point, _, at = wanted.partition("@")
    if point != name or (at and step is not None and int(at) != step):
        return
    Path(folder, f".paused-{name}").write_text(str(os.getpid()))
    while True:  # until the test kills this process
        time.sleep(1)
