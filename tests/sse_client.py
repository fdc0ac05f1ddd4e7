"""A tiny Server-Sent Events client for tests (requests, streaming).

``SSEStream(url, headers)`` opens the stream; :meth:`SSEStream.next` returns
its next message (comments skipped, counted in ``pings``), or None once the
server ended the response. Every read is bounded by ``timeout`` seconds, so
a stream that stalls fails the test instead of hanging it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Message:
    event: str
    data: Any
    id: str | None = None


def parse(block: bytes) -> tuple[Message | None, int | None, int]:
    """One SSE block: (its message or None, its ``retry`` or None, comment lines)."""
    event, data, id_, retry, comments = "message", [], None, None, 0
    for line in block.decode().split("\n"):
        if line.startswith(":"):
            comments += 1
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            id_ = value
        elif field == "retry":
            retry = int(value)
    message = Message(event, json.loads("\n".join(data)), id_) if data else None
    return message, retry, comments


class SSEStream:
    """An open ``text/event-stream`` response, read message by message."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10):
        self.response = requests.get(url, headers=headers, stream=True, timeout=(5, timeout))
        self.status = self.response.status_code
        self.retry: int | None = None
        self.pings = 0
        self.ended = False
        self._chunks = self.response.iter_content(chunk_size=None)
        self._buffer = b""

    def next(self) -> Message | None:
        """The next message; None when the server has ended the stream."""
        while True:
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                message, retry, comments = parse(block)
                self.pings += comments
                if retry is not None:
                    self.retry = retry
                if message is not None:
                    return message
            if self.ended:
                return None
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self.ended = True

    def until_end(self) -> list[Message]:
        """Every message left, until the server ends the stream."""
        messages = []
        while (message := self.next()) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> SSEStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
