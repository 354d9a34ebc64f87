"""Downloads from the Hugging Face Hub (or an HF_ENDPOINT mirror) that continue where they stopped.

huggingface_hub writes each file under a temporary name that it deletes when the download stops, so
a large model cut off at 90 % would start over. Here each file is fetched into the hub cache as
blobs/<etag>.incomplete, which stays when the download stops (the network drops, the user presses
Cancel, the app is closed); the next try asks only for the missing bytes (an HTTP Range request).
A finished blob is checked (its size, and its sha256 where the hub names one) and linked into
snapshots/<commit>/ exactly as huggingface_hub lays out its cache, so every tool reads the result.

The requests are our own (httpx), not huggingface_hub's: the app turns huggingface_hub's network off
(HF_HUB_OFFLINE) for everything it does not ask for itself, and a download the user asked for is the
one exception. They follow the hub protocol as huggingface_hub speaks it: model info from
/api/models/<id>[/revision/<rev>], each file's ETag, size and commit from a HEAD on
/<id>/resolve/<commit>/<file> (X-Linked-Etag / X-Linked-Size before a redirect to a CDN), then a
GET of the file.

The progress callback gets a DownloadProgress: bytes done of the total (known before the first
byte moves), the files being fetched, the speed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin, urlparse

from easytune.i18n import UserError

PARALLEL_FILES = 4  # shards download side by side; one connection rarely fills a fast line
RETRIES = 5  # a broken stream is resumed this many times in a row without progress before giving up
RETRY_PAUSE_S = 1.0
READ_TIMEOUT_S = 30.0  # no byte for this long counts as a broken stream
REPORT_EVERY_S = 0.25  # progress callbacks at most this often (and at each file's start and end)
SPEED_WINDOW_S = 3.0
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class DownloadProgress:
    """Where a download stands, handed to the progress callback."""

    hub_id: str
    done: int  # bytes on disk, those kept from an earlier try included
    total: int  # bytes of all the files this download brings
    files_done: int
    files_total: int
    current: list[str] = field(default_factory=list)  # files being fetched now
    speed: float = 0.0  # bytes per second over the last few seconds
    resumed: int = 0  # bytes kept from an earlier try, not fetched again
    finished: bool = False
    stage: str | None = None  # a GGUF import's step (hash, read, convert, write, check); None for a download

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


DownloadCallback = Callable[[DownloadProgress], None]


@dataclass
class RemoteFile:
    name: str
    url: str  # where the bytes are, after the hub's redirect
    etag: str  # the blob's name in the cache
    size: int
    headers: dict


class _Stopped(Exception):
    """The download was asked to stop (Cancel, or another file failed)."""


# ---------------------------------------------------------------------------------------------
# talking to the hub


def _headers() -> dict:
    """huggingface_hub's headers (its user agent, the token from HF_TOKEN or `hf auth login`), no compression:
    the bytes on the wire are the bytes of the file, so sizes and Range requests mean what they say."""
    from huggingface_hub.utils import build_hf_headers

    return {**build_hf_headers(), "Accept-Encoding": "identity"}


def _client(timeout: float):
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=timeout))


def _check_answer(response, hub_id: str, endpoint: str, revision: str | None) -> None:
    """The hub's errors as the user's messages. Only the hub's own answers count (it names them in
    X-Error-Code, and answers 401 for a repository it will not show): a bare 404 may come from a
    captive portal or a filtering proxy that answers every address."""
    if response.is_success:
        return
    code = response.headers.get("X-Error-Code", "")
    if code == "GatedRepo":
        raise UserError("models.hub_gated", hub_id=hub_id, endpoint=endpoint)
    if code == "RevisionNotFound":
        raise UserError("models.hub_not_found", hub_id=f"{hub_id}@{revision}", endpoint=endpoint)
    if code == "RepoNotFound" or (not code and response.status_code == 401):
        raise UserError("models.hub_not_found", hub_id=hub_id, endpoint=endpoint)
    raise OSError(f"{response.status_code} {response.reason_phrase} from {response.request.url}")


def repo_files(hub_id: str, endpoint: str, revision: str | None = None, timeout: float = 10.0) -> tuple[str, list[str]]:
    """(commit, every file name) of a model repository at `revision` (the default branch when None)."""
    base = f"{endpoint}/api/models/{hub_id}"
    with _client(timeout) as client:
        url = base if revision is None else f"{base}/revision/{quote(revision, safe='')}"
        response = client.get(url, headers=_headers())
        _check_answer(response, hub_id, endpoint, revision)
        info = response.json()
        names = [s["rfilename"] for s in info.get("siblings") or []]
        if not names:  # some mirrors list no siblings: walk the tree, page by page
            url = f"{base}/tree/{quote(info['sha'], safe='')}?recursive=true"
            while url:
                response = client.get(url, headers=_headers())
                _check_answer(response, hub_id, endpoint, revision)
                names += [e["path"] for e in response.json() if e.get("type") == "file"]
                url = response.links.get("next", {}).get("url")
    return info["sha"], names


def _describe(client, hub_id: str, commit: str, name: str, endpoint: str) -> RemoteFile:
    """Where a file's bytes are, its etag and size: the HEAD request huggingface_hub makes too.
    Relative redirects (a renamed repository) are followed; an absolute one points at the CDN."""
    url = f"{endpoint}/{hub_id}/resolve/{quote(commit, safe='')}/{quote(name)}"
    headers = _headers()
    for _ in range(10):
        response = client.head(url, headers=headers, follow_redirects=False)
        location = response.headers.get("Location")
        if not (response.is_redirect and location and not urlparse(location).netloc):
            break
        url = urljoin(url, location)
    if not response.is_redirect:
        _check_answer(response, hub_id, endpoint, commit)
    etag = (response.headers.get("X-Linked-Etag") or response.headers.get("ETag") or "").removeprefix("W/").strip('"')
    size = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length")
    if not etag or not size or not response.headers.get("X-Repo-Commit"):
        raise OSError(f"{endpoint} gave no ETag, size or commit for {name}: is it a Hugging Face hub or mirror?")
    location = response.headers.get("Location") if response.is_redirect else None
    if location and urlparse(location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
    return RemoteFile(name=name, url=location or url, etag=etag, size=int(size), headers=headers)


# ---------------------------------------------------------------------------------------------
# running downloads, so that a second door (the Cancel button) can stop one


@dataclass
class _Running:
    halt: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


_running: dict[str, _Running] = {}
_running_lock = threading.Lock()


def cancel_download(hub_id: str) -> bool:
    """Ask the running download of `hub_id` to stop; what it fetched is kept for the next try."""
    with _running_lock:
        run = _running.get((hub_id or "").strip())
    if run is None:
        return False
    run.cancelled = True
    run.halt.set()
    return True


def running_downloads() -> list[str]:
    with _running_lock:
        return sorted(_running)


# ---------------------------------------------------------------------------------------------
# progress


class _Tracker:
    """Adds up the bytes of every file (from several threads) and reports them, at a sensible rate."""

    def __init__(self, hub_id: str, files: list[RemoteFile], done_files: int, done_bytes: int,
                 callback: DownloadCallback | None):
        self.lock = threading.Lock()
        self.status = DownloadProgress(hub_id=hub_id, done=done_bytes, total=done_bytes + sum(f.size for f in files),
                                       files_done=done_files, files_total=done_files + len(files))
        self.callback = callback
        self.fetched = 0
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self.last_report = 0.0

    def started(self, name: str, kept: int) -> None:
        with self.lock:
            self.status.current.append(name)
            self.status.done += kept
            self.status.resumed += kept
            self.report(force=True)

    def moved(self, n: int) -> None:
        """n bytes written (negative: bytes thrown away, when a server ignored the Range asked for)."""
        with self.lock:
            self.status.done += n
            self.fetched += max(n, 0)
            self.report()

    def finished(self, file: RemoteFile, skipped: bool = False) -> None:
        with self.lock:
            if file.name in self.status.current:
                self.status.current.remove(file.name)
            if skipped:  # already in the cache, from another download
                self.status.done += file.size
            self.status.files_done += 1
            self.report(force=True)

    def close(self) -> None:
        with self.lock:
            self.status.finished = True
            self.status.done = self.status.total
            self.report(force=True)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        self.samples.append((now, self.fetched))
        while len(self.samples) > 2 and now - self.samples[1][0] > SPEED_WINDOW_S:
            self.samples.popleft()
        if self.callback is None or (not force and now - self.last_report < REPORT_EVERY_S):
            return
        self.last_report = now
        since, fetched = self.samples[0]
        self.status.speed = (self.fetched - fetched) / (now - since) if now > since else 0.0
        try:
            self.callback(DownloadProgress(**{**self.status.__dict__, "current": list(self.status.current)}))
        except Exception:  # noqa: BLE001 - a display that fails must not break the download
            pass


def terminal_progress(stream=None) -> DownloadCallback:
    """A progress bar on the terminal (stderr), for `easytune models add`."""
    from tqdm import tqdm

    bar = None

    def show(status: DownloadProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=status.total, initial=status.done, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=status.hub_id, file=stream or sys.stderr, dynamic_ncols=True, leave=True)
        bar.update(status.done - bar.n)
        bar.set_postfix_str(", ".join(status.current)[:48], refresh=False)
        if status.finished:
            bar.close()

    return show


# ---------------------------------------------------------------------------------------------
# fetching one file


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream(client, file: RemoteFile, partial: Path, tracker: _Tracker, halt: threading.Event) -> None:
    """Append the bytes after what `partial` holds; raises httpx errors when the stream breaks."""
    start = _size(partial)
    headers = dict(file.headers, **({"Range": f"bytes={start}-"} if start else {}))
    with client.stream("GET", file.url, headers=headers) as response:
        if response.status_code == 416:  # what we hold is not a beginning of this file: take it again
            partial.write_bytes(b"")
            tracker.moved(-start)
            return
        if not response.is_success:
            raise OSError(f"{response.status_code} {response.reason_phrase} from {response.request.url}")
        mode = "ab"
        if start and response.status_code != 206:  # the server ignored the Range: it sends the whole file
            mode = "wb"
            tracker.moved(-start)
        with partial.open(mode) as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                tracker.moved(len(chunk))
                if halt.is_set():
                    raise _Stopped


def _fetch(client, file: RemoteFile, storage: Path, hub_id: str, tracker: _Tracker, halt: threading.Event) -> None:
    """Bring one blob into the cache, continuing from blobs/<etag>.incomplete when it is there."""
    import httpx
    from huggingface_hub.utils import WeakFileLock

    blob = storage / "blobs" / file.etag
    if blob.exists():
        tracker.finished(file, skipped=True)
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = storage.parent / ".locks" / storage.name / f"{file.etag}.lock"  # huggingface_hub's own lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if blob.exists():  # another download brought it meanwhile
            tracker.finished(file, skipped=True)
            return
        partial = blob.with_name(blob.name + ".incomplete")
        if _size(partial) > file.size:
            partial.unlink()
        partial.touch()
        tracker.started(file.name, _size(partial))
        tries_left = RETRIES
        while (before := _size(partial)) < file.size:
            if halt.is_set():
                raise _Stopped
            error = None
            try:
                _stream(client, file, partial, tracker, halt)
            except httpx.TransportError as exc:  # dropped, timed out, refused: try again from where it stopped
                error = exc
            tries_left = RETRIES if _size(partial) > before else tries_left - 1
            if tries_left <= 0:
                raise error or OSError(f"the server stopped sending {file.name} at {before} of {file.size} bytes")
            if error is not None:
                halt.wait(RETRY_PAUSE_S)
        if _size(partial) != file.size or (SHA256.match(file.etag) and _sha256(partial) != file.etag):
            partial.unlink(missing_ok=True)  # damaged on the way: keeping it would only poison the next try
            raise UserError("models.download_damaged", hub_id=hub_id, file=file.name)
        os.replace(partial, blob)
    tracker.finished(file)


def _link(storage: Path, commit: str, name: str, etag: str) -> None:
    """snapshots/<commit>/<name> -> ../../blobs/<etag>, as huggingface_hub lays out its cache."""
    pointer = storage / "snapshots" / commit / name
    if pointer.exists():
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    blob = storage / "blobs" / etag
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symbolic links here (some Windows setups): a hard link, else a copy
        try:
            os.link(blob, pointer)
        except OSError:
            shutil.copyfile(blob, pointer)


# ---------------------------------------------------------------------------------------------
# a whole snapshot


def _check_space(hub_id: str, storage: Path, files: list[RemoteFile]) -> None:
    need = sum(f.size - _size(storage / "blobs" / f"{f.etag}.incomplete") for f in files
               if not (storage / "blobs" / f.etag).exists())
    existing = next(p for p in (storage, *storage.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise UserError("models.download_no_space", hub_id=hub_id, need_gb=f"{need / 1e9:.1f}",
                        free_gb=f"{free / 1e9:.1f}", cache=str(storage.parent))


def fetch_snapshot(hub_id: str, commit: str, names: list[str], *, endpoint: str, cache: Path,
                   revision: str = "main", progress: DownloadCallback | None = None,
                   timeout: float = 10.0) -> Path:
    """Download `names` of `hub_id` at `commit` into the hub cache; returns the snapshot folder.

    Raises UserError models.download_cancelled when cancel_download(hub_id) is called meanwhile;
    network errors pass through (the caller words them). Nothing fetched is ever deleted (except a
    file whose checksum is wrong), so calling it again continues.
    """
    storage = cache / ("models--" + hub_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    run = _Running()
    with _running_lock:
        if hub_id in _running:
            raise UserError("models.download_running", hub_id=hub_id)
        _running[hub_id] = run
    try:
        with _client(timeout) as client:
            linked = [n for n in names if (snapshot / n).exists()]  # complete already: no request needed
            with ThreadPoolExecutor(8) as pool:
                files = list(pool.map(lambda n: _describe(client, hub_id, commit, n, endpoint),
                                      [n for n in names if n not in linked]))
            _check_space(hub_id, storage, files)
            tracker = _Tracker(hub_id, files, len(linked), sum(_size(snapshot / n) for n in linked), progress)
            tracker.report(force=True)
            error = None
            with ThreadPoolExecutor(PARALLEL_FILES) as pool:
                futures = [pool.submit(_fetch, client, f, storage, hub_id, tracker, run.halt) for f in files]
                for future in as_completed(futures):
                    failed = future.exception()
                    if failed is not None and (error is None or isinstance(error, _Stopped)):
                        error = failed
                        run.halt.set()  # the others stop too, keeping what they have
        if run.cancelled:
            raise UserError("models.download_cancelled", hub_id=hub_id, pct=f"{100 * tracker.status.fraction:.0f}")
        if error is not None:
            raise error
        for file in files:
            _link(storage, commit, file.name, file.etag)
        if revision != commit:  # refs/main holds the commit the branch pointed at, as huggingface_hub keeps it
            ref = storage / "refs" / revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        tracker.close()
        return snapshot
    finally:
        with _running_lock:
            _running.pop(hub_id, None)
