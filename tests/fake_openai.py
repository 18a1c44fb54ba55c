"""A small OpenAI-compatible model server for the router's tests: ``python fake_openai.py PORT``.

Canned answers, streaming, configurable latency and failures, per request by
headers (the router forwards them):

- ``x-fake-latency``: seconds before the answer's first byte;
- ``x-fake-status``: answer with this status (and an OpenAI error body);
- ``x-fake-chunks`` (default 4) and ``x-fake-chunk-delay`` (seconds between
  streamed chunks); ``x-fake-break-after``: a stream breaks off (the
  connection is dropped) after this many chunks.

Usage is deterministic: ``prompt_tokens`` is the number of whitespace-separated
words in the prompt or the messages' contents, ``completion_tokens`` the
number of chunks. ``GET /_stats`` reports every request body received and how
many answers completed or were cancelled by the client going away;
``POST /_reset`` clears them. Not a test module: the router tests spawn it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvicorn

STATS: dict[str, Any] = {"requests": [], "completed": 0, "cancelled": 0}


def _header(scope: dict[str, Any], name: str, default: str) -> str:
    for key, value in scope["headers"]:
        if key.decode() == name:
            return str(value.decode())
    return default


def _words(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    prompt = body.get("prompt", "")
    return sum(len(p.split()) for p in (prompt if isinstance(prompt, list) else [prompt]))


async def _send_json(send: Any, status: int, doc: Any) -> None:
    raw = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_or_leave(receive: Any, seconds: float) -> bool:
    """Sleep ``seconds``; False if the client went away meanwhile."""
    if seconds <= 0:
        return True
    gone = asyncio.ensure_future(_disconnect(receive))
    done, _ = await asyncio.wait({gone}, timeout=seconds)
    if done:
        return False
    gone.cancel()
    return True


def _answer(body: dict[str, Any], chunks: int) -> dict[str, Any]:
    text = " ".join(f"word{i}" for i in range(chunks))
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if "messages" in body
        else {"index": 0, "text": text, "finish_reason": "stop"}
    )
    return {
        "id": "fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": _words(body),
            "completion_tokens": chunks,
            "total_tokens": _words(body) + chunks,
        },
    }


async def _stream(scope: Any, receive: Any, send: Any, body: dict[str, Any]) -> None:
    chunks = int(_header(scope, "x-fake-chunks", "4"))
    delay = float(_header(scope, "x-fake-chunk-delay", "0"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    break_after = int(_header(scope, "x-fake-break-after", "-1"))
    for i in range(chunks):
        if i == break_after:
            raise ConnectionAbortedError("x-fake-break-after: the stream breaks off here")
        event = {
            "id": "fake-1",
            "object": "chat.completion.chunk",
            "model": "fake",
            "choices": [{"index": 0, "delta": {"content": f"word{i} "}}],
        }
        await send(
            {
                "type": "http.response.body",
                "more_body": True,
                "body": f"data: {json.dumps(event)}\n\n".encode(),
            }
        )
        if not await _wait_or_leave(receive, delay):
            STATS["cancelled"] += 1
            return
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": "fake-1",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": _words(body), "completion_tokens": chunks},
        }
        await send(
            {
                "type": "http.response.body",
                "more_body": True,
                "body": f"data: {json.dumps(usage)}\n\n".encode(),
            }
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
    STATS["completed"] += 1


async def _read(receive: Any) -> bytes:
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/_stats":
        await _send_json(send, 200, STATS)
        return
    if path == "/_reset":
        STATS.update(requests=[], completed=0, cancelled=0)
        await _send_json(send, 200, {})
        return
    if path == "/v1/models":
        await _send_json(send, 200, {"object": "list", "data": [{"id": "fake"}]})
        return
    if path == "/metrics":  # as vLLM exposes its queue
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; version=0.0.4")]})
        await send({"type": "http.response.body",
                    "body": b"# TYPE vllm:num_requests_waiting gauge\n"
                            b"vllm:num_requests_waiting 3.0\n"})
        return
    body = json.loads(await _read(receive))
    STATS["requests"].append(
        {
            "path": path,
            "body": body,
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        }
    )
    if not await _wait_or_leave(receive, float(_header(scope, "x-fake-latency", "0"))):
        STATS["cancelled"] += 1
        return
    status = int(_header(scope, "x-fake-status", "200"))
    if status != 200:
        await _send_json(send, status, {"error": {"message": "fake failure", "code": status}})
    elif body.get("stream"):
        await _stream(scope, receive, send, body)
    else:
        await _send_json(send, 200, _answer(body, int(_header(scope, "x-fake-chunks", "4"))))
        STATS["completed"] += 1


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
