"""An OpenAI-compatible server that answers with the demo target model, on loopback: the offline
stand-in for vLLM serving a fine-tuned VLM, so `evaluate=compatible` runs on the demo and in tests.

It reuses the demo teacher's HTTP server (keep-alive, latency and fault injection) and replaces
only the reply: the last image and text of the request go through the model's greedy answer.

    python -m mmgen.demo.answer_server --checkpoint outputs/demo/train/model.pt --port 8001
    python -m mmgen.evaluate +experiment=demo evaluate=compatible \
        evaluate.backend.base_url=http://127.0.0.1:8001/v1 evaluate.backend.model=demo-target-model
"""
from __future__ import annotations

import argparse
import asyncio
import json

import torch

from mmgen.demo.recognize import BadRequest, decode_data_url, image_urls, message_texts
from mmgen.demo.target_model import MAX_ANSWER_CHARS, answer, load_target_model
from mmgen.demo.teacher import Teacher, TeacherConfig

SERVED_NAME = "demo-target-model"
NO_INDEX = object()  # this server reads the images it is sent; it needs no index of the demo data


class DemoModelServer(Teacher):
    """`with DemoModelServer(checkpoint) as base_url:` serves greedy demo-model answers."""

    def __init__(self, checkpoint: str | None = None, model: str = SERVED_NAME,
                 **teacher_settings):
        super().__init__(TeacherConfig(data_dir="", model=model, **teacher_settings),
                         index=NO_INDEX)
        self.target_model = load_target_model(checkpoint)

    def _reply(self, digest: bytes, body: bytes) -> tuple[str, int]:
        """The model's answer to the request's last image and text (no reply cache: a test may
        ask the same question of two models)."""
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError) as err:
            raise BadRequest(f"request body needs a JSON object with 'messages': {err}") from err
        texts, urls = message_texts(messages), image_urls(messages)
        if not texts:
            raise BadRequest("the request has no question text")
        image = decode_data_url(urls[-1]).convert("RGB") if urls else None
        max_chars = int(request.get("max_tokens") or MAX_ANSWER_CHARS)
        reply = answer(self.target_model, [image], [texts[-1]], max_chars)[0]
        return reply, sum(len(text) for text in texts) // 4


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the demo target model until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="demo model checkpoint (default: the committed base model)")
    parser.add_argument("--model", default=SERVED_NAME, help="the name it serves under")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per reply")
    args = parser.parse_args(argv)
    # one thread: the model's ops are tiny, and on busy cores idle OpenMP threads spinning for
    # work cost far more than they save (measured: 7 ms per answer on 1 thread, 35 ms on 2)
    torch.set_num_threads(1)
    server = DemoModelServer(args.checkpoint, args.model, port=args.port,
                             latency_s=args.latency)
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
