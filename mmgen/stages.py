"""Every stage, declared once: what it needs upstream, which config keys and input files shape its
result, what it writes, and the function that computes it. `mmgen.runner` does the rest.

Adding a stage means adding one `Stage(...)` here and a module with `compute(cfg, work_dir)`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from omegaconf import DictConfig

Names = tuple[str, ...]


def call(reference: str, *args):
    """Call a "module:function" reference (stages name their code; nothing is imported here)."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)(*args)


@dataclass(frozen=True)
class Stage:
    """One stage of the method, as the runner sees it. Code is named as "module:function"."""

    name: str
    compute: str  # compute(cfg, work_dir) writes the outputs into work_dir, returns stats
    outputs: Names | str  # paths it leaves in out_dir, or a function of cfg giving them
    keys: Names = ()  # config keys whose values shape the result (runtime keys are dropped)
    upstream: Names | str = ()  # stages whose results it reads, or a function of cfg
    inputs: str | None = None  # function of cfg: digests of what it reads beyond the config
    shared: bool = True  # cached under its fingerprint in paths.cache_dir, shared by experiments
    validate: Names = ()  # run before any stage: checks that need no upstream result
    before: str | None = None  # run first; may do a shard job's slice and stop (StageStop)
    complete: str | None = None  # -> bool; False forces a rerun (work is left)
    distributed: bool = False  # under torchrun/accelerate every rank computes it together
    version: int = 1  # bump by hand when the code changes what the stage computes
    code: Names = field(default=())  # further modules whose source shapes the result

    def upstream_of(self, cfg: DictConfig) -> Names:
        return tuple(call(self.upstream, cfg)) if isinstance(self.upstream, str) else self.upstream

    def outputs_of(self, cfg: DictConfig) -> Names:
        return tuple(call(self.outputs, cfg)) if isinstance(self.outputs, str) else self.outputs


# what shapes a model's scores (evaluate.model and .predictions only pick what is scored)
EVAL_KEYS = ("dataset.eval", "dataset.metric", "evaluate.prompt", "evaluate.max_new_tokens",
             "evaluate.resamples", "evaluate.backend", "seed")
EVAL_CODE = ("mmgen.metrics", "mmgen.evaluation", "mmgen.evaluation.eval_set")
STAGES: dict[str, Stage] = {stage.name: stage for stage in [
    # writes a benchmark's files at dataset.root from its Hugging Face dataset (dataset.source)
    Stage("prepare", "mmgen.prepare:compute", ("prepare.json",), keys=("dataset", "seed"),
          inputs="mmgen.prepare:input_digests", shared=False,
          validate=("mmgen.prepare:validate",), complete="mmgen.prepare:complete",
          code=("mmgen.prepare_rows", "mmgen.prepare_files", "mmgen.prepare_select")),
    Stage("partition", "mmgen.partition:compute", ("partition.json",),
          upstream="mmgen.prepare:partition_upstream", inputs="mmgen.partition:input_digests",
          keys=("dataset.root", "dataset.reference", "dataset.keywords", "clip", "refset", "seed",
                "task_file"), code=("mmgen.clip",)),
    Stage("retrieve", "mmgen.retrieve:compute", ("task.json",), upstream=("partition",),
          keys=("retrieval", "caps_per_image", "total_gen"), inputs="mmgen.retrieve:input_digests",
          before="mmgen.retrieve:embed_shard",
          code=("mmgen.retrievers", "mmgen.topk", "mmgen.pool.items")),
    Stage("prompts", "mmgen.prompts:compute", ("prompts.jsonl",), upstream=("retrieve",),
          keys=("mode", "icl", "total_gen", "min_gen_per_candidate", "seed",
                "dataset.description"), code=("mmgen.modes",)),
    # backend.name is left out: the same model through openai, openai_batch or a proxy gives
    # the same kind of result, so switching between them resumes the same log
    Stage("generate", "mmgen.generate:compute", ("generations.jsonl", "data.json"),
          upstream=("prompts",), shared=False, complete="mmgen.generate:nothing_pending",
          keys=("backend.model", "backend.deployment", "min_gen_per_candidate", "generate"),
          validate=("mmgen.vlm.client:validate",), code=("mmgen.modes", "mmgen.vlm.resume")),
    # filter.batch_size and filter.device only change speed, so they are left out
    Stage("filter", "mmgen.filter:compute", ("filtered.json", "scores.jsonl"),
          upstream=("generate",), inputs="mmgen.filter:input_digests",
          before="mmgen.filter:score_own_shard",
          keys=("filter.scorer", "filter.checks", "filter.keep_fraction", "filter.select",
                "seed"), validate=("mmgen.scoring:validate",),
          code=("mmgen.scoring", "mmgen.scoring.checks", "mmgen.scoring.hf", "mmgen.demo.scorer")),
    Stage("export", "mmgen.export:compute", "mmgen.export:outputs", upstream=("filter",),
          keys=("export",), shared=False, code=("mmgen.modes",)),
    # the closed loop: train the target model on the data, score it and the base model
    Stage("train", "mmgen.train:compute", "mmgen.train:outputs", upstream="mmgen.train:upstream",
          keys=("train", "seed"), inputs="mmgen.train:inputs", shared=False, distributed=True,
          validate=("mmgen.train:validate",),
          code=("mmgen.training", "mmgen.demo.trainer", "mmgen.training.hf",
                "mmgen.demo.target_model", "mmgen.scoring.hf")),
    Stage("evaluate", "mmgen.evaluate:compute", ("eval/predictions.jsonl", "eval/metrics.json"),
          upstream="mmgen.evaluate:upstream", inputs="mmgen.evaluate:inputs", shared=False,
          keys=EVAL_KEYS + ("evaluate.model", "evaluate.predictions"),
          validate=("mmgen.evaluate:validate",), code=EVAL_CODE),
    Stage("baseline", "mmgen.evaluate:compute_base",
          ("eval_base/predictions.jsonl", "eval_base/metrics.json"), keys=EVAL_KEYS,
          inputs="mmgen.evaluate:inputs", validate=("mmgen.evaluate:validate",), code=EVAL_CODE),
    Stage("report", "mmgen.report:compute", ("report.html",), upstream="mmgen.report:upstream",
          keys=("report",), shared=False, code=("mmgen.report_sections",)),
]}
LAST_STAGE = "report"  # what `python -m mmgen.pipeline` brings up to date

# keys that change how fast a result is made, never what it is
RUNTIME_KEYS = {"clip.device", "clip.batch_size", "clip.num_workers", "clip.fp16_on_cuda",
                "generate.concurrency", "generate.rpm", "generate.tpm", "generate.timeout_s",
                "generate.max_attempts", "generate.backoff_base_s", "generate.backoff_max_s",
                "generate.retry_failed", "generate.max_cost_usd", "generate.image_cache",
                "generate.encode_threads", "generate.progress", "generate.prices",
                "train.device", "train.progress", "train.save_every_steps",
                "train.trainer.num_workers", "evaluate.batch_size", "evaluate.device",
                "evaluate.backend.concurrency", "evaluate.backend.timeout_s",
                "evaluate.backend.max_attempts", "evaluate.backend.api_key_env"}


def plan(cfg: DictConfig, target: str) -> list[str]:
    """The stages `target` needs, upstream first, each once."""
    if target not in STAGES:
        raise KeyError(f"no stage named '{target}'; stages: {', '.join(STAGES)}")
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"stage cycle: {' -> '.join(path + (name,))}")
        if name in order:
            return
        for upstream in STAGES[name].upstream_of(cfg):
            visit(upstream, path + (name,))
        order.append(name)

    visit(target, ())
    return order
