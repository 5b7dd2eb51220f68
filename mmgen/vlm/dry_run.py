"""backend=dry_run: write the exact requests a run would send to <out_dir>/requests.jsonl and
print the estimated tokens and cost. Nothing is called; no key is needed or written.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mmgen.contracts import atomic_writer, iter_prompts
from mmgen.stage import MARKER_DIR, update_stats
from mmgen.vlm.cost import prices_for, request_tokens
from mmgen.vlm.images import ImageError, encoder_for
from mmgen.vlm.messages import build_messages, image_paths, request_body
from mmgen.vlm.resume import KEY_NAME, LOG_NAME, PROMPTS_NAME, log_key, read_key, scan_log

log = logging.getLogger(__name__)
REQUESTS_NAME = "requests.jsonl"
COMPLETION_TOKENS_PER_FIELD = 40  # a guess for one reply field (a question, an answer...)
SHOWN_UNREADABLE = 5


def done_ids(cfg: DictConfig, out: Path) -> set[str]:
    """Prompts a real run would skip: those done in a log made from these same prompts."""
    key_path = out / MARKER_DIR / KEY_NAME
    if not (out / LOG_NAME).exists() or not key_path.exists():
        return set()
    if read_key(key_path) != log_key(cfg, out / PROMPTS_NAME):
        return set()
    return scan_log(out / LOG_NAME).done(cfg.generate.retry_failed)


def dry_run(cfg: DictConfig, out: Path) -> dict:
    """Write requests.jsonl and return (and print) the estimate."""
    gen = cfg.generate
    encoder = encoder_for(cfg)  # the encoder a real run would use
    mode = OmegaConf.to_container(cfg.mode, resolve=True)
    done = done_ids(cfg, out)
    requests = prompt_tokens = images = 0
    unreadable: list[str] = []
    with atomic_writer(out / REQUESTS_NAME) as handle:
        for prompt in iter_prompts(out / PROMPTS_NAME):
            if prompt["id"] in done:
                continue
            try:
                encoded = [encoder.encode(path) if cfg.backend.inline_images
                           else encoder.measure(path) for path in image_paths(prompt)]
            except ImageError as err:
                unreadable.append(str(err))
                continue
            messages = build_messages(prompt, encoded, gen.image_detail)
            body = request_body(cfg.backend.deployment or cfg.backend.model, messages,
                                gen.temperature, gen.max_tokens)
            handle.write(json.dumps({"custom_id": prompt["id"], "method": "POST",
                                     "url": "/v1/chat/completions", "body": body},
                                    ensure_ascii=False, separators=(",", ":")) + "\n")
            requests += 1
            images += len(encoded)
            prompt_tokens += request_tokens(messages, [image.tokens for image in encoded])
    completion_tokens = requests * cfg.min_gen_per_candidate * len(mode["reply_keys"]) \
        * COMPLETION_TOKENS_PER_FIELD
    prices = prices_for(cfg)
    estimate = {"requests": requests, "skipped_done": len(done), "images": images,
                "unreadable_images": len(unreadable), "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens, "model": cfg.backend.model,
                "cost_usd": round(prices.cost(prompt_tokens, completion_tokens), 4),
                "price_known": prices.known, "requests_file": str(out / REQUESTS_NAME)}
    print(f"dry run: {requests} requests ({images} images, {len(done)} prompts already done) "
          f"written to {out / REQUESTS_NAME}\n"
          f"  estimated prompt tokens     {prompt_tokens:,}\n"
          f"  estimated completion tokens {completion_tokens:,} (about "
          f"{COMPLETION_TOKENS_PER_FIELD} per reply field)\n"
          f"  estimated cost              ${estimate['cost_usd']:,.2f} at {cfg.backend.model} prices"
          + ("" if prices.known else " (no price configured: shown as 0)")
          + "\n  (retries and format-fixing calls are not included)", flush=True)
    for reason in unreadable[:SHOWN_UNREADABLE]:
        print(f"  unreadable: {reason}", flush=True)
    if len(unreadable) > SHOWN_UNREADABLE:
        print(f"  ... and {len(unreadable) - SHOWN_UNREADABLE} more unreadable images", flush=True)
    update_stats(cfg, "generate_dry_run", estimate)
    return estimate
