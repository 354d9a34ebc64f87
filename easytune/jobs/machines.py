"""A run over several machines, as this machine starts its part: `accelerate launch` with the machines' settings
(torchrun underneath, its static rendezvous at the main machine's address and port), and the network interface
the processes talk through. No training stack is imported here.

Each machine runs `easytune train` with the same plan but for its rank (and, on the others, the main machine's
address as they reach it); its job lives in its own EasyTune home. The main machine (rank 0) opens
main_process_port — torch's rendezvous store listens on every interface of it, so the port belongs behind the
firewall, open to the other machines only — and waits join_timeout seconds for them; the others connect to it
within the same time. The worker checks that every machine runs the same plan on the same split
(easytune/train/machines.py); the launch's own failures (nothing answers, a machine missing, the port taken)
are said by easytune/train/launch.py.
"""

from __future__ import annotations

import socket

import psutil


def launch_arguments(plan) -> list[str]:
    """accelerate launch's arguments for this machine's part of the run. accelerate's --num_processes counts the
    processes of all machines; each machine starts num_processes of them."""
    return ["--num_processes", str(plan.processes),
            "--num_machines", str(plan.num_machines), "--machine_rank", str(plan.machine_rank),
            "--main_process_ip", plan.main_process_ip, "--main_process_port", str(plan.main_process_port),
            "--rdzv_conf", f"timeout={plan.join_timeout}"]  # how long the rendezvous waits, on every machine


def network_env(plan, environ: dict) -> dict:
    """Point gloo and NCCL at the interface that reaches the main machine, unless the user named one: left to
    themselves they take the host name's address, which is often 127.0.1.1 and unreachable from the others."""
    if any(name in environ for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")):
        return {}
    name = interface_towards(plan.main_process_ip)
    return {"GLOO_SOCKET_IFNAME": name, "NCCL_SOCKET_IFNAME": name} if name else {}


def interface_towards(address: str) -> str | None:
    """The network interface this machine reaches `address` through: the local end of a UDP socket connected
    to it (connecting a UDP socket only picks the route; nothing is sent). None when there is no route."""
    try:
        family, kind, proto, _, target = socket.getaddrinfo(address, 9, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(target)
            local = probe.getsockname()[0]
    except OSError:
        return None
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local for a in addresses):
            return name
    return None
