"""The asyncio client: :class:`AsyncInferenceClient`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from tritium.client._core import Call, CertTypes, Core, VerifyTypes, batch_kwargs
from tritium.client.response import (
    BatchResult,
    Health,
    ModelMetadata,
    ProgressCallback,
    Response,
    SSEParser,
    StreamChunk,
)
from tritium.client.retry import RetryPolicy, Timeout
from tritium.client.sync import StreamState, _model_names

__all__ = ["AsyncChunkStream", "AsyncInferenceClient"]


class AsyncInferenceClient:
    """The asyncio twin of :class:`~tritium.client.InferenceClient` (same arguments, same rules).

    One client per event loop; share it between tasks (its connection pool is the point).

    Example::

        import asyncio
        from tritium import AsyncInferenceClient

        async def main() -> None:
            async with AsyncInferenceClient(endpoint="https://models.example.com") as client:
                responses = await asyncio.gather(*(
                    client.invoke(model_id="add", inputs={"INPUT0": [i], "INPUT1": [1]}) for i in range(100)))
                print([r.outputs["SUM"][0, 0] for r in responses])

        asyncio.run(main())
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | Timeout | None = None,
        retries: int | RetryPolicy | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        http2: bool = False,
    ) -> None:
        self._core = Core(endpoint, api_key, timeout, retries, headers)
        self._http = httpx.AsyncClient(**self._core.client_kwargs(verify, cert, max_connections, http2))

    @property
    def endpoint(self) -> str:
        return self._core.endpoint

    async def aclose(self) -> None:
        """Close the pooled connections (also done by ``async with``)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncInferenceClient(endpoint={self.endpoint!r})"

    async def _send(self, call: Call, stream: bool = False) -> tuple[httpx.Response, int]:
        core = self._core
        attempt = 0
        while True:
            headers, timeout = core.attempt_headers(call)
            request = self._http.build_request(call.method, call.path, params=call.params, content=call.content,
                                               headers=headers,
                                               timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            transport = None
            try:
                resp = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error, transport = core.transport_error(call, exc)
            else:
                if resp.status_code < 400:
                    return resp, attempt + 1
                content = await resp.aread()
                await resp.aclose()
                error = core.error_for(resp.status_code, resp.headers, content)
            delay = core.next_delay(call, attempt, error, transport)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def _request(self, call: Call) -> Response:
        resp, attempts = await self._send(call)
        return self._core.response(resp.status_code, resp.headers, resp.content, call, attempts)

    async def invoke(
        self,
        model_id: str,
        inputs: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        version: str | int | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Run one inference; see :meth:`tritium.client.InferenceClient.invoke`.

        Example::

            r = await client.invoke(model_id="add", inputs={"INPUT0": [1, 2], "INPUT1": [3, 4]})
        """
        call = self._core.invoke_call(model_id, inputs, parameters, version, timeout, request_id, content,
                                      content_type, headers)
        return await self._request(call)

    def stream(
        self,
        model_id: str,
        inputs: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        version: str | int | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncChunkStream:
        """Stream a decoupled model's responses (SSE) as an async iterator of :class:`StreamChunk`.

        Use ``async with`` (or ``await stream.aclose()``) when you may stop early: that closes the
        connection at once and the gateway cancels the Triton request. Cancelling the consuming task
        closes it too.

        Example::

            async with client.stream(model_id="llm", inputs={"PROMPT": "Hello"}) as chunks:
                async for chunk in chunks:
                    print(chunk.text, end="")
        """
        call = self._core.invoke_call(model_id, inputs, parameters, version, timeout, request_id, content,
                                      content_type, headers, endpoint="stream")
        return AsyncChunkStream(self, call)

    async def invoke_batch(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: ProgressCallback | None = None,
        **defaults: Any,
    ) -> list[BatchResult[Response]]:
        """Invoke many requests with at most ``concurrency`` in flight; one result per item, in order.

        Same contract as :meth:`tritium.client.InferenceClient.invoke_batch`; ``progress`` runs on
        the event loop.

        Example::

            results = await client.invoke_batch(items, model_id="add", concurrency=8)
            failed = [r for r in results if not r.ok]
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        jobs = list(items)
        total = len(jobs)
        results: list[BatchResult[Response] | None] = [None] * total
        counter = itertools.count()
        done = 0

        async def worker() -> None:  # N long-lived workers: no task (nor semaphore) per item
            nonlocal done
            while (index := next(counter)) < total:
                try:
                    response = await self.invoke(**batch_kwargs({**defaults, **jobs[index]}))
                    result: BatchResult[Response] = BatchResult(index, response=response)
                except Exception as exc:  # one item's failure is its result, not the batch's
                    result = BatchResult(index, error=exc)
                results[index] = result
                done += 1
                if progress is not None:
                    progress(done, total, result)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
        return [r for r in results if r is not None]

    async def health(self, timeout: float | None = 5.0) -> Health:
        """Liveness and readiness; see :meth:`tritium.client.InferenceClient.health`."""
        try:
            live = await self._http.get("/v2/health/live", timeout=timeout)
            if live.status_code != 200:
                return Health(False, False, f"live answered {live.status_code}")
            ready = await self._http.get("/v2/health/ready", timeout=timeout)
        except httpx.TransportError as exc:
            call = self._core.get_call("/v2/health/live")
            raise self._core.transport_error(call, exc)[0] from None
        if ready.status_code == 200:
            return Health(True, True)
        return Health(True, False, str(self._core.error_for(ready.status_code, ready.headers, ready.content).message))

    async def model(self, name: str, version: str | int | None = None) -> ModelMetadata:
        """A model's metadata; see :meth:`tritium.client.InferenceClient.model`."""
        from urllib.parse import quote

        path = f"/v2/models/{quote(name, safe='')}" + (f"/versions/{quote(str(version), safe='')}" if version else "")
        return ModelMetadata.from_json((await self._request(self._core.get_call(path))).json())

    async def models(self) -> list[str]:
        """Names of the served models; see :meth:`tritium.client.InferenceClient.models`."""
        call = Call("POST", "/v2/repository/index", None, b"{}", {"Content-Type": "application/json"},
                    self._core.timeout.total, True, time.monotonic())
        return _model_names((await self._request(call)).json())


async def _events(client: AsyncInferenceClient, call: Call, state: StreamState) -> AsyncIterator[StreamChunk]:
    resp, _ = await client._send(call, stream=True)
    state.response = resp
    state.opened(resp.headers)
    parser = SSEParser()
    index = 0
    try:
        async for line in _lines(resp):
            chunk = state.event(parser, line, index)
            if chunk is False:
                return
            if isinstance(chunk, StreamChunk):
                yield chunk
                index += 1
        raise state.ended_early()
    except httpx.TransportError as exc:
        raise client._core.transport_error(call, exc)[0] from None
    finally:
        state.response = None
        await resp.aclose()


async def _lines(resp: httpx.Response) -> AsyncIterator[str]:
    async for line in resp.aiter_lines():
        yield line
    yield ""  # completes an unterminated last event


class AsyncChunkStream:
    """An async iterator of :class:`StreamChunk` over one SSE response; an async context manager.

    Leaving ``async with``, ``aclose()``, cancelling the consuming task, or an error closes the
    connection at once; a stream merely dropped after ``break`` is closed by the event loop soon
    after (async generator finalisation).
    """

    def __init__(self, client: AsyncInferenceClient, call: Call) -> None:
        self._state = StreamState(call.headers.get("X-Request-Id"))
        self._gen: AsyncIterator[StreamChunk] | None = _events(client, call, self._state)

    @property
    def request_id(self) -> str | None:
        return self._state.request_id

    @property
    def revision(self) -> str | None:
        return self._state.revision

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncChunkStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._gen is None:
            raise StopAsyncIteration
        try:
            return await self._gen.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop: closes the connection; the gateway then cancels the Triton request."""
        gen, self._gen = self._gen, None
        if gen is not None:
            await gen.aclose()  # type: ignore[attr-defined]
