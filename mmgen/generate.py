"""Stage 4, generate: send every prompt in <out_dir>/prompts.jsonl to a VLM and build data.json.

Writes generations.jsonl (append-only, one final record per prompt: the resume log), data.json
(LLaVA samples, rebuilt from the log on every run) and the `generate` section of stats.json.
Rerunning the same command skips prompts with an `ok` record; a kill -9 loses at most the
requests in flight. Backends: openai, azure, compatible, demo_teacher, dry_run, openai_batch.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mmgen import CONF_DIR
from mmgen.contracts import AppendLog
from mmgen.stage import MARKER_DIR, is_fresh, launch, out_dir, run_stage
from mmgen.vlm.client import ChatClient, check_backend, endpoint, make_clients
from mmgen.vlm.cost import prices_for
from mmgen.vlm.engine import Engine, Settings
from mmgen.vlm.images import ImageEncoder
from mmgen.vlm.limits import Budget, RateLimiter
from mmgen.vlm.resume import (
    DATA_NAME,
    LOG_NAME,
    PROMPTS_NAME,
    LogState,
    LogWriter,
    count_pending,
    pending_prompts,
    prepare_log,
    scan_log,
    write_data,
)

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Generate replies for every prompt not yet done, rebuild data.json, and return out_dir."""
    check_backend(cfg.backend)  # a missing API key fails here, before any work
    if not is_fresh(cfg, "prompts", [PROMPTS_NAME]):
        from mmgen import prompts  # imported here: prompts imports the stages above it

        prompts.run(cfg)
    out = out_dir(cfg)
    if cfg.backend.name == "dry_run":
        from mmgen.vlm.dry_run import dry_run

        dry_run(cfg, out)
        return out
    log_path = prepare_log(cfg, out)
    state = scan_log(log_path)
    total, pending = count_pending(out / PROMPTS_NAME, state.done(cfg.generate.retry_failed))
    if pending:  # work is left (a kill, a budget stop, retry_failed): never short-circuit
        (out / MARKER_DIR / "generate.fingerprint").unlink(missing_ok=True)

    def compute(work_dir: Path) -> dict:
        log.info("generate: %d prompts, %d already done, %d to send via %s (%s)", total,
                 total - pending, pending, cfg.backend.name, cfg.backend.model)
        if cfg.backend.name == "openai_batch":
            from mmgen.vlm.batch import run_batch

            this_run = run_batch(cfg, work_dir, state)
        else:
            this_run = asyncio.run(generate_online(cfg, work_dir, state, pending))
        samples = write_data(cfg, work_dir)
        final = scan_log(work_dir / LOG_NAME)
        totals = final.totals(prices_for(cfg))
        left = total - len(final.done(cfg.generate.retry_failed))
        classes = ", ".join(f"{name}: {n}" for name, n in sorted(totals["errors"].items()))
        log.info("generate: %d ok, %d failed%s, %d left; %d samples in %s; cost $%.4f",
                 totals["ok"], totals["failed"], f" ({classes})" if classes else "", left,
                 samples, work_dir / DATA_NAME, totals["cost_usd"])
        return {"prompts": total, **totals, "pending": left, "samples": samples,
                "backend": cfg.backend.name, "model": cfg.backend.model, "run": this_run}

    return run_stage(cfg, "generate", [LOG_NAME, DATA_NAME], compute, shared=False)


def engine_settings(cfg: DictConfig) -> Settings:
    """The engine's knobs from cfg.generate, cfg.backend and cfg.mode."""
    gen = cfg.generate
    return Settings(
        concurrency=gen.concurrency, max_attempts=gen.max_attempts,
        backoff_base_s=gen.backoff_base_s, backoff_max_s=gen.backoff_max_s,
        timeout_s=gen.timeout_s, format_fix_tries=gen.format_fix_tries,
        temperature=gen.temperature, max_tokens=gen.max_tokens,
        request_model=cfg.backend.deployment or cfg.backend.model,
        record_model=cfg.backend.model, mode=OmegaConf.to_container(cfg.mode, resolve=True),
        wanted=cfg.min_gen_per_candidate, detail=gen.image_detail,
        encode_threads=gen.encode_threads, progress=gen.progress)


def image_encoder(cfg: DictConfig) -> ImageEncoder:
    """The image encoder for cfg.generate's size, format and detail, rooted at dataset.root."""
    gen = cfg.generate
    return ImageEncoder(cfg.dataset.root, gen.image_max_side, gen.image_format, gen.jpeg_quality,
                        gen.image_detail, gen.image_cache)


async def generate_online(cfg: DictConfig, out: Path, state: LogState, pending: int) -> dict:
    """Send the pending prompts through the online API; returns this run's stats."""
    gen = cfg.generate
    prices = prices_for(cfg)
    budget = Budget(prices, gen.max_cost_usd, spent_usd=state.spent(prices))
    prompts = pending_prompts(out / PROMPTS_NAME, state.done(gen.retry_failed))
    with endpoint(cfg) as base_url, AppendLog(out / LOG_NAME) as generations:
        chat = ChatClient(make_clients(cfg.backend, base_url, gen.concurrency), gen.timeout_s)
        writer = LogWriter(generations)
        engine = Engine(chat, image_encoder(cfg), engine_settings(cfg),
                        RateLimiter(gen.rpm, gen.tpm), budget, writer.append)
        try:
            stats = await engine.run(prompts, pending)
        finally:
            try:
                await chat.aclose()
            finally:
                writer.close()  # everything finished reaches the log
    if budget.reached:
        log.warning("generate: stopped sending at the budget generate.max_cost_usd=%.4f (spent "
                    "$%.4f in total); %d prompts were not sent. Everything finished is kept; "
                    "rerun with a higher generate.max_cost_usd to continue.", gen.max_cost_usd,
                    budget.spent_usd, pending - stats["finished"])
    return stats


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main)
