"""Fitting a request into a model's context window, without a tokenizer.

The prompt's size in tokens is estimated from its characters: ``chars / chars_per_token`` (3.5 for
English prose by default) plus a few tokens per message for the chat template. Once the server has
answered a request of this model with its ``usage.prompt_tokens``, the estimate uses the ratio the
server measured instead (the mean of the last observations, so it follows what this model's
tokenizer does with PlanExe's prompts). Two figures come out:

- ``low``: the plain estimate, used to decide that a prompt does not fit at all (a permanent failure
  is only declared when even the plain estimate leaves no room for a reply);
- ``high``: the estimate plus a safety margin, used to size ``max_tokens`` so that prompt + reply
  stay inside the window.

The module also reads what servers say when a request does not fit (``context_error``), tells a
reply that loops from one that was merely long (``repeats_itself``), and keeps each model's observed
writing speed (``Throughput``), so that a request for many tokens from a slow local model gets the
time it needs instead of timing out while the server goes on writing the abandoned reply.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Tokens a chat template adds per message (role markers, separators), and per request.
PER_MESSAGE_TOKENS = 6
PER_REQUEST_TOKENS = 8
_OBSERVATIONS = 16
_MIN_CHARS_TO_LEARN = 400  # a short prompt is mostly template overhead: it would skew the ratio
_IMPLAUSIBLE = 0.4


@dataclass(frozen=True)
class Estimate:
    low: int
    high: int
    measured: bool  # the ratio came from the server's reported usage, not the default


class TokenEstimator:
    """Per model: tokens per character, learned from the server's reported prompt tokens."""

    def __init__(self, chars_per_token: float = 3.5, margin: float = 0.1):
        if chars_per_token <= 0 or margin < 0:
            raise ValueError("chars_per_token must be > 0 and margin >= 0")
        self.default_ratio = 1.0 / chars_per_token
        self.margin = margin
        self._lock = threading.Lock()
        self._ratios: dict[str, deque[float]] = {}

    @staticmethod
    def characters(messages: Sequence[Mapping[str, str]]) -> int:
        return sum(len(m.get("content", "")) for m in messages)

    def ratio(self, model_id: str) -> tuple[float, bool]:
        with self._lock:
            seen = self._ratios.get(model_id)
            if not seen:
                return self.default_ratio, False
            return sum(seen) / len(seen), True

    def estimate(self, model_id: str, messages: Sequence[Mapping[str, str]]) -> Estimate:
        chars = self.characters(messages)
        ratio, measured = self.ratio(model_id)
        overhead = PER_REQUEST_TOKENS + PER_MESSAGE_TOKENS * len(messages)
        low = math.ceil(chars * ratio) + overhead
        high = math.ceil(chars * ratio * (1 + self.margin)) + overhead
        return Estimate(low=low, high=high, measured=measured)

    def observe(
        self, model_id: str, messages: Sequence[Mapping[str, str]], prompt_tokens: int | None
    ) -> bool:
        """Learn from the prompt tokens the server counted for these messages. False when the count
        is implausibly low for the text (under ``_IMPLAUSIBLE`` of the default ratio, i.e. more than
        about 9 characters per token): the server most likely dropped part of the prompt (Ollama
        cuts a prompt longer than its context without an error), so nothing is learned from it."""
        chars = self.characters(messages)
        if prompt_tokens is None or prompt_tokens <= 0 or chars < _MIN_CHARS_TO_LEARN:
            return True
        overhead = PER_REQUEST_TOKENS + PER_MESSAGE_TOKENS * len(messages)
        ratio = max(prompt_tokens - overhead, 1) / chars
        if ratio < self.default_ratio * _IMPLAUSIBLE:
            return False
        with self._lock:
            self._ratios.setdefault(model_id, deque(maxlen=_OBSERVATIONS)).append(ratio)
        return True


# -- what servers say when a request does not fit --------------------------------------------------

# OpenAI, vLLM, llama-cpp-python: "This model's maximum context length is 8192 tokens. However, you
# requested 9019 tokens (9009 in the messages, 10 in the completion)." / "... your messages resulted
# in 9009 tokens"; llama.cpp's llama-server: "the request exceeds the available context size"
# (body fields n_prompt_tokens, n_ctx); LM Studio: "... context length of only 4096 tokens ...".
_CONTEXT_WORDS = re.compile(
    r"context[ _](?:length|window|size)|maximum context|n_ctx|context_length_exceeded|exceed_context|"
    r"too many tokens|prompt is too long|input is too long",
    re.IGNORECASE,
)
_WINDOW_PATTERNS = (
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),
    re.compile(r"context (?:length|window|size) (?:of |is )?(?:only )?(\d+)", re.IGNORECASE),
    re.compile(r"n_ctx\D{0,5}(\d+)", re.IGNORECASE),
)
_PROMPT_PATTERNS = (
    re.compile(r"(\d+) (?:tokens )?in the messages", re.IGNORECASE),
    re.compile(r"messages resulted in (\d+) tokens", re.IGNORECASE),
    re.compile(r"n_prompt_tokens\D{0,5}(\d+)", re.IGNORECASE),
    re.compile(r"prompt (?:has|is|of) (\d+) tokens", re.IGNORECASE),
)


class Throughput:
    """Each model's observed speed in output tokens per second (reply tokens over the request's whole
    time, prompt processing included, so on the slow side), over its last ``window`` replies of at
    least ``min_tokens`` tokens. Thread-safe."""

    def __init__(self, window: int = 20, min_tokens: int = 64, min_samples: int = 2):
        self.window = window
        self.min_tokens = min_tokens
        self.min_samples = min_samples
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[int, float]]] = {}

    def observe(self, model_id: str, output_tokens: int | None, seconds: float) -> None:
        if output_tokens is None or output_tokens < self.min_tokens or seconds <= 0:
            return
        with self._lock:
            self._samples.setdefault(model_id, deque(maxlen=self.window)).append((output_tokens, seconds))

    def tokens_per_second(self, model_id: str) -> float | None:
        with self._lock:
            samples = list(self._samples.get(model_id, ()))
        if len(samples) < self.min_samples:
            return None
        return sum(t for t, _ in samples) / sum(s for _, s in samples)

    def seconds_for(self, model_id: str, tokens: int) -> float | None:
        """How long this model has taken to write ``tokens`` tokens, or None before enough replies."""
        rate = self.tokens_per_second(model_id)
        return None if rate is None else tokens / rate


@dataclass(frozen=True)
class ContextError:
    window: int | None  # the context length the server named
    prompt_tokens: int | None  # the prompt's size as the server counted it


def context_error(status: int | None, message: str, body: Any = None) -> ContextError | None:
    """A server's refusal because the request does not fit the context window, else None."""
    if status not in (400, 413, 422, 500):
        return None
    text = message
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            text += " " + " ".join(f"{k}={v}" for k, v in inner.items() if isinstance(v, str | int))
    if not _CONTEXT_WORDS.search(text):
        return None
    found = ContextError(
        window=_first_int(_WINDOW_PATTERNS, text), prompt_tokens=_first_int(_PROMPT_PATTERNS, text)
    )
    if status == 500 and found.window is None and found.prompt_tokens is None:
        return None  # a server error that merely mentions its context is not a refusal of the request
    return found


def _first_int(patterns: Sequence[re.Pattern[str]], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


# -- loops ----------------------------------------------------------------------------------------


def repeats_itself(text: str, min_span: int = 240, min_repeats: int = 3, max_period: int = 400) -> bool:
    """True if the reply ends in one piece of text repeated back to back (at least ``min_repeats``
    times, covering at least ``min_span`` characters): the model was looping when it was cut off.
    Whitespace runs count as one space, so a loop that varies only in line breaks is found too. A
    loop that only counts up (``{"item_index": 7, ...}``, ``8``, ``9``, ...) is found too: with every
    run of digits read as one digit, a repeated piece holding at least 20 letters counts (a mere
    list of numbers does not)."""
    tail = re.sub(r"\s+", " ", text[-(max_period * min_repeats * 2) :]).rstrip()
    if _ends_in_repeats(tail, min_span, min_repeats, max_period, min_letters=0):
        return True
    return _ends_in_repeats(re.sub(r"\d+", "0", tail), min_span, min_repeats, max_period, min_letters=20)


def _ends_in_repeats(tail: str, min_span: int, min_repeats: int, max_period: int, min_letters: int) -> bool:
    length = len(tail)
    for period in range(1, min(max_period, length // min_repeats) + 1):
        unit = tail[length - period :]
        repeats = 1
        end = length - period
        while end - period >= 0 and tail[end - period : end] == unit:
            repeats += 1
            end -= period
        if (
            repeats >= min_repeats
            and repeats * period >= min_span
            and sum(c.isalpha() for c in unit) >= min_letters
        ):
            return True
    return False
