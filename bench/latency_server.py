"""A local OpenAI-compatible chat-completions server that answers schema-valid JSON after a latency.

``python -m bench.latency_server --latency planexe --scale 0.1`` listens on 127.0.0.1 (a free port
unless ``--port``) and prints ``PORT <n>`` once it is ready. ``POST /v1/chat/completions``:

- structured requests (``response_format`` ``json_schema``, or ``json_object`` with a ``schema``, or a
  schema embedded in the system message by the prompt mode) get a JSON object valid against the schema,
  built by the project's offline schema faker (``resources.llm.offline``); other requests get markdown;
- lists are as long as PlanExe's (``--shape planexe``, the default: about 5-6 WBS phases of 6-7
  subtasks, so 30-42 WBS level-3 calls and 12-17 duration chunks, as in the recorded runs in
  ``shared/fixtures/planexe_runs``; 3-5 prompt constraints, 8-10 adherence directives, three domain
  candidates per batch for the steps added from PlanExe 2026) or as short as the offline faker
  makes them (``--shape faker``);
- the reply is sent after a latency drawn from the chosen model: ``fixed:SECONDS`` or ``planexe`` (a
  log-normal with PlanExe-like median 4 s and 90th percentile 12 s), multiplied by ``--scale``.

Same request, same answer, same latency, whichever orchestrator sends it: the seed is a hash of the
request in which every uuid is replaced by its order of first appearance. The steps give levers,
documents and WBS tasks fresh uuid4 ids, so without that two runs of one plan would diverge after the
first id; with it, the Dagster job and both Luigi runs of the benchmark make the same calls and wait
the same time for each. Fields named like an id are answered with ids the request mentions, as a real
model's would.

Every call is logged (``GET /calls``): the plan and step it came from (the ``X-PlanExe-Plan-Id`` and
``X-PlanExe-Stage`` headers the LLM layer sends) and when it arrived and was answered, in seconds
since the server started. ``GET /stats`` gives the counts and the peak of requests in flight.

The latency actually applied is reported back in the completion id (``bench-<seed>-<micros>``), which
the LLM layer stores in ``llm_interactions.response_metadata.response_id``: the lower-bound
computation reads it from there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from resources.llm.offline import known_ids, offline_json, offline_markdown

# PlanExe-like call latency: median 4 s, 90th percentile 12 s (log-normal).
PLANEXE_MEDIAN_SECONDS = 4.0
PLANEXE_P90_SECONDS = 12.0
_Z90 = 1.2815515655446004  # standard normal 90th percentile
PLANEXE_SIGMA = math.log(PLANEXE_P90_SECONDS / PLANEXE_MEDIAN_SECONDS) / _Z90

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_SCHEMA_IN_PROMPT = re.compile(r"valid against this JSON schema:\n(\{.*\})\s*$", re.DOTALL)
ID_PREFIX = "bench-"


# Item counts of the lists that decide how wide PlanExe's fan-outs are, aimed at the middle of its
# recorded runs (Silo and Hong Kong: 44 and 29 WBS level-3 tasks, 17 and 12 duration chunks, 5 + 5
# and 10 + 5 drafted documents, 15 potential levers). Other lists keep the faker's short defaults.
SHAPES: dict[str, dict[str, tuple[int, int]]] = {
    "faker": {},
    "planexe": {
        "major_phase_details": (5, 6),  # WBS level 2: phases ...
        "subtasks": (6, 7),  # ... and their subtasks (each one a level-3 call; 3 per duration chunk)
        "levers": (5, 5),  # potential levers: 5 per turn, 3 turns
        "documents_to_create": (3, 5),
        "documents_to_find": (3, 5),
        "documents_to_create_part2": (2, 4),
        "documents_to_find_part2": (2, 4),
        # The steps added from PlanExe 2026: a prompt's explicit constraints (a budget, a place, a
        # deadline, a banned thing) and one verdict per constraint from each of the six checks; 5-15
        # directives for prompt adherence, each graded; three domain candidates per batch (three
        # batches, then the pick). The self audit's 20 calls do not depend on a list.
        "constraints": (3, 5),
        "constraint_violations": (3, 5),
        "directives": (8, 10),
        "results": (8, 10),
        "domain_fits": (3, 3),
    },
}


class LatencyModelError(ValueError):
    pass


@dataclass(frozen=True)
class LatencyModel:
    """``kind`` is ``fixed`` (``seconds`` each) or ``planexe`` (log-normal); ``scale`` multiplies both."""

    kind: str
    seconds: float = 0.0
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str, scale: float = 1.0) -> LatencyModel:
        if scale < 0 or not math.isfinite(scale):
            raise LatencyModelError(f"scale must be a non-negative number, got {scale!r}")
        text = text.strip()
        if text == "planexe":
            return cls("planexe", scale=scale)
        if text.startswith("fixed:"):
            try:
                seconds = float(text[len("fixed:") :])
            except ValueError:
                raise LatencyModelError(f"fixed latency must be a number of seconds, got {text!r}") from None
            if seconds < 0 or not math.isfinite(seconds):
                raise LatencyModelError(f"fixed latency must be >= 0, got {text!r}")
            return cls("fixed", seconds=seconds, scale=scale)
        raise LatencyModelError(f"latency must be 'planexe' or 'fixed:SECONDS', got {text!r}")

    def draw(self, seed: int) -> float:
        if self.kind == "fixed":
            return self.seconds * self.scale
        rng = random.Random(seed ^ 0x5EED)
        return math.exp(math.log(PLANEXE_MEDIAN_SECONDS) + PLANEXE_SIGMA * rng.gauss(0.0, 1.0)) * self.scale

    @property
    def spec(self) -> str:
        """The text ``parse`` reads (without the scale)."""
        return "planexe" if self.kind == "planexe" else f"fixed:{self.seconds:g}"

    def short(self) -> str:
        if self.kind == "fixed":
            return f"fixed {self.seconds * self.scale:.3g} s"
        return f"PlanExe-like, median {PLANEXE_MEDIAN_SECONDS * self.scale:.3g} s"

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"fixed {self.seconds:g} s x {self.scale:g}"
        return (
            f"log-normal, median {PLANEXE_MEDIAN_SECONDS:g} s, p90 {PLANEXE_P90_SECONDS:g} s, "
            f"scaled x {self.scale:g} (median {PLANEXE_MEDIAN_SECONDS * self.scale:.3g} s, "
            f"p90 {PLANEXE_P90_SECONDS * self.scale:.3g} s)"
        )


def normalized_seed(messages: list[dict[str, Any]], schema: dict[str, Any] | None) -> int:
    """A hash of the request with uuids replaced by their order of first appearance."""
    order: dict[str, int] = {}

    def rename(match: re.Match[str]) -> str:
        return f"<id{order.setdefault(match.group(0), len(order))}>"

    canonical = json.dumps(
        {
            "messages": [
                {"role": m.get("role"), "content": _UUID.sub(rename, str(m.get("content", "")))}
                for m in messages
            ],
            "schema": schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:8], "big")


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, in whichever structured mode it was sent."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    if kind == "json_object" and isinstance(response_format.get("schema"), dict):
        return response_format["schema"]
    for message in body.get("messages") or []:
        if message.get("role") == "system":
            found = _SCHEMA_IN_PROMPT.search(str(message.get("content", "")))
            if found:
                try:
                    return json.loads(found.group(1))
                except json.JSONDecodeError:
                    return None
    return None


def latency_from_response_id(response_id: str | None) -> float | None:
    """The latency (seconds) this server applied, from the completion id it sent; None if not ours."""
    if not response_id or not response_id.startswith(ID_PREFIX):
        return None
    try:
        return int(response_id.rsplit("-", 1)[1]) / 1_000_000
    except (IndexError, ValueError):
        return None


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.origin = time.monotonic()
        self.calls: list[dict[str, Any]] = []  # the in-flight log: one entry per call, in arrival order

    def enter(self, plan: str | None, stage: str | None) -> dict[str, Any]:
        call = {"plan": plan, "stage": stage, "start": time.monotonic() - self.origin, "end": None}
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.calls.append(call)
        return call

    def leave(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.in_flight -= 1
            call["end"] = time.monotonic() - self.origin

    def call_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(call) for call in self.calls]

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
            }


class LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, model: LatencyModel, port: int = 0, shape: str = "planexe"):
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        self.model = model
        self.shape = shape
        self.stats = _Stats()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def answer(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        schema = request_schema(body)
        seed = normalized_seed(messages, schema)
        if schema is not None:
            text = offline_json(schema, seed, known_ids(messages), SHAPES[self.shape])
        else:
            text = offline_markdown(messages, seed)
        latency = self.model.draw(seed)
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 4 for m in messages)
        completion_tokens = max(1, len(text) // 4)
        reply = {
            "id": f"{ID_PREFIX}{seed:016x}-{round(latency * 1_000_000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "bench"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return reply, latency


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LatencyServer
    # The reply goes out as two writes (headers, then body); with Nagle's algorithm on, the body
    # waits for the client's delayed ACK, about 40 ms per call that no real endpoint adds.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up on the call (a stopped plan, a timeout): nobody is left to answer.
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("/stats", "/v1/stats"):
            self._send(200, self.server.stats.snapshot())
        elif self.path.rstrip("/") in ("/calls", "/v1/calls"):
            self._send(200, {"calls": self.server.stats.call_log()})
        elif self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        started = time.monotonic()
        call = self.server.stats.enter(
            self.headers.get("X-PlanExe-Plan-Id"), self.headers.get("X-PlanExe-Stage")
        )
        try:
            try:
                body = json.loads(raw or b"{}")
                reply, latency = self.server.answer(body)
            except (ValueError, TypeError) as exc:
                self._send(
                    400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}}
                )
                return
            remaining = latency - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            self._send(200, reply)
        finally:
            self.server.stats.leave(call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", default="planexe", help="'planexe' or 'fixed:SECONDS' (default planexe)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every latency by this (default 1)")
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="planexe",
        help="list lengths of the answers: PlanExe's (default) or the offline faker's short ones",
    )
    args = parser.parse_args(argv)
    try:
        model = LatencyModel.parse(args.latency, args.scale)
    except LatencyModelError as exc:
        parser.error(str(exc))
    server = LatencyServer(model, args.port, args.shape)
    print(f"PORT {server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
