"""Every stage, declared once: what it needs upstream, which config keys and input files shape its
result, what it writes, and the function that computes it. `mmgen.runner` does the rest.

Adding a stage means adding one `Stage(...)` here and a module with `compute(cfg, work_dir)`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

Names = tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    """One stage of the method, as the runner sees it."""

    name: str
    compute: str  # "module:function"; compute(cfg, work_dir) writes the outputs, returns stats
    outputs: Names | Callable[[DictConfig], Names]  # paths it leaves in out_dir
    keys: Names = ()  # config keys whose values shape the result (runtime keys are dropped)
    upstream: Names | Callable[[DictConfig], Names] = ()  # stages whose results it reads
    inputs: Callable[[DictConfig], dict[str, str]] | None = None  # digests of what it reads
    #                                                              beyond the config
    shared: bool = True  # cached under its fingerprint in paths.cache_dir, shared by experiments
    validate: Names = ()  # "module:function"s run before any stage: checks needing no results
    before: str | None = None  # "module:function" run first; may do a shard's slice and stop
    complete: str | None = None  # "module:function" -> bool: False forces a rerun (work left)
    version: int = 1  # bump by hand when the code changes what the stage computes
    code: Names = field(default=())  # further modules whose source shapes the result

    def upstream_of(self, cfg: DictConfig) -> Names:
        return self.upstream(cfg) if callable(self.upstream) else self.upstream

    def outputs_of(self, cfg: DictConfig) -> Names:
        return self.outputs(cfg) if callable(self.outputs) else self.outputs


def file_digests(paths: list[Path]) -> dict[str, str]:
    """Content digests of the files that exist among `paths` (read once per process)."""
    from mmgen.stage import file_digest

    return {str(path): file_digest(path) for path in paths if path.is_file()}


def _partition_inputs(cfg: DictConfig) -> dict[str, str]:
    from mmgen.partition import input_files

    return file_digests(input_files(cfg))


def _retrieve_inputs(cfg: DictConfig) -> dict[str, str]:
    from mmgen.errors import UserError
    from mmgen.pool import retrieval_inputs_digest  # the pool by listing, the eval set by content

    try:
        return {"pool": retrieval_inputs_digest(cfg)}
    except UserError:  # no pool: fine for a task file with candidates; retrieve says if not
        return {"pool": "absent"}


def _filter_inputs(cfg: DictConfig) -> dict[str, str]:
    # generate is resumable, so data.json can grow under the same config
    return file_digests([Path(cfg.paths.out_dir) / "data.json"])


def _export_outputs(cfg: DictConfig) -> Names:
    from mmgen.export import MAIN_OUTPUT

    return (f"export/{MAIN_OUTPUT[str(cfg.export.format)]}", "export/manifest.json")


STAGES: dict[str, Stage] = {stage.name: stage for stage in [
    Stage("partition", "mmgen.partition:compute", ("task.json", "partition.json"),
          keys=("dataset", "clip", "refset", "seed", "task_file"), inputs=_partition_inputs,
          code=("mmgen.clip",)),
    Stage("retrieve", "mmgen.retrieve:compute", ("task.json",), upstream=("partition",),
          keys=("retrieval", "caps_per_image", "total_gen"), inputs=_retrieve_inputs,
          before="mmgen.retrieve:embed_shard", code=("mmgen.retrievers", "mmgen.topk")),
    Stage("prompts", "mmgen.prompts:compute", ("prompts.jsonl",), upstream=("retrieve",),
          keys=("mode", "icl", "total_gen", "min_gen_per_candidate", "seed",
                "dataset.description"), code=("mmgen.modes",)),
    # backend.name is left out: the same model through openai, openai_batch or a proxy gives
    # the same kind of result, so switching between them resumes the same log
    Stage("generate", "mmgen.generate:compute", ("generations.jsonl", "data.json"),
          upstream=("prompts",), shared=False, complete="mmgen.generate:nothing_pending",
          keys=("backend.model", "backend.deployment", "min_gen_per_candidate", "generate"),
          validate=("mmgen.vlm.client:validate",)),
    # filter.batch_size and filter.device only change speed, so they are left out
    Stage("filter", "mmgen.filter:compute", ("filtered.json", "scores.jsonl"),
          upstream=("generate",), inputs=_filter_inputs, before="mmgen.filter:score_own_shard",
          keys=("filter.scorer", "filter.checks", "filter.keep_fraction", "filter.select",
                "seed"), validate=("mmgen.filter:validate",), code=("mmgen.scoring.checks",)),
    Stage("export", "mmgen.export:compute", _export_outputs, upstream=("filter",),
          keys=("export",), shared=False),
    Stage("report", "mmgen.report:compute", ("report.html",), upstream=("export",),
          keys=("report",), shared=False, code=("mmgen.report_sections",)),
]}
LAST_STAGE = "report"  # what `python -m mmgen.pipeline` brings up to date

# keys that change how fast a result is made, never what it is
RUNTIME_KEYS = {"clip.device", "clip.batch_size", "clip.num_workers", "clip.fp16_on_cuda",
                "generate.concurrency", "generate.rpm", "generate.tpm", "generate.timeout_s",
                "generate.max_attempts", "generate.backoff_base_s", "generate.backoff_max_s",
                "generate.retry_failed", "generate.max_cost_usd", "generate.image_cache",
                "generate.encode_threads", "generate.progress", "generate.prices"}


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
