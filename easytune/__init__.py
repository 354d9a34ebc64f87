"""EasyTune: intent-driven fine-tuning of language models, offline."""

import os

# How the threads of a parallel operation wait for the next one (read by OpenMP when torch loads, so set here,
# before any part of EasyTune can load it). A thread that has finished its share spins a while, then sleeps.
# Spinning long burns the core that the thread waited for needs whenever other programs share the CPU; sleeping at
# once makes every operation wake its threads, which costs more than the operation when rows are short. AMD EPYC,
# 2 cores of a virtual machine, by how long a thread spins (OpenMP's default: 300,000 turns):
#   a LoRA step of SmolLM2-135M (8 rows of about 58 tokens, bf16), alone | beside one busy program:
#     sleep at once 2.3-2.6 s | 2.4 s;  300 turns 1.9-2.1 s | 2.5 s;  3,000 turns 1.5-1.6 s | 4.5 s;
#     OpenMP's default 1.6-1.8 s | 4.4-5.0 s
#   `easytune eval` of SmolLM2-135M, 6 questions a bucket, alone | beside one busy program:
#     sleep at once 83 s | -;  300 turns 76-78 s | 111 s;  1,000 turns 64 s | 115 s;  3,000 turns 62 s | 150 s;
#     OpenMP's default 66-69 s | 211 s
# Every process spins 300 turns but the training worker: an evaluation, a chat, the app run beside whatever else
# the user does. The worker spins 3,000 (easytune.train.__main__) and gives cores up to other programs itself
# (easytune.train.core_share), which beats any one spin count beside them.
_SPIN_OURS = "EASYTUNE_SPIN_TURNS"  # GOMP_SPINCOUNT's value when EasyTune set it: a started process inherits both


def spin_turns(turns: int) -> None:
    """How many turns this process's threads spin before they sleep (GNU OpenMP, which torch's Linux builds use),
    unless the user set it. Only before torch loads."""
    if os.environ.get("GOMP_SPINCOUNT", "") in ("", os.environ.get(_SPIN_OURS)):
        os.environ["GOMP_SPINCOUNT"] = os.environ[_SPIN_OURS] = str(turns)


spin_turns(300)
os.environ.setdefault("KMP_BLOCKTIME", "0")  # LLVM's and Intel's (torch's macOS builds): sleep at once

from easytune.deferred_imports import leave_out_unused, own_process, quiet_library_notices  # noqa: E402

if own_process():  # before anything imports transformers or peft
    leave_out_unused()
    quiet_library_notices()
