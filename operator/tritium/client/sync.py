"""The blocking client: :class:`InferenceClient`."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from tritium.client._core import Call, CertTypes, Core, VerifyTypes, batch_kwargs
from tritium.client.errors import APIConnectionError, TritiumError, error_from_payload
from tritium.client.response import (
    BatchResult,
    Health,
    ModelMetadata,
    ProgressCallback,
    Response,
    SSEParser,
    StreamChunk,
    loads,
)
from tritium.client.retry import RetryPolicy, Timeout

__all__ = ["ChunkStream", "InferenceClient"]


class InferenceClient:
    """A thread-safe client of one Tritium endpoint, with a pool of keep-alive connections.

    ``endpoint`` defaults to ``TRITIUM_ENDPOINT`` and ``api_key`` to ``TRITIUM_API_KEY`` (sent as
    ``Authorization: Bearer KEY``). TLS certificates are verified unless ``verify=False``;
    ``verify="ca.pem"`` trusts a private CA, ``cert=("client.pem", "client.key")`` presents a
    client certificate. ``timeout`` is a :class:`Timeout` or a number of seconds for the whole call;
    ``retries`` a :class:`RetryPolicy` or a number of retries.

    Example::

        from tritium import InferenceClient

        with InferenceClient(endpoint="https://models.example.com", api_key="...") as client:
            response = client.invoke(model_id="add", inputs={"INPUT0": [1, 2], "INPUT1": [3, 4]})
            print(response.outputs["SUM"], response.request_id)
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
        self._http = httpx.Client(**self._core.client_kwargs(verify, cert, max_connections, http2))

    @property
    def endpoint(self) -> str:
        return self._core.endpoint

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the pooled connections (also done by ``with``)."""
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InferenceClient(endpoint={self.endpoint!r})"

    # -- the retry loop ----------------------------------------------------------------------
    def _send(self, call: Call, stream: bool = False) -> tuple[httpx.Response, int]:
        """Send with retries; returns a successful response (unread when ``stream``) and the attempt count."""
        core = self._core
        attempt = 0
        while True:
            headers, timeout = core.attempt_headers(call)
            request = self._http.build_request(call.method, call.path, params=call.params, content=call.content,
                                               headers=headers,
                                               timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            transport = None
            try:
                resp = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error, transport = core.transport_error(call, exc)
            else:
                if resp.status_code < 400:
                    return resp, attempt + 1
                content = resp.read()
                resp.close()
                error = core.error_for(resp.status_code, resp.headers, content)
            delay = core.next_delay(call, attempt, error, transport)
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def _request(self, call: Call) -> Response:
        resp, attempts = self._send(call)
        return self._core.response(resp.status_code, resp.headers, resp.content, call, attempts)

    # -- inference ---------------------------------------------------------------------------
    def invoke(
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
        """Run one inference (``POST /v1/models/{model_id}/invoke``).

        ``inputs`` maps input names to numbers, strings, (nested) lists, numpy arrays or bytes; the
        gateway types them from the model's metadata. ``content`` + ``content_type`` send a raw
        payload (XML, bytes...) for a pre stage instead. ``timeout`` bounds the whole call and is
        the gateway's deadline too. Raises a :class:`~tritium.client.errors.TritiumError` subclass.

        Example::

            r = client.invoke(model_id="minilm", inputs={"text": ["a sentence"]}, parameters={"normalize": True})
            r.outputs["embeddings"].shape     # (1, 384)
        """
        call = self._core.invoke_call(model_id, inputs, parameters, version, timeout, request_id, content,
                                      content_type, headers)
        return self._request(call)

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
    ) -> ChunkStream:
        """Stream the responses of a decoupled model (``POST /v1/models/{model_id}/stream``, SSE).

        The request is sent on first iteration. Leaving the ``with`` block, calling ``close()``
        or breaking out of the loop closes the connection; the gateway then cancels the Triton
        request (a decoupled model stops early when it checks for cancellation). ``timeout`` bounds
        the whole stream.

        Example::

            with client.stream(model_id="llm", inputs={"PROMPT": "Once upon a time"}) as chunks:
                for chunk in chunks:
                    print(chunk.text, end="", flush=True)
        """
        call = self._core.invoke_call(model_id, inputs, parameters, version, timeout, request_id, content,
                                      content_type, headers, endpoint="stream")
        return ChunkStream(self, call)

    def invoke_batch(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: ProgressCallback | None = None,
        **defaults: Any,
    ) -> list[BatchResult[Response]]:
        """Invoke many requests, ``concurrency`` at a time, and return one result per item, in order.

        Each item is a mapping of :meth:`invoke` arguments; ``defaults`` (``model_id=``,
        ``parameters=``, ``timeout=``...) apply to every item that does not set them. A failing item
        holds its exception in ``.error`` and never stops the others. ``progress(done, total,
        result)`` is called as items finish (from worker threads).

        Example::

            results = client.invoke_batch([{"inputs": {"text": t}} for t in texts], model_id="minilm",
                                          concurrency=8, progress=lambda done, total, r: print(done, total))
            vectors = [r.response.outputs["embeddings"] for r in results if r.ok]
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        jobs = list(items)
        total = len(jobs)
        results: list[BatchResult[Response] | None] = [None] * total
        done = 0
        lock = threading.Lock()

        def run(index: int) -> None:
            nonlocal done
            try:
                response = self.invoke(**batch_kwargs({**defaults, **jobs[index]}))
                result: BatchResult[Response] = BatchResult(index, response=response)
            except Exception as exc:  # one item's failure is its result, not the batch's
                result = BatchResult(index, error=exc)
            results[index] = result
            if progress is not None:
                with lock:
                    done += 1
                    progress(done, total, result)

        if total:
            with ThreadPoolExecutor(max_workers=min(concurrency, total), thread_name_prefix="tritium-batch") as pool:
                list(pool.map(run, range(total)))
        return [r for r in results if r is not None]

    # -- health and metadata -----------------------------------------------------------------
    def health(self, timeout: float | None = 5.0) -> Health:
        """Liveness and readiness of the endpoint (``/v2/health/live`` and ``/ready``); not retried.

        Example::

            if not client.health():
                print(client.health().detail)     # e.g. "not ready: triton"
        """
        try:
            live = self._http.get("/v2/health/live", timeout=timeout)
            if live.status_code != 200:
                return Health(False, False, f"live answered {live.status_code}")
            ready = self._http.get("/v2/health/ready", timeout=timeout)
        except httpx.TransportError as exc:
            call = self._core.get_call("/v2/health/live")
            raise self._core.transport_error(call, exc)[0] from None
        if ready.status_code == 200:
            return Health(True, True)
        return Health(True, False, str(self._core.error_for(ready.status_code, ready.headers, ready.content).message))

    def model(self, name: str, version: str | int | None = None) -> ModelMetadata:
        """A model's metadata: inputs and outputs with datatypes and shapes (404 -> ModelNotFoundError).

        Example::

            meta = client.model("add")
            [(t.name, t.datatype, t.shape) for t in meta.inputs]   # [("INPUT0", "FP32", (-1, -1)), ...]
        """
        from urllib.parse import quote

        path = f"/v2/models/{quote(name, safe='')}" + (f"/versions/{quote(str(version), safe='')}" if version else "")
        return ModelMetadata.from_json(self._request(self._core.get_call(path)).json())

    def models(self) -> list[str]:
        """Names of the models the endpoint serves (Triton's repository index, ``POST /v2/repository/index``).

        Raises TritiumError when the endpoint does not publish its model list.
        """
        call = Call("POST", "/v2/repository/index", None, b"{}", {"Content-Type": "application/json"},
                    self._core.timeout.total, True, time.monotonic())
        return _model_names(self._request(call).json())


def _model_names(doc: Any) -> list[str]:
    if not isinstance(doc, list):
        raise TritiumError("the repository index is not a list of models")
    return sorted({str(m["name"]) for m in doc if isinstance(m, dict) and "name" in m})


class StreamState:
    """What a stream learned from its answer's headers; shared by the iterator object and its generator.

    The generator holds this, not the iterator object, so that dropping the iterator (``break``
    out of a ``for`` loop) frees it at once and its ``finally`` closes the connection.
    """

    __slots__ = ("request_id", "response", "revision")

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.revision: str | None = None
        self.response: Any = None

    def opened(self, headers: httpx.Headers) -> None:
        self.request_id = headers.get("x-request-id", self.request_id)
        self.revision = headers.get("x-tritium-revision")

    def event(self, parser: SSEParser, line: str, index: int) -> StreamChunk | bool | None:
        """One SSE line -> a chunk, None (nothing yet) or False (the stream is done); raises an error event."""
        event = parser.feed(line)
        if event is None:
            return None
        kind, data = event
        if kind == "done":
            return False
        if kind == "error":
            raise error_from_payload(None, _loads_or_none(data), request_id=self.request_id, fallback=data)
        return StreamChunk.from_event(index, loads(data))

    def ended_early(self) -> APIConnectionError:
        return APIConnectionError("the stream ended before its 'done' event", request_id=self.request_id)


def _events(client: InferenceClient, call: Call, state: StreamState) -> Iterator[StreamChunk]:
    resp, _ = client._send(call, stream=True)
    state.response = resp
    state.opened(resp.headers)
    parser = SSEParser()
    index = 0
    try:
        for line in itertools.chain(resp.iter_lines(), ("",)):  # "": completes an unterminated last event
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
        resp.close()


class ChunkStream:
    """An iterator of :class:`StreamChunk` over one SSE response; a context manager that closes it.

    ``request_id`` and ``revision`` are known once the first chunk has arrived.
    """

    def __init__(self, client: InferenceClient, call: Call) -> None:
        self._state = StreamState(call.headers.get("X-Request-Id"))
        self._gen: Iterator[StreamChunk] | None = _events(client, call, self._state)

    @property
    def request_id(self) -> str | None:
        return self._state.request_id

    @property
    def revision(self) -> str | None:
        return self._state.revision

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        if self._gen is None:
            raise StopIteration
        return next(self._gen)

    def close(self) -> None:
        """Stop: closes the connection; the gateway then cancels the Triton request."""
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        self.close()


def _loads_or_none(data: str) -> Any:
    try:
        return loads(data)
    except ValueError:
        return None
