"""Run under torchrun: the hf trainer on the CPU, the batch split over the processes.

    python -m torch.distributed.run --nproc_per_node=2 tests/helpers/train_hf_ddp.py MODEL IMAGES OUT
"""
import json
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[n]) for n in (1, 2)]  # tests/, the checkout

from helpers.hf_train import SAMPLES, TINY_LORA
from mmgen.training.hf import HFTrainer

model, image_root, train_dir = sys.argv[1:4]
trainer = HFTrainer(model=model, lora=TINY_LORA, micro_batch_size=2, epochs=6, batch_size=4,
                    lr=1e-2, save_every_steps=5, log_every_steps=2, seed=0, device="cpu",
                    progress=False)
stats = trainer.train(SAMPLES, Path(image_root), Path(train_dir), Path(train_dir) / "log.jsonl")
if int(os.environ.get("RANK", "0")) == 0:
    (Path(train_dir) / "stats.json").write_text(json.dumps(stats))
