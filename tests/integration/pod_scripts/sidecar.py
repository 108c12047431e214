"""A native sidecar: says it is up, then idles until SIGTERM, which it acknowledges."""

import signal
import sys
import time


def stop(*_: object) -> None:
    print("sidecar got SIGTERM", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
print("sidecar up", flush=True)
while True:
    time.sleep(0.05)
