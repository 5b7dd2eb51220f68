"""Demo teacher: an OpenAI-compatible chat server on loopback that stands in for GPT-4o offline.

It recognises demo images by content and answers truthfully from `truth.json` in the JSON shape
the prompt's reply format sentence asks for. It refuses honestly for images it does not know. It
can add latency and inject faults (429, 500, malformed reply, stall, dropped connection) at given
rates, deterministic by seed. For the demo and tests only; real runs use a real VLM endpoint.

    python -m mmgen.demo.teacher --data-dir DIR --port 8000 --latency 0.3
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import signal
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from omegaconf import OmegaConf

from mmgen.demo.recognize import BadRequest, ImageIndex, compose_reply
from mmgen.demo.teacher_faults import (
    FaultPlan,
    completion_response,
    error_body,
    fault_response,
    http_response,
    malformed_reply,
)
from mmgen.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    """How the demo teacher listens, how slow it is and which faults it injects."""

    data_dir: str  # demo data dir holding truth.json and the images it lists
    host: str = "127.0.0.1"  # loopback only: the teacher has no authentication
    port: int = 0  # 0 picks a free port
    model: str = "demo-teacher"  # model name listed and returned
    latency_s: float = 0.0  # seconds from a chat request's arrival to its reply
    rate_429: float = 0.0  # share of requests answered 429 with Retry-After
    retry_after_s: float = 1.0  # seconds the 429 reply asks the client to wait
    rate_500: float = 0.0  # share of requests answered 500
    rate_malformed: float = 0.0  # share of replies whose content is not valid JSON
    rate_stall: float = 0.0  # share of replies held back stall_s seconds
    stall_s: float = 30.0  # seconds a stalled reply waits; set it past the client's timeout
    rate_drop: float = 0.0  # share of requests whose connection closes without a reply
    seed: int = 0  # fault draws depend on (seed, request body, times that body was seen)


class Teacher:
    """The demo teacher server: `with Teacher(cfg) as base_url:`, or `start()` then `stop()`."""

    def __init__(self, config: TeacherConfig, index: ImageIndex | None = None):
        self.config = config
        self.index = index
        self.faults = FaultPlan(config.seed, {
            "rate_limit": config.rate_429, "server": config.rate_500, "drop": config.rate_drop,
            "malformed": config.rate_malformed, "stall": config.rate_stall,
        })
        self.stats: Counter[str] = Counter()  # requests, ok, rate_limit, server, malformed, ...
        self.port: int | None = None
        self._replies: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
        self._connections: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.config.host}:{self.port}/v1"

    # ------------------------------------------------------------ in-process lifecycle

    def start(self) -> str:
        """Serve from a background thread; returns the base URL once it accepts connections."""
        if self.index is None:
            self.index = ImageIndex(self.config.data_dir)
        self._loop = asyncio.new_event_loop()
        opened = threading.Event()
        self._thread = threading.Thread(target=self._run_thread, args=(opened,),
                                        name="demo-teacher", daemon=True)
        self._thread.start()
        opened.wait()
        if self._server is None:  # binding failed; the thread logged why and ended
            self._thread.join()
            raise OSError(f"demo teacher could not listen on {self.config.host}:{self.config.port}")
        return self.base_url

    def _run_thread(self, opened: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._open())
        except OSError:
            log.exception("demo teacher could not start")
            self._loop.close()
            return
        finally:
            opened.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._close())
        self._loop.close()

    def stop(self) -> None:
        """Close the server and every open connection, and end the background thread."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Serve in the running event loop until SIGINT/SIGTERM (the CLI path)."""
        if self.index is None:
            self.index = ImageIndex(self.config.data_dir)
        self._server = await self._open()
        stopped = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
        print(self.base_url, flush=True)  # a parent that asked for port 0 reads this line
        await stopped.wait()
        await self._close()

    async def _open(self) -> asyncio.base_events.Server:
        server = await asyncio.start_server(self._connection, self.config.host, self.config.port,
                                            backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        log.info("demo teacher (offline stand-in for GPT-4o, demo and tests only) at %s",
                 self.base_url)
        return server

    async def _close(self) -> None:
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    # ------------------------------------------------------------ HTTP/1.1 with keep-alive

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._connections.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (request_line.split(" ") + ["", ""])[:3]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", ""):
                    writer.write(http_response(411, error_body("send a Content-Length body",
                                                               "invalid_request_error")))
                    break
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                response = await self._dispatch(method, target.split("?")[0], body)
                if response is None:  # injected drop: close without a word
                    writer.transport.abort()
                    break
                writer.write(response)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError):
            pass  # client went away or sent garbage: nothing to answer
        except asyncio.CancelledError:
            pass  # server stopping; returning (not raising) keeps asyncio from logging it
        finally:
            self._connections.discard(asyncio.current_task())
            writer.close()

    async def _dispatch(self, method: str, path: str, body: bytes) -> bytes | None:
        path = path.rstrip("/")
        if path == "/v1/models" and method == "GET":
            model = {"id": self.config.model, "object": "model", "created": 0,
                     "owned_by": "mmgen-demo"}
            return http_response(200, {"object": "list", "data": [model]})
        if path == "/v1/chat/completions":
            if method != "POST":
                return http_response(405, error_body("use POST", "invalid_request_error"))
            return await self._chat(body)
        return http_response(404, error_body(f"unknown path {path}; the demo teacher serves "
                                             "/v1/models and /v1/chat/completions",
                                             "invalid_request_error"))

    async def _chat(self, body: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        # Latency counts from arrival, so composing the reply overlaps it, as on a real server.
        reply_at = loop.time() + self.config.latency_s
        digest = hashlib.blake2b(body, digest_size=16).digest()
        self.stats["requests"] += 1
        outcome = self.faults.draw(digest)
        if outcome in ("drop", "rate_limit", "server"):
            response = fault_response(outcome, self.config.retry_after_s)
        else:
            try:
                content, prompt_tokens = self._reply(digest, body)
            except BadRequest as err:
                outcome, content = "bad_request", str(err)
            if outcome == "bad_request":
                response = http_response(400, error_body(content, "invalid_request_error",
                                                         "invalid_request"))
            else:
                if outcome == "malformed":
                    content = malformed_reply(content, digest)
                response = completion_response(content, prompt_tokens, self.config.model,
                                               digest.hex()[:24])
        self.stats[outcome or "ok"] += 1
        if outcome == "stall":
            reply_at += self.config.stall_s
        await asyncio.sleep(max(0.0, reply_at - loop.time()))
        return response

    def _reply(self, digest: bytes, body: bytes) -> tuple[str, int]:
        """Reply text and prompt token estimate for a request body, cached by body digest."""
        if digest not in self._replies:
            self._replies[digest] = compose_reply(body, self.index)
            if len(self._replies) > 4096:
                self._replies.popitem(last=False)
        self._replies.move_to_end(digest)
        return self._replies[digest]


@contextlib.contextmanager
def serving(cfg) -> Iterator[str]:
    """backend.server for backend=demo_teacher: the teacher on loopback for the run; its URL."""
    options = OmegaConf.to_container(cfg.backend.teacher, resolve=True)
    known = {field.name for field in fields(TeacherConfig)} - {"data_dir", "model"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"backend.teacher.{unknown[0]} is not a demo teacher setting; "
                        f"use one of {', '.join(sorted(known))}")
    teacher = Teacher(TeacherConfig(data_dir=str(cfg.dataset.root), model=cfg.backend.model,
                                    **options))
    base_url = teacher.start()
    try:
        yield base_url
    finally:
        teacher.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the demo teacher until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TeacherConfig(data_dir="")
    for field in fields(TeacherConfig):
        flag = "--" + field.name.replace("_", "-").removesuffix("-s")  # latency_s -> --latency
        kind = type(getattr(defaults, field.name))
        parser.add_argument(flag, dest=field.name, type=kind, required=field.name == "data_dir",
                            default=getattr(defaults, field.name),
                            help=f"default {getattr(defaults, field.name)!r}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = TeacherConfig(**vars(args))
    if not (Path(config.data_dir) / "truth.json").is_file():
        parser.error(f"--data-dir {config.data_dir}: no truth.json there; build the demo data "
                     f"first (python -m mmgen.demo data_dir={config.data_dir})")
    log.info("config %s", asdict(config))
    try:
        asyncio.run(Teacher(config).serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
