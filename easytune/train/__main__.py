import sys

from easytune import spin_turns

spin_turns(3000)  # before torch loads: the worker gives cores up to other programs itself (train/core_share.py)

from easytune.train.worker import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
