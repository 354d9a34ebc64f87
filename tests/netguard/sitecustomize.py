"""Loaded into a process under test (PYTHONPATH): records, and refuses, any connection that leaves
this machine and any name lookup of a host other than this machine, and records imports of the
training stack — each with the program that made it (the app must not import the stack; its
model-checking and training subprocesses do). Findings go to $EASYTUNE_GUARD_LOG, one a line:
"connect ADDRESS by PROGRAM", "resolve HOST by PROGRAM", "import MODULE by PROGRAM"."""

import ipaddress
import os
import socket
import sys

LOG = os.environ.get("EASYTUNE_GUARD_LOG")
FORBIDDEN_IMPORTS = {"torch", "transformers", "peft", "datasets", "openvino", "accelerate"}
LOCAL_PREFIXES = ("127.", "::1", "localhost", "0.0.0.0", "::")


def _program() -> str:
    return os.path.basename(sys.argv[0]) if getattr(sys, "argv", None) else "?"


def _record(line: str) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{line} by {_program()}\n")


def _is_local(address) -> bool:
    if isinstance(address, tuple) and address:
        return str(address[0]).startswith(LOCAL_PREFIXES)
    return True  # unix sockets


def _is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])  # an IPv6 address may carry its interface: fe80::1%eth0
    except ValueError:
        return False
    return True


def _looks_up(host) -> bool:
    """Whether resolving `host` asks a name server: a name, not an address, and not this machine's loopback."""
    if host is None:
        return False
    host = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    return host != "" and not host.startswith(LOCAL_PREFIXES) and not _is_numeric(host)


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def guarded_connect(self, address):
    if not _is_local(address):
        _record(f"connect {address}")
        raise OSError(f"blocked non-local connection to {address}")
    return _connect(self, address)


def guarded_connect_ex(self, address):
    if not _is_local(address):
        _record(f"connect {address}")
        return 111
    return _connect_ex(self, address)


def guarded_lookup(lookup):
    """`lookup` (getaddrinfo, gethostbyname, gethostbyname_ex), refusing names that would reach a name server."""
    def guarded(host, *args, **kwargs):
        if _looks_up(host):
            _record(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"blocked name lookup of {host}")
        return lookup(host, *args, **kwargs)
    return guarded


for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
    setattr(socket, _name, guarded_lookup(getattr(socket, _name)))
socket.socket.connect = guarded_connect
socket.socket.connect_ex = guarded_connect_ex


class _ImportWatch:
    def find_spec(self, name, path=None, target=None):
        if name in FORBIDDEN_IMPORTS:
            _record(f"import {name}")
        return None


sys.meta_path.insert(0, _ImportWatch())
