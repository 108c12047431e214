"""A main container: reports who it is, writes into a shared volume and a termination message.

Paths come from the environment, as in Proctor's own Jobs: the pod runner maps a volume's
mountPath (and the terminationMessagePath) written in env values and args, not inside code.
"""

import os
import pathlib

print("training as", os.environ["POD_NAME"], "in", os.environ["POD_NS"], flush=True)
pathlib.Path(os.environ["METRICS_FILE"]).write_text('{"step": 1}')
pathlib.Path(os.environ["TERMINATION_LOG"]).write_text('{"verdict": "Passed"}')
