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

from mmgen import CONF_DIR, runner
from mmgen.contracts import AppendLog
from mmgen.errors import StageStop
from mmgen.stage import launch, out_dir
from mmgen.vlm.client import ChatClient, endpoint, make_clients
from mmgen.vlm.cost import prices_for
from mmgen.vlm.engine import Engine, Settings
from mmgen.vlm.images import encoder_for
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
    """Bring generations.jsonl and data.json up to date (resuming the log); returns out_dir."""
    return runner.run(cfg, "generate")


def nothing_pending(cfg: DictConfig) -> bool:
    """False while prompts are left (a kill, a budget stop, retry_failed): never short-circuit."""
    out = out_dir(cfg)
    if not (out / LOG_NAME).is_file():
        return False
    state = scan_log(out / LOG_NAME)
    return count_pending(out / PROMPTS_NAME, state.done(cfg.generate.retry_failed))[1] == 0


def compute(cfg: DictConfig, out: Path) -> dict:
    """Send every prompt not yet done, append the replies to the log, rebuild data.json."""
    if cfg.backend.name == "dry_run":
        from mmgen.vlm.dry_run import dry_run

        dry_run(cfg, out)
        raise StageStop(f"dry run: the requests are in {out / 'requests.jsonl'}; nothing was "
                        "sent. Run again with a real backend to generate.")
    log_path = prepare_log(cfg, out)
    state = scan_log(log_path)
    total, pending = count_pending(out / PROMPTS_NAME, state.done(cfg.generate.retry_failed))
    log.info("generate: %d prompts, %d already done, %d to send via %s (%s)", total,
             total - pending, pending, cfg.backend.name, cfg.backend.model)
    if cfg.backend.name == "openai_batch":
        from mmgen.vlm.batch import run_batch

        this_run = run_batch(cfg, out, state)
    else:
        this_run = asyncio.run(generate_online(cfg, out, state, pending))
    samples = write_data(cfg, out)
    final = scan_log(out / LOG_NAME)
    totals = final.totals(prices_for(cfg))
    left = total - len(final.done(cfg.generate.retry_failed))
    classes = ", ".join(f"{name}: {n}" for name, n in sorted(totals["errors"].items()))
    log.info("generate: %d ok, %d failed%s, %d left; %d samples in %s; cost $%.4f",
             totals["ok"], totals["failed"], f" ({classes})" if classes else "", left,
             samples, out / DATA_NAME, totals["cost_usd"])
    return {"prompts": total, **totals, "pending": left, "samples": samples,
            "backend": cfg.backend.name, "model": cfg.backend.model, "run": this_run}


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


async def generate_online(cfg: DictConfig, out: Path, state: LogState, pending: int) -> dict:
    """Send the pending prompts through the online API; returns this run's stats."""
    gen = cfg.generate
    prices = prices_for(cfg)
    budget = Budget(prices, gen.max_cost_usd, spent_usd=state.spent(prices))
    prompts = pending_prompts(out / PROMPTS_NAME, state.done(gen.retry_failed))
    with endpoint(cfg) as base_url, AppendLog(out / LOG_NAME) as generations:
        chat = ChatClient(make_clients(cfg.backend, base_url, gen.concurrency), gen.timeout_s)
        writer = LogWriter(generations)
        engine = Engine(chat, encoder_for(cfg), engine_settings(cfg),
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
