"""EasyTune: intent-driven fine-tuning of language models, offline."""

import os

# How the threads of a parallel operation wait for the next one (read by OpenMP when torch loads, so set here,
# before any part of EasyTune can load it: the worker, an evaluation, a chat, a benchmark alike). A thread that
# has finished its share spins a short while (300 turns), then sleeps. Spinning long burns the core that the
# thread waited for needs whenever other programs share the CPU; sleeping at once makes every operation wake its
# threads, which costs more than the operation when rows are short. AMD EPYC, 2 cores of a virtual machine, by
# how long a thread spins (OpenMP's default: 300,000 turns):
#   a LoRA step of SmolLM2-135M (8 rows of about 58 tokens, bf16), alone | beside one busy program:
#     sleep at once 2.3-2.6 s | 2.4 s;  300 turns 1.9-2.1 s | 2.5 s;  3,000 turns 1.5-1.6 s | 4.5 s;
#     OpenMP's default 1.6-1.8 s | 4.4-5.0 s
#   `easytune eval` of SmolLM2-135M, 6 questions a bucket, alone | beside one busy program:
#     sleep at once 83 s | -;  300 turns 76-78 s | 111 s;  1,000 turns 64 s | 115 s;  3,000 turns 62 s | 150 s;
#     OpenMP's default 66-69 s | 211 s
# Against OpenMP's default: a sixth slower alone, half the time beside anything else (the app, a second job,
# a browser on a laptop).
os.environ.setdefault("GOMP_SPINCOUNT", "300")  # GNU OpenMP, which torch's Linux builds use
os.environ.setdefault("KMP_BLOCKTIME", "0")  # LLVM's and Intel's (torch's macOS builds): sleep at once
