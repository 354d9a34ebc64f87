"""Loaded into a process under test (PYTHONPATH): records, and refuses, any connection that leaves
this machine, and records imports of the training stack with the program that made them (the app
must not; its model-checking and training subprocesses do). Findings go to $EASYTUNE_GUARD_LOG."""

import os
import socket
import sys

LOG = os.environ.get("EASYTUNE_GUARD_LOG")
FORBIDDEN_IMPORTS = {"torch", "transformers", "peft", "datasets", "openvino", "accelerate"}
LOCAL_PREFIXES = ("127.", "::1", "localhost", "0.0.0.0", "::")


def _record(line: str) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _is_local(address) -> bool:
    if isinstance(address, tuple) and address:
        return str(address[0]).startswith(LOCAL_PREFIXES)
    return True  # unix sockets


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


_getaddrinfo = socket.getaddrinfo


def guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not str(host).startswith(LOCAL_PREFIXES) and str(host) != "":
        _record(f"resolve {host}")
        raise socket.gaierror(f"blocked name lookup of {host}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = guarded_getaddrinfo
socket.socket.connect = guarded_connect
socket.socket.connect_ex = guarded_connect_ex


class _ImportWatch:
    def find_spec(self, name, path=None, target=None):
        if name in FORBIDDEN_IMPORTS:
            program = os.path.basename(sys.argv[0]) if getattr(sys, "argv", None) else "?"
            _record(f"import {name} by {program}")
        return None


sys.meta_path.insert(0, _ImportWatch())
