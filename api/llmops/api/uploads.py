"""Feeding an upload request's body to an ``UploadBatch``: a raw file, or multipart parts.

Role: the HTTP side of ``POST /catalog/models/{id}/upload``. A raw
``application/octet-stream`` body is one file named by ``?filename=``; a
``multipart/form-data`` body carries one file per part (``files`` parts, as
the seed sends them; each part's ``filename`` names the file). Neither is
ever held whole: chunks go to the batch as they arrive, and the multipart
parser (``python_multipart``, streaming, callbacks) runs in a worker thread
with the batch's network calls, so the event loop never blocks on S3. Any
failure, a client disconnect included, makes the batch drop what it stored.
Input: the request and a started ``UploadBatch``. Output: the ``Uploaded``
result. Caller: ``llmops.api.routes.writes``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from llmops.api import errors
from llmops.engine.service.uploads import UploadBatch, Uploaded

MAX_PART_HEADER_BYTES = 4096
FILE_FIELDS = ("files", "file")


class MultipartFeed:
    """The callbacks of a streaming multipart parser, driving ``batch`` part by part."""

    def __init__(self, batch: UploadBatch, boundary: bytes) -> None:
        self.batch = batch
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}
        self.files = 0
        self.parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._part_end})

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        if len(self._value) > MAX_PART_HEADER_BYTES:
            raise errors.BadRequest("a multipart part header is too long")

    def _header_end(self) -> None:
        self._headers[bytes(self._field).decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        field = options.get(b"name", b"").decode("latin-1")
        filename = options.get(b"filename")
        if field not in FILE_FIELDS or not filename:
            raise errors.BadRequest("every part must be a file in a 'files' field with its "
                                    "filename", {"field": field[:64]})
        self.batch.open(filename.decode("utf-8", "replace"))
        self.files += 1

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.batch.write(data[start:end])
        if self.batch.part_ready:
            self.batch.flush()

    def _part_end(self) -> None:
        self.batch.close()

    def write(self, chunk: bytes) -> None:
        self.parser.write(chunk)

    def end(self) -> None:
        self.parser.finalize()
        if self.files == 0:
            raise errors.BadRequest("the multipart body holds no file part")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, else None."""
    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data":
        return None
    boundary = options.get(b"boundary")
    if not boundary:
        raise errors.BadRequest("multipart/form-data without a boundary")
    return boundary


async def _guarded(batch: UploadBatch, feed: Callable[[], Awaitable[None]]) -> Uploaded:
    """``feed`` the batch, then commit; any failure (a disconnect too) drops its files."""
    try:
        await feed()
    except BaseException as exc:
        await anyio.to_thread.run_sync(batch.fail, exc)
        raise
    return await anyio.to_thread.run_sync(batch.finish)


async def stream_raw(request: Request, batch: UploadBatch, file_name: str,
                     length: int) -> Uploaded:
    """The body as the one file ``file_name`` of ``length`` bytes."""

    async def feed() -> None:
        await anyio.to_thread.run_sync(batch.open, file_name, length)
        async for chunk in request.stream():
            batch.write(chunk)
            if batch.part_ready:
                await anyio.to_thread.run_sync(batch.flush)
        await anyio.to_thread.run_sync(batch.close)

    return await _guarded(batch, feed)


async def stream_multipart(request: Request, batch: UploadBatch, boundary: bytes) -> Uploaded:
    """Each file part of the body as one file of the batch."""
    parts = MultipartFeed(batch, boundary)

    async def feed() -> None:
        async for chunk in request.stream():
            if chunk:
                await anyio.to_thread.run_sync(parts.write, chunk)
        await anyio.to_thread.run_sync(parts.end)

    return await _guarded(batch, feed)
