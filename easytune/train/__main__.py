import os
import sys

# Threads that wait for each other sleep instead of spinning (read by OpenMP when torch loads): a
# spinning thread burns the core that the thread it waits for needs, and a step then takes several
# times longer whenever other programs share the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from easytune.train.worker import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
