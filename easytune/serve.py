"""`easytune serve`: one model behind an OpenAI-compatible API, so existing clients and tools can use it.

    GET  /v1/models             the one model served
    POST /v1/chat/completions   {"messages": [...], "temperature", "top_p", "max_tokens", "stream"}
    GET  /health                {"status": "ok"} (no key needed: for scripts that wait for the server)

Built on the standard library's threaded HTTP server: it starts at once, adds no dependency, and one
generation runs at a time anyway (chat's lock), so nothing heavier would answer faster. The model is
loaded before "ready" is printed: a first request would otherwise wait for torch and the weights and
clients would time out, and a target that cannot load fails at start, in front of the person who
started it. The bind rule is the app's: any address other than loopback needs a password, sent by
clients as their API key (`Authorization: Bearer <password>`).
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
import time
import traceback
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from easytune import chat
from easytune.i18n import UserError, t
from easytune.settings import Settings

DEFAULT_PORT = 8000  # what OpenAI-compatible local servers usually use; the app keeps 7860
MAX_BODY_BYTES = 8 * 1024 * 1024


class ApiError(Exception):
    """An HTTP error answered as OpenAI's error object."""

    def __init__(self, status: int, key: str, kind: str = "invalid_request_error", **params):
        super().__init__(key)
        self.status, self.key, self.kind, self.params = status, key, kind, params


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that never hangs up does not keep the process alive

    def __init__(self, settings: Settings, target: chat.Target, address: tuple[str, int], verbose: bool = False):
        self.settings, self.target, self.verbose = settings, target, verbose
        self.created = int(time.time())
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ApiHandler)

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


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "EasyTune"

    # ---- plumbing ----

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
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
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
        raw = self.rfile.read(size) if size else b""
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "serve.error.bad_json", detail=str(exc)[:200]) from None

    def _model_card(self) -> dict:
        return {"id": self.server.target.name, "object": "model", "created": self.server.created,
                "owned_by": "easytune"}

    # ---- routes ----

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/health":
                return self._send_json(200, {"status": "ok"})
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
                stream = chat.stream_answer(self.server.settings, self.server.target, options["messages"],
                                            temperature=options["temperature"], top_p=options["top_p"],
                                            max_new_tokens=options["max_new_tokens"])
            except UserError as exc:
                raise ApiError(400, exc.key, **exc.params) from None
            if options["stream"]:
                self._stream(stream, options["include_usage"])
            else:
                self._complete(stream)
        except ApiError as error:
            self._fail(error)
        except UserError as exc:
            self._fail(ApiError(400, exc.key, **exc.params))
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the console the traceback
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, self._error_body("serve.error.internal", "server_error", detail=str(exc)[:300]))

    # ---- answers ----

    def _envelope(self, completion_id: str, kind: str) -> dict:
        return {"id": completion_id, "object": kind, "created": int(time.time()), "model": self.server.target.name}

    @staticmethod
    def _usage(stream: chat.AnswerStream) -> dict:
        return {"prompt_tokens": stream.prompt_tokens, "completion_tokens": stream.completion_tokens,
                "total_tokens": stream.prompt_tokens + stream.completion_tokens}

    def _complete(self, stream: chat.AnswerStream) -> None:
        for _ in stream:
            pass
        body = self._envelope("chatcmpl-" + uuid.uuid4().hex, "chat.completion")
        body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": stream.text},
                            "finish_reason": stream.finish_reason}]
        body["usage"] = self._usage(stream)
        self._send_json(200, body)

    def _stream(self, stream: chat.AnswerStream, include_usage: bool) -> None:
        """Server-Sent Events: chat.completion.chunk objects with the new text of each step, then [DONE]."""
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

def make_server(settings: Settings, target: str | chat.Target, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, password: str | None = None, verbose: bool = False) -> ApiServer:
    """A bound server, model loaded, not yet serving (call serve_forever). Port 0 picks a free port.

    Refused (UserError) before anything loads when the address is not loopback and there is no password.
    """
    from easytune.ui.server import check_bind

    bound = replace(settings, host=host, port=port, password=password or settings.password)
    check_bind(bound)
    resolved = chat.resolve_target(bound, target)
    chat.load_target(resolved)
    return ApiServer(bound, resolved, (host, port), verbose=verbose)


def serve(settings: Settings, target: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          password: str | None = None) -> int:
    """Serve until Ctrl-C."""
    from easytune.offline import go_offline
    from easytune.ui.server import check_bind

    check_bind(replace(settings, host=host, password=password or settings.password))  # before the slow part
    go_offline()
    print(t("serve.loading", settings.language, model=target), file=sys.stderr, flush=True)
    server = make_server(settings, target, host, port, password=password, verbose=True)
    print(t("serve.ready", settings.language, model=server.target.name, url=server.url), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
