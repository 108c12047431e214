"""Writes its pid where PID_FILE says, then runs until stopped."""

import os
import pathlib
import time

pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
while True:
    time.sleep(0.1)
