"""python -m mmgen.diff: the key-by-key differences of two experiments."""
from __future__ import annotations

import subprocess
import sys

from mmgen import diff


def test_differences_are_listed_key_by_key(capsys):
    assert diff.main(["chartqa_mmgen", "chartqa_5icl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(" key(s) differ: chartqa_mmgen -> chartqa_5icl")
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert rows["icl.num_examples"] == "1 -> 5"
    assert rows["name"] == "chartqa_mmgen -> chartqa_5icl"
    assert "dataset.name" not in rows and "total_gen" not in rows  # equal values are not shown
    assert not any(key.startswith("hydra") for key in rows)


def test_long_and_list_values_show_both_sides(capsys):
    assert diff.main(["default", "spatial_map_generic"]) == 0
    out = capsys.readouterr().out
    assert '  mode.reply_keys' in out and '["Q", "A"] -> ["A"]' in out
    assert "  total_gen" in out and "1000 -> 15000" in out
    block = out[out.index("  mode.instruction\n"):].splitlines()
    assert block[1].startswith("    - Task: {description}.")
    assert any(line == "    + Write {n} detailed description(s) of the attached image."
               for line in block)


def test_overrides_apply_to_both_sides(capsys):
    assert diff.main(["chartqa_3icl", "chartqa_5icl", "icl=1"]) == 0
    out = capsys.readouterr().out
    assert "icl.num_examples" not in out and "name" in out


def test_the_same_experiment_has_no_differences(capsys):
    assert diff.main(["ai2d_mmgen", "ai2d_mmgen"]) == 0
    assert capsys.readouterr().out.strip() == "ai2d_mmgen and ai2d_mmgen compose to the same config"


def test_an_unknown_experiment_lists_the_choices(capsys):
    assert diff.main(["chartqa_mmgen", "chartqa_7icl"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'chartqa_7icl'" in err and "chartqa_5icl" in err


def test_the_command_line_exits_zero():
    done = subprocess.run([sys.executable, "-m", "mmgen.diff", "spatial_map_mmgen",
                           "spatial_map_generic"], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mode.name" in done.stdout and "vqa_nr -> generic" in done.stdout
