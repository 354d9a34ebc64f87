"""A small Hugging Face Hub on 127.0.0.1, for download tests: as much of the hub's HTTP API as
huggingface_hub uses to download a model (model info, file metadata by HEAD, files by GET with
Range), plus faults to inject and a count of what was served.

    with FakeHub() as hub:
        hub.add_folder("acme/tiny", Path("assets/tiny-model"))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

Like the real hub, large files (*.safetensors, *.bin) are "LFS" files: their ETag is the sha256 of
the content and their resolve URL redirects (302, absolute Location) to a content-addressed /cdn/
URL; small files answer directly with the git blob sha1 as ETag.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")
API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")


@dataclass
class Repo:
    sha: str
    files: dict[str, bytes]

    def etag(self, name: str) -> str:
        data = self.files[name]
        if name.endswith(LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before the connection drops, once
    throttle: dict[str, int] = field(default_factory=dict)  # file -> bytes per second it is sent at
    served: Counter = field(default_factory=Counter)  # file -> body bytes sent by GET
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos[repo_id] = Repo(sha, dict(files))
        return sha

    def add_folder(self, repo_id: str, folder: Path, skip: tuple[str, ...] = ()) -> str:
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name not in skip}
        return self.add_repo(repo_id, files)

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every GET that fetched `name` (None: the whole file)."""
        with self._lock:
            return [rng for method, path, rng in self.requests if method == "GET" and self._file_of(path) == name]

    # -- serving ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeHub:
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _file_of(self, path: str) -> str | None:
        match = RESOLVE.match(path)
        if match:
            return match["file"]
        match = CDN.match(path)
        if match:
            return next((name for repo in self.repos.values() for name in repo.files
                         if repo.etag(name) == match["sha"]), None)
        return None

    def _repo(self, repo_id: str, rev: str | None):
        """(repo, None) or (None, (status, X-Error-Code))."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, (401, "RepoNotFound")  # the hub answers 401 for unknown and private repos alike
        if rev not in (None, "main", repo.sha):
            return None, (404, "RevisionNotFound")
        return repo, None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hangs up (Cancel) is no error here
        pass


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self._answer(head=True)

        def do_GET(self):
            self._answer(head=False)

        def _answer(self, head: bool):
            path = unquote(urlsplit(self.path).path)
            with hub._lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
            if match := API.match(path):
                return self._model_info(match["repo"], match["rev"])
            if match := RESOLVE.match(path):
                return self._resolve(match["repo"], match["rev"], match["file"], head)
            if match := CDN.match(path):
                for repo in hub.repos.values():
                    for name in repo.files:
                        if repo.etag(name) == match["sha"]:
                            return self._send_file(repo, name, head)
            self._status(404, "EntryNotFound")

        def _status(self, status: int, code: str | None = None, headers: dict | None = None):
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _model_info(self, repo_id: str, rev: str | None):
            repo, error = hub._repo(repo_id, rev)
            if error:
                return self._status(*error)
            siblings = []
            for name, data in repo.files.items():
                sibling = {"rfilename": name, "size": len(data)}
                if name.endswith(LFS_SUFFIXES):
                    sibling["lfs"] = {"size": len(data), "sha256": repo.etag(name), "pointerSize": 134}
                siblings.append(sibling)
            body = json.dumps({"_id": repo.sha[:24], "id": repo_id, "modelId": repo_id, "sha": repo.sha,
                               "private": False, "gated": False, "tags": [], "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _resolve(self, repo_id: str, rev: str, name: str, head: bool):
            repo, error = hub._repo(repo_id, rev)
            if error:
                return self._status(*error)
            if name not in repo.files:
                return self._status(404, "EntryNotFound", {"X-Repo-Commit": repo.sha})
            if name.endswith(LFS_SUFFIXES):
                etag = repo.etag(name)
                return self._status(302, None, {
                    "Location": f"{hub.url}/cdn/{etag}", "X-Repo-Commit": repo.sha, "X-Linked-Etag": f'"{etag}"',
                    "X-Linked-Size": str(len(repo.files[name])), "ETag": '"pointer"'})
            self._send_file(repo, name, head)

        def _send_file(self, repo: Repo, name: str, head: bool):
            data = repo.files[name]
            start = 0
            wanted = self.headers.get("Range")
            if wanted and (found := re.match(r"bytes=(\d+)-$", wanted)):
                start = int(found[1])
                if start >= len(data):
                    return self._status(416, None, {"Content-Range": f"bytes */{len(data)}"})
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{repo.etag(name)}"')
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            body = data[start:]
            with hub._lock:
                cut = hub.cut_after.pop(name, None)
            if cut is not None:  # send part of it, then drop the connection as a failing network would
                body = body[:cut]
                self.close_connection = True
            rate = hub.throttle.get(name)
            step = max(1, rate // 20) if rate else len(body) or 1
            for at in range(0, len(body), step):
                piece = body[at:at + step]
                self.wfile.write(piece)
                self.wfile.flush()
                with hub._lock:
                    hub.served[name] += len(piece)
                if rate:
                    time.sleep(len(piece) / rate)

    return Handler
