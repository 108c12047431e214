"""A custom trainer (the spec's training.command) that reports one NaN loss at step 20 through
Proctor's telemetry library, then trains on, finite again, until the file named by its first
argument exists (at most 90 s): an incident the watchdog sees once, then long afterwards."""

import math
import os
import sys
import time
from pathlib import Path

from proctor.train.telemetry import Telemetry

stop = Path(sys.argv[1])
telemetry = Telemetry(
    experiment=os.environ["PROCTOR_EXPERIMENT"],
    namespace=os.environ["PROCTOR_NAMESPACE"],
    port=int(os.environ["PROCTOR_METRICS_PORT"]),
    metrics_file=Path(os.environ["PROCTOR_METRICS_FILE"]),
    log_every=1,
)
started, step = time.monotonic(), 0
while not stop.exists() and time.monotonic() - started < 90:
    step += 1
    telemetry.step(step, math.nan if step == 20 else 2.0 / math.sqrt(step), samples=32)
    time.sleep(0.1)
telemetry.close()
print(f"stopped at step {step}", flush=True)
