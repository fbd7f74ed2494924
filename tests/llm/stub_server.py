"""An OpenAI-compatible chat-completions server on 127.0.0.1 for the LLM tests (standard library only).

Each model name (the request's ``model``) has a script: a queue of actions answered in order, then a
fallback action. Actions can answer normally, fail with any status and headers (429 + Retry-After,
500, 401, ...), hang past the client's timeout, send a non-JSON body, drop the connection, echo the
Authorization header back (to prove it is scrubbed), or be a function of the request. A model can
also behave like llama.cpp's server, which rejects ``response_format`` of type ``json_schema`` with
HTTP 500. Every request is kept (time, headers, body) and the peak number of concurrent requests is
tracked, so tests can assert on retries, backoff, fail-over order and in-flight limits.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None
    finish_reason: str = "stop"
    prompt_tokens: int | None = 11
    completion_tokens: int | None = 7
    delay: float = 0.0
    usage: bool = True
    # A reply cut off with finish_reason "length" reports the request's max_tokens as its completion
    # tokens, as real servers do; False keeps ``completion_tokens`` (a server whose own context window
    # ended the reply first, as llama.cpp does when it shrinks max_tokens silently).
    cut_at_max_tokens: bool = True


@dataclass
class Status:
    code: int
    message: str = "stub error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    seconds: float


@dataclass
class Raw:
    body: bytes
    content_type: str = "text/html"
    status: int = 200


@dataclass
class Drop:
    """Close the connection without answering."""


@dataclass
class EchoAuth:
    """Fail with ``code`` and put the request's Authorization header into the error message."""

    code: int = 401


Action = Reply | Status | Hang | Raw | Drop | EchoAuth | Callable[[dict[str, Any]], Any]

LLAMACPP_REJECTION = "'response_format' type should be 'text' or 'json_object'"


@dataclass
class Seen:
    at: float
    model: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body.get("messages", [])


class StubLLMServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Action]] = {}
        self._fallback: dict[str, Action] = {}
        self.llamacpp_models: set[str] = set()
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gone = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="stub-llm", daemon=True
        )

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> StubLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def go_away(self) -> None:
        """The server dies: new connections are refused and requests on kept-alive connections are
        dropped unanswered (a bare ``stop`` leaves pooled connections served by their handlers)."""
        with self._lock:
            self.gone = True
        threading.Thread(target=self.stop, name="stub-llm-stop", daemon=True).start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, model: str, *actions: Action, then: Action | None = None) -> None:
        with self._lock:
            self._scripts.setdefault(model, []).extend(actions)
            if then is not None:
                self._fallback[model] = then

    def behave_like_llamacpp(self, model: str) -> None:
        self.llamacpp_models.add(model)

    def seen(self, model: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if model is None or r.model == model]

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._fallback.clear()
            self.llamacpp_models.clear()
            self.requests.clear()
            self.peak_in_flight = 0

    def _next_action(self, model: str) -> Action:
        with self._lock:
            queue = self._scripts.get(model)
            if queue:
                return queue.pop(0)
            return self._fallback.get(model, Status(500, f"stub has no scripted reply for model {model!r}"))

    # -- HTTP -------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default log
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if stub.gone:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                model = str(body.get("model", ""))
                with stub._lock:
                    stub.requests.append(Seen(time.monotonic(), model, body, dict(self.headers.items())))
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    if not self.path.endswith("/chat/completions"):
                        self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                        return
                    fmt = body.get("response_format") or {}
                    if model in stub.llamacpp_models and fmt.get("type") == "json_schema":
                        self._send_json(
                            500,
                            {"error": {"code": 500, "message": LLAMACPP_REJECTION, "type": "server_error"}},
                        )
                        return
                    self._act(stub._next_action(model), body, model)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _act(self, action: Action, body: dict[str, Any], model: str) -> None:
                if callable(action) and not isinstance(action, Reply | Status | Hang | Raw | Drop | EchoAuth):
                    action = action(body)
                    if isinstance(action, str):
                        action = Reply(action)
                if isinstance(action, Reply):
                    if action.delay:
                        time.sleep(action.delay)
                    payload: dict[str, Any] = {
                        "id": f"chatcmpl-stub-{len(stub.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": action.content},
                                "finish_reason": action.finish_reason,
                            }
                        ],
                    }
                    if action.usage:
                        completion = action.completion_tokens
                        if (
                            action.finish_reason == "length"
                            and action.cut_at_max_tokens
                            and body.get("max_tokens")
                        ):
                            completion = body["max_tokens"]
                        usage = {"prompt_tokens": action.prompt_tokens, "completion_tokens": completion}
                        if action.prompt_tokens is not None and completion is not None:
                            usage["total_tokens"] = action.prompt_tokens + completion
                        payload["usage"] = usage
                    self._send_json(200, payload)
                elif isinstance(action, Status):
                    self._send_json(
                        action.code,
                        {"error": {"message": action.message, "code": action.code}},
                        action.headers,
                    )
                elif isinstance(action, Hang):
                    time.sleep(action.seconds)
                    self._send_json(200, {"error": {"message": "too late"}})
                elif isinstance(action, Raw):
                    self._send(action.status, action.body, action.content_type)
                elif isinstance(action, Drop):
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif isinstance(action, EchoAuth):
                    auth = self.headers.get("Authorization", "")
                    self._send_json(
                        action.code,
                        {"error": {"message": f"Invalid credentials: {auth}", "code": action.code}},
                    )
                else:
                    raise TypeError(f"unknown stub action {action!r}")

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json", headers)

            def _send(
                self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
