import sys

from easytune.train.worker import main

sys.exit(main(sys.argv[1:]))
