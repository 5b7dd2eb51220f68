"""Two runs of one experiment in one folder: the second waits for the first and reuses its work,
so no prompt is ever sent twice and nothing half-written is left behind."""
from __future__ import annotations

import os
import subprocess
import sys

from mmgen.contracts import iter_jsonl, load_dataset


def test_two_runs_of_the_same_experiment_send_each_prompt_once(tmp_path, demo):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mmgen.generate", "+experiment=demo",
               f"paths.demo_dir={demo}", f"paths.out_dir={out}",
               f"paths.cache_dir={tmp_path / 'cache'}", "generate.progress=false"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    records = list(iter_jsonl(out / "generations.jsonl"))
    prompts = list(iter_jsonl(out / "prompts.jsonl"))
    assert sorted(r["id"] for r in records) == sorted(p["id"] for p in prompts)
    assert len(load_dataset(out / "data.json")["samples"]) >= 100
    assert not [p.name for p in out.rglob("*") if p.name.endswith((".placing", ".tmp"))]
    assert any("waiting for" in text for text in outputs)


def test_the_hydra_record_and_the_log_go_with_paths_out_dir(tmp_path):
    out = tmp_path / "elsewhere"
    subprocess.run([sys.executable, "-m", "mmgen.partition", "+experiment=demo",
                    f"paths.out_dir={out}", "total_gen=0"], cwd=tmp_path, capture_output=True,
                   text=True, timeout=120, check=False)  # stops in the preflight: total_gen
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / "partition.log").is_file()
    assert not (tmp_path / "outputs" / "demo").exists()
    assert not (tmp_path / "outputs" / "demo_data").exists()  # stopped before building anything
