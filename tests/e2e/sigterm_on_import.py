"""A plugin that is "preempted" while it loads: SIGTERM during the set-up of a run."""

import os
import signal

os.kill(os.getpid(), signal.SIGTERM)
