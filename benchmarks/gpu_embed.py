"""GPU benchmark: ViT-B-32 (random init) image embedding in fp16, end to end vs raw forward.

Self-contained: it draws its own PNG files in a temp dir and needs no weights. It needs torch,
torchvision, Pillow, numpy and open_clip (`open_clip_torch`, which needs `ftfy` and `wcwidth`);
no Hydra or OmegaConf. Prints one line per figure; about a minute on one H100.

    python benchmarks/gpu_embed.py [--images 4096] [--batch 256] [--workers 12]

Figures:
  raw forward      encode_image + normalise on a preprocessed fp16 batch already on the GPU
  decode only      the DataLoader alone: PNG decode + open_clip preprocessing in the workers
  end to end       mmgen.clip.ClipEncoder: files -> unit vectors on the host (what retrieve runs)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embed import draw_charts

from mmgen.clip import ClipEncoder, _collate, _ImageFiles, _single_thread_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke check")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_embed: torch sees no GPU; run this on a CUDA machine")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (smoke check only)"
    print(f"device: {name}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores, {args.workers} loader workers, batch {args.batch}")
    config = SimpleNamespace(arch="ViT-B-32", pretrained=None, device=args.device,
                             fp16_on_cuda=True, batch_size=args.batch, num_workers=args.workers,
                             templates=["{}"])
    encoder = ClipEncoder(config)
    model, preprocess, _ = encoder._load()
    with tempfile.TemporaryDirectory(prefix="gpu_embed_") as folder:
        started = time.perf_counter()
        paths = draw_charts(Path(folder), args.images)
        print(f"drew {len(paths)} PNG files (320x240) in {time.perf_counter() - started:.1f} s")

        from PIL import Image
        with Image.open(paths[0]) as image:
            sample = preprocess(image.convert("RGB"))
        dtype = torch.float16 if encoder.half else torch.float32
        batch = sample.unsqueeze(0).repeat(args.batch, 1, 1, 1).to(args.device, dtype)
        sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
        with torch.inference_mode():
            for _ in range(3):
                model.encode_image(batch)
            sync()
            started, done = time.perf_counter(), 0
            while done < (20 if args.device == "cuda" else 2) * args.batch:
                torch.nn.functional.normalize(model.encode_image(batch).float(), dim=-1)
                done += args.batch
            sync()
            raw = done / (time.perf_counter() - started)
        precision = "fp16" if encoder.half else "fp32"
        print(f"raw forward (ViT-B-32 random init, {precision}): {raw:,.0f} images/s")

        loader = torch.utils.data.DataLoader(
            _ImageFiles(paths, preprocess, encoder.draft_side), batch_size=args.batch,
            num_workers=args.workers,
            collate_fn=_collate, worker_init_fn=_single_thread_worker,
            multiprocessing_context="fork")
        started = time.perf_counter()
        decoded = sum(len(indices) for indices, _, _ in loader)
        decode = decoded / (time.perf_counter() - started)
        print(f"decode only (PNG -> preprocessed tensors, {args.workers} workers): "
              f"{decode:,.0f} images/s")

        list(encoder.iter_image_embeddings(paths[: args.batch * 2]))  # warm-up
        started = time.perf_counter()
        embedded = sum(len(indices) for indices, _, _ in encoder.iter_image_embeddings(paths))
        end_to_end = embedded / (time.perf_counter() - started)
        print(f"end to end (PNG files -> unit vectors, {precision}): {end_to_end:,.0f} images/s")
        print(f"ratio end to end / raw forward: {end_to_end / raw:.2f} "
              f"(decode-bound when decode only < raw forward)")


if __name__ == "__main__":
    main()
