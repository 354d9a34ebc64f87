"""`easytune serve`: one model behind an OpenAI-compatible API, so existing clients and tools can use it.

    GET  /v1/models             the one model served, with the engine that answers it (`engine`: transformers,
                                openvino, or llama.cpp for a GGUF export where llama-cpp-python is installed)
    POST /v1/chat/completions   {"messages": [...], "temperature", "top_p", "max_tokens", "stream"}
    GET  /health                {"status": "ok", "generating", "waiting", ...} (no key needed: for scripts that
                                wait for the server, and for watching its queue)

Built on the standard library's threaded HTTP server: it starts at once and adds no dependency. One
thread per connection reads the request, within REQUEST_SECONDS (a slow or stalled client is dropped
rather than holding its thread), and puts it in a bounded queue; one worker thread generates for all of
them, taking every waiting request at once as one batch (`chat.answer_together`), far faster than
answering them one after another. A request that finds the queue full is refused at once: 503 with Retry-After.
Streamed answers take their turn in the same queue but are generated one at a time.

The model is loaded before "ready" is printed: a first request would otherwise wait for torch and the
weights and clients would time out, and a target that cannot load fails at start, in front of the person
who started it. The bind rule is the app's: any address other than loopback needs a password, sent by
clients as their API key (`Authorization: Bearer <password>`).
"""

from __future__ import annotations

import hmac
import io
import json
import math
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from easytune import chat
from easytune.i18n import UserError, t
from easytune.settings import Settings

DEFAULT_PORT = 8000  # what OpenAI-compatible local servers usually use; the app keeps 7860
MAX_BODY_BYTES = 8 * 1024 * 1024
LISTEN_BACKLOG = 128  # connections the kernel holds until accepted; at the default 5 a burst of clients is reset
REQUEST_SECONDS = 10  # to send a whole request, head and body: plenty on loopback or a LAN, short for a stalled one
SEND_SECONDS = 60  # the longest a single write may wait for a client that stopped reading its answer
DEFAULT_QUEUE = 64  # requests that may wait for the model; one more is refused at once (503 with Retry-After)
MAX_BATCH = 16  # answers generated together, at most: a batch's memory (its cache) grows with every answer in it


class ApiError(Exception):
    """An HTTP error answered as OpenAI's error object."""

    def __init__(self, status: int, key: str, kind: str = "invalid_request_error", *, headers: dict | None = None,
                 **params):
        super().__init__(key)
        self.status, self.key, self.kind, self.headers, self.params = status, key, kind, headers or {}, params


class _Waiting:
    """One request's place in the queue: a whole answer to generate, or a stream's turn at the model."""

    def __init__(self, prepared: chat.PreparedAnswer, streamed: bool):
        self.prepared, self.streamed = prepared, streamed
        self.turn = threading.Event()  # a stream may generate now
        self.done = threading.Event()  # the answer is ready, or the stream has ended
        self.answer: chat.Answer | None = None
        self.error: BaseException | None = None


class GenerationQueue:
    """Requests waiting for the model, and the one thread that answers them: every waiting request that
    shares the first one's sampling settings is generated with it as one batch."""

    def __init__(self, limit: int = DEFAULT_QUEUE):
        self.limit = limit
        self.generating = self.batches = self.answered = self.largest_batch = 0  # for /health and serve_bench
        self._waiting: deque[_Waiting] = deque()
        self._changed = threading.Condition()
        self._last_seconds = 1.0  # how long the last generation took: the basis of Retry-After
        threading.Thread(target=self._work, name="easytune-serve-queue", daemon=True).start()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def add(self, prepared: chat.PreparedAnswer, streamed: bool = False) -> _Waiting:
        """The request's place in the queue; ApiError 503 at once when the queue is full."""
        place = _Waiting(prepared, streamed)
        with self._changed:
            if len(self._waiting) >= self.limit:
                seconds = self._retry_after()
                raise ApiError(503, "serve.error.busy", "server_error", headers={"Retry-After": str(seconds)},
                               waiting=len(self._waiting), seconds=seconds)
            self._waiting.append(place)
            self._changed.notify()
        return place

    def answer(self, prepared: chat.PreparedAnswer) -> chat.Answer:
        """Wait in the queue for the whole answer (503 when it is full)."""
        place = self.add(prepared)
        place.done.wait()
        if place.error is not None:
            raise place.error
        return place.answer

    def _retry_after(self) -> int:
        """Seconds until the queue is likely to have room: the generations ahead, at the last one's pace."""
        return max(1, math.ceil(self._last_seconds * (1 + len(self._waiting) // MAX_BATCH)))

    def _next(self) -> list[_Waiting]:
        with self._changed:
            while not self._waiting:
                self._changed.wait()
            first = self._waiting.popleft()
            if first.streamed or not first.prepared.batchable:
                return [first]
            alike = [w for w in self._waiting if not w.streamed and w.prepared.sampling == first.prepared.sampling]
            batch = [first] + alike[:MAX_BATCH - 1]
            for place in batch[1:]:
                self._waiting.remove(place)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next()
            self.generating = len(batch)
            started = time.monotonic()
            if batch[0].streamed:
                batch[0].turn.set()
                batch[0].done.wait()  # the request's own thread streams it, and says when it is over
            else:
                self._generate(batch)
            self._last_seconds = time.monotonic() - started
            self.generating = 0
            self.batches += 1
            self.answered += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))

    @staticmethod
    def _generate(batch: list[_Waiting]) -> None:
        try:
            answers = chat.answer_together([w.prepared for w in batch])
        except Exception as exc:  # noqa: BLE001 - each request gets its own answer or error
            if len(batch) == 1:
                batch[0].error = exc
            else:  # one question (or the batch's memory) must not fail the others
                for place in batch:
                    GenerationQueue._generate([place])
                return
        else:
            for place, answer in zip(batch, answers):
                place.answer = answer
        for place in batch:
            place.done.set()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that never hangs up does not keep the process alive
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, settings: Settings, target: chat.Target, address: tuple[str, int], verbose: bool = False,
                 queue_limit: int = DEFAULT_QUEUE):
        self.settings, self.target, self.verbose = settings, target, verbose
        self.created = int(time.time())
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ApiHandler)
        self.queue = GenerationQueue(queue_limit)  # once the address is ours: its worker thread lives as long as we do

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def _number(field: str, value, default, integer: bool = False):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ApiError(400, "serve.error.bad_field", field=field,
                       expected=("serve.type.integer" if integer else "serve.type.number"))
    return int(value) if integer else float(value)


def _content(value) -> str | None:
    """Message content as text: a string, or OpenAI's list of parts of which the text parts count."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return "".join(p.get("text", "") for p in value if p.get("type") == "text")
    return None


def request_options(body) -> dict:
    """stream_answer's arguments from a chat completion request; ApiError 400 for what is malformed."""
    if not isinstance(body, dict):
        raise ApiError(400, "serve.error.not_object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "serve.error.no_messages")
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(400, "serve.error.no_messages")
        role = "system" if message.get("role") == "developer" else message.get("role")  # OpenAI's newer name
        turns.append({"role": role, "content": _content(message.get("content"))})
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "serve.error.bad_field", field="stream", expected="serve.type.boolean")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return {"messages": turns, "stream": stream,
            "temperature": _number("temperature", body.get("temperature"), chat.DEFAULT_TEMPERATURE),
            "top_p": _number("top_p", body.get("top_p"), chat.DEFAULT_TOP_P),
            "max_new_tokens": _number("max_tokens", max_tokens, chat.DEFAULT_MAX_NEW_TOKENS, integer=True),
            "include_usage": bool((body.get("stream_options") or {}).get("include_usage"))}


class _RequestReader(io.RawIOBase):
    """The connection as the handler reads it, under one deadline for the whole request rather than a
    timeout per read: a client that sends a byte every few seconds, or half a body and then nothing, is
    dropped all the same."""

    def __init__(self, connection: socket.socket):
        self.connection, self.deadline = connection, math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self.connection.settimeout(min(left, SEND_SECONDS))
        try:
            return self.connection.recv_into(buffer)
        finally:
            self.connection.settimeout(SEND_SECONDS)  # what writes to this client may wait


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "EasyTune"
    timeout = SEND_SECONDS  # set on the connection by the base class

    # ---- plumbing ----

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader has no deadline; ours replaces it
        self._reader = _RequestReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        # Also bounds the wait for a kept-alive connection's next request: the base class closes it on time-out.
        self._reader.deadline = time.monotonic() + REQUEST_SECONDS
        super().handle_one_request()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, data: dict, headers: dict | None = None) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error_body(self, key: str, kind: str, **params) -> dict:
        lang = self.server.settings.language
        if key == "serve.error.bad_field":
            params = {**params, "expected": t(params["expected"], lang)}
        return {"error": {"message": t(key, lang, **params), "type": kind, "param": params.get("field"), "code": key}}

    def _fail(self, error: ApiError) -> None:
        if self.command == "POST":
            self.close_connection = True  # its body may be unread: it must not be taken for the next request
        headers = {"WWW-Authenticate": "Bearer", **error.headers} if error.status == 401 else error.headers
        self._send_json(error.status, self._error_body(error.key, error.kind, **error.params), headers)

    def _authorize(self) -> None:
        password = self.server.settings.password
        if not password:
            return
        given = self.headers.get("Authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), password.encode()):
            raise ApiError(401, "serve.error.unauthorized", kind="authentication_error")

    def _read_json(self):
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            size = 0
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "serve.error.too_large", size=size, limit=MAX_BODY_BYTES)
        try:
            raw = self.rfile.read(size) if size else b""
        except TimeoutError:
            raise ApiError(408, "serve.error.too_slow", seconds=REQUEST_SECONDS) from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "serve.error.bad_json", detail=str(exc)[:200]) from None

    def _model_card(self) -> dict:
        return {"id": self.server.target.name, "object": "model", "created": self.server.created,
                "owned_by": "easytune", "engine": self.server.target.engine}

    # ---- routes ----

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/health":
                queue = self.server.queue
                return self._send_json(200, {"status": "ok", "generating": queue.generating, "waiting": queue.waiting,
                                             "queue_limit": queue.limit, "answered": queue.answered,
                                             "batches": queue.batches, "largest_batch": queue.largest_batch})
            self._authorize()
            if path == "/v1/models":
                return self._send_json(200, {"object": "list", "data": [self._model_card()]})
            if path == f"/v1/models/{self.server.target.name}":
                return self._send_json(200, self._model_card())
            raise ApiError(404, "serve.error.not_found", path=path or "/")
        except ApiError as error:
            self._fail(error)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            self._authorize()
            if path != "/v1/chat/completions":
                raise ApiError(404, "serve.error.not_found", path=path or "/")
            options = request_options(self._read_json())
            try:
                prepared = chat.prepare_answer(self.server.settings, self.server.target, options["messages"],
                                               temperature=options["temperature"], top_p=options["top_p"],
                                               max_new_tokens=options["max_new_tokens"])
            except UserError as exc:
                raise ApiError(400, exc.key, **exc.params) from None
            if options["stream"]:
                self._stream(prepared, options["include_usage"])
            else:
                self._complete(self.server.queue.answer(prepared))
        except ApiError as error:
            self._fail(error)
        except UserError as exc:
            self._fail(ApiError(400, exc.key, **exc.params))
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the console the traceback
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, self._error_body("serve.error.internal", "server_error", detail=str(exc)[:300]))

    # ---- answers ----

    def _envelope(self, completion_id: str, kind: str) -> dict:
        return {"id": completion_id, "object": kind, "created": int(time.time()), "model": self.server.target.name,
                "engine": self.server.target.engine}  # beside OpenAI's fields: clients ignore what they do not know

    @staticmethod
    def _usage(answer: chat.Answer | chat.AnswerStream) -> dict:
        return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens}

    def _complete(self, answer: chat.Answer) -> None:
        body = self._envelope("chatcmpl-" + uuid.uuid4().hex, "chat.completion")
        body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                            "finish_reason": answer.finish_reason}]
        body["usage"] = self._usage(answer)
        self._send_json(200, body)

    def _stream(self, prepared: chat.PreparedAnswer, include_usage: bool) -> None:
        """Server-Sent Events: chat.completion.chunk objects with the new text of each step, then [DONE].
        The stream waits for its turn in the queue after the headers, so a full queue can still say 503."""
        place = self.server.queue.add(prepared, streamed=True)
        try:
            self._send_events(place, chat.AnswerStream(prepared.target, prepared), include_usage)
        finally:
            place.done.set()  # the queue's worker moves on (also when this stream never got its turn)

    def _send_events(self, place: _Waiting, stream: chat.AnswerStream, include_usage: bool) -> None:
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream's end is the connection's end
        self.end_headers()
        self.close_connection = True

        def send(data) -> None:
            text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            self.wfile.write(f"data: {text}\n\n".encode())
            self.wfile.flush()

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            return {**self._envelope(completion_id, "chat.completion.chunk"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        try:
            send(chunk({"role": "assistant", "content": ""}))
            place.turn.wait()
            sent = ""
            try:
                for text in stream:
                    send(chunk({"content": text[len(sent):]}))
                    sent = text
            except UserError as exc:  # too late for a status code: the error goes in the stream
                send(self._error_body(exc.key, "invalid_request_error", **exc.params))
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                send(self._error_body("serve.error.internal", "server_error", detail=str(exc)[:300]))
            else:
                send(chunk({}, stream.finish_reason))
                if include_usage:
                    send({**self._envelope(completion_id, "chat.completion.chunk"), "choices": [],
                          "usage": self._usage(stream)})
            send("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            stream.close()  # the client left: stop generating for nobody


# ---- starting ----------------------------------------------------------------------------------------

def check_queue(queue: int) -> None:
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 1:
        raise UserError("serve.error.queue", value=queue)


def make_server(settings: Settings, target: str | chat.Target, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, password: str | None = None, verbose: bool = False, queue: int = DEFAULT_QUEUE) -> ApiServer:
    """A bound server, model loaded, not yet serving (call serve_forever). Port 0 picks a free port.

    Refused (UserError) before anything loads when the address is not loopback and there is no password.
    """
    from easytune.ui.server import check_bind

    bound = replace(settings, host=host, port=port, password=password or settings.password)
    check_bind(bound)
    check_queue(queue)
    resolved = chat.resolve_target(bound, target)
    chat.load_target(resolved)
    return ApiServer(bound, resolved, (host, port), verbose=verbose, queue_limit=queue)


def serve(settings: Settings, target: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          password: str | None = None, queue: int = DEFAULT_QUEUE) -> int:
    """Serve until Ctrl-C."""
    from easytune.offline import go_offline
    from easytune.ui.server import check_bind

    check_bind(replace(settings, host=host, password=password or settings.password))  # before the slow part
    check_queue(queue)
    go_offline()
    print(t("serve.loading", settings.language, model=target), file=sys.stderr, flush=True)
    server = make_server(settings, target, host, port, password=password, verbose=True, queue=queue)
    print(t("serve.ready", settings.language, model=server.target.name, engine=server.target.engine, url=server.url),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
