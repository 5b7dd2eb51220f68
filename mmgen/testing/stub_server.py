"""A minimal OpenAI-compatible HTTP server on loopback, for benchmarks and tests.

It answers chat completions after a fixed latency with canned items in the shape the request's
reply-format sentence asks for, and fakes the files and batches endpoints (a batch completes on
the first poll). Not the demo teacher: it knows nothing about images. Run it standalone with
`python -m mmgen.testing.stub_server --latency 0.3` (prints the port on stdout).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable

REPLY_FORMAT = re.compile(r'JSON list of (\d+) objects with the keys ((?:"\w+"(?:, )?)+)')


def canned_answer(body: dict) -> str:
    """Items in the shape the request's reply-format sentence asks for (default 1 x Q/A)."""
    texts = []  # only text parts: scanning base64 images would cost the server most of its CPU
    for message in body.get("messages", []):
        content = message.get("content")
        texts += [content] if isinstance(content, str) else [
            part.get("text", "") for part in content or [] if part.get("type") == "text"]
    match = REPLY_FORMAT.search("\n".join(texts))
    count, keys = (int(match.group(1)), re.findall(r'"(\w+)"', match.group(2))) if match else (1, ["Q", "A"])
    return json.dumps([{key: f"{key} {index}" for key in keys} for index in range(count)])


def completion(body: dict, answer: Callable[[dict], str], serial: int,
               usage: tuple[int, int] | None = None, body_bytes: int | None = None) -> dict:
    """A chat.completion object answering `body` (usage: fixed token counts, else estimated)."""
    content = answer(body)
    size = body_bytes if body_bytes is not None else len(json.dumps(body))
    prompt_tokens, completion_tokens = usage or (size // 4, len(content) // 4)
    return {"id": f"chatcmpl-{serial}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class StubServer:
    """The server; `start()` runs it on a background thread, `serve()` in the current loop."""

    def __init__(self, latency_s: float = 0.0, answer: Callable[[dict], str] = canned_answer,
                 fail_first: int = 0, fail_status: int = 500, echo_key: bool = False,
                 usage: tuple[int, int] | None = None, record: bool = True):
        self.latency_s = latency_s
        self.answer = answer
        self.fail_first = fail_first  # the first N chat requests get fail_status
        self.fail_status = fail_status
        self.echo_key = echo_key  # failures echo the Authorization header, as careless servers do
        self.usage = usage  # fixed (prompt, completion) tokens per reply; None: estimated
        self.record = record  # keep request bodies and headers (off for long benchmarks)
        self.chat_count = 0
        self.requests: list[dict] = []  # chat request bodies received, in order
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.headers_seen: list[dict] = []
        self._serial = itertools.count()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> StubServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._server:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> StubServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if self.record:
                    self.headers_seen.append({**headers, ":path": path})
                status, payload, content_type = await self._route(method, path, headers, body)
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                             f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, headers: dict, body: bytes):
        path = path.split("?")[0]
        if method == "POST" and path.endswith("/chat/completions"):
            request = json.loads(body)
            if self.record:
                self.requests.append(request)
            serial = next(self._serial)
            self.chat_count += 1
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if serial < self.fail_first:
                message = f"stub: rejected {headers.get('authorization')}" if self.echo_key else "stub"
                return (f"{self.fail_status} Stub Failure",
                        json.dumps({"error": {"message": message}}).encode(), "application/json")
            reply = completion(request, self.answer, serial, self.usage, len(body))
            return "200 OK", json.dumps(reply).encode(), "application/json"
        if method == "GET" and path.endswith("/models"):
            return "200 OK", b'{"object": "list", "data": [{"id": "stub", "object": "model"}]}', "application/json"
        if method == "POST" and path.endswith("/files"):
            return "200 OK", json.dumps(self._upload(headers, body)).encode(), "application/json"
        if method == "GET" and "/files/" in path and path.endswith("/content"):
            return "200 OK", self.files[path.split("/")[-2]], "application/octet-stream"
        if method == "POST" and path.endswith("/batches"):
            return "200 OK", json.dumps(self._create_batch(json.loads(body))).encode(), "application/json"
        if method == "GET" and "/batches/" in path:
            return "200 OK", json.dumps(self._finish_batch(path.split("/")[-1])).encode(), "application/json"
        return "404 Not Found", b'{"error": {"message": "no such route"}}', "application/json"

    def _upload(self, headers: dict, body: bytes) -> dict:
        boundary = headers["content-type"].split("boundary=")[1].strip('"').encode()
        content = b""
        for part in body.split(b"--" + boundary):
            if b'name="file"' in part:
                content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                "filename": "requests.jsonl", "purpose": "batch", "status": "processed"}

    def _create_batch(self, params: dict) -> dict:
        batch_id = f"batch-{len(self.batches)}"
        self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": params["endpoint"],
                                  "input_file_id": params["input_file_id"], "completion_window": "24h",
                                  "created_at": 0, "status": "validating"}
        return self.batches[batch_id]

    def _finish_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        if batch["status"] == "validating":  # completes on the first poll
            lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines()]
            output = [{"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                       "response": {"status_code": 200, "request_id": str(i),
                                    "body": completion(line["body"], self.answer, i, self.usage)},
                       "error": None}
                      for i, line in enumerate(lines)]
            file_id = f"file-{len(self.files)}"
            self.files[file_id] = "".join(json.dumps(o) + "\n" for o in output).encode()
            batch.update(status="completed", output_file_id=file_id, completed_at=1,
                         request_counts={"total": len(lines), "completed": len(lines), "failed": 0})
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat reply")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = StubServer(latency_s=args.latency, record=False)
    server.port = args.port

    async def forever() -> None:
        await server.serve()
        print(server.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(forever())


if __name__ == "__main__":
    main()
