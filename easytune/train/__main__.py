import os
import sys

# OpenMP threads that finish their share of an operation wait for the next one by spinning a short while
# (300 turns, read by OpenMP when torch loads), then sleep. Spinning long burns the core that the thread
# waited for needs whenever other programs share the CPU: a LoRA step of SmolLM2-135M on 2 cores beside one
# busy program took 4.5 s with 3,000 turns and 15 s with 30,000, against 2.4 s sleeping at once. Sleeping at
# once makes every operation wake its threads, which costs more than the operation when rows are short: the
# same step alone took 2.5 s sleeping at once and 1.9-2.1 s with 300 turns, which still took 2.5 s beside the
# busy program. (AMD EPYC, 2 cores of a virtual machine; 8 rows of about 58 tokens, bf16.)
os.environ.setdefault("GOMP_SPINCOUNT", "300")  # GNU OpenMP, which torch's Linux builds use
os.environ.setdefault("KMP_BLOCKTIME", "0")  # LLVM's and Intel's (macOS builds): sleep at once, as before

from easytune.train.worker import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
