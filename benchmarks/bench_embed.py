"""Benchmark: CPU image-embedding throughput, end to end vs the raw model forward.

For the tiny demo CLIP and for ViT-B-32 (random init: timing only), it draws chart-like PNG files
in a temp dir, then measures
  - raw:        model.encode_image + normalise on preprocessed tensors already in memory;
  - end to end: mmgen.clip.ClipEncoder over the files (DataLoader workers decode and
                preprocess while the main process runs the forward), file -> unit vector.
and prints images/s and the ratio end to end / raw. Goal: >= 0.8.

    python benchmarks/bench_embed.py [--tiny-images 3000] [--vit-images 192] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from PIL import Image, ImageDraw


def draw_charts(folder: Path, count: int, size=(320, 240)) -> list[Path]:
    """Simple bar/line charts as PNG files, about the demo pool's size and complexity."""
    rng = random.Random(0)
    paths = []
    for index in range(count):
        image = Image.new("RGB", size, (255, 255, 255))
        pen = ImageDraw.Draw(image)
        pen.line([(30, 10), (30, 210), (310, 210)], fill=(0, 0, 0), width=2)
        values = [rng.randint(20, 190) for _ in range(rng.randint(3, 8))]
        step = 270 // len(values)
        color = tuple(rng.randint(0, 200) for _ in range(3))
        for position, value in enumerate(values):
            left = 40 + position * step
            if index % 2:
                pen.rectangle([left, 210 - value, left + step // 2, 210], fill=color)
            else:
                pen.ellipse([left - 3, 207 - value, left + 3, 213 - value], fill=color)
            pen.text((left, 218), f"L{position}", fill=(0, 0, 0))
        pen.text((40, 2), f"Chart {index}", fill=(0, 0, 0))
        path = folder / f"img_{index:05d}.png"
        image.save(path)
        paths.append(path)
    return paths


def clip_config(arch: str, pretrained: str | None, workers: int, batch_size: int):
    return SimpleNamespace(arch=arch, pretrained=pretrained, device="cpu", fp16_on_cuda=True,
                           batch_size=batch_size, num_workers=workers, templates=["{}"])


def measure(label: str, arch: str, pretrained: str | None, paths: list[Path], workers: int,
            batch_size: int) -> None:
    from mmgen.clip import ClipEncoder

    encoder = ClipEncoder(clip_config(arch, pretrained, workers, batch_size))
    model, preprocess, _ = encoder._load()
    with Image.open(paths[0]) as image:
        sample = preprocess(image.convert("RGB"))
    batch = sample.unsqueeze(0).repeat(batch_size, 1, 1, 1)
    with torch.inference_mode():
        model.encode_image(batch)  # warm-up
        started = time.perf_counter()
        done = 0
        while done < len(paths):
            torch.nn.functional.normalize(model.encode_image(batch).float(), dim=-1)
            done += batch_size
        raw = done / (time.perf_counter() - started)
    from mmgen.clip import _collate, _ImageFiles, _single_thread_worker

    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, preprocess, encoder.draft_side), batch_size=batch_size,
        num_workers=workers, collate_fn=_collate, worker_init_fn=_single_thread_worker)
    started = time.perf_counter()
    decode = sum(len(indices) for indices, _, _ in loader) / (time.perf_counter() - started)
    started = time.perf_counter()
    embedded = sum(len(indices) for indices, _, _ in encoder.iter_image_embeddings(paths))
    end_to_end = embedded / (time.perf_counter() - started)
    print(f"{label}: raw forward {raw:.1f} img/s; decode only {decode:.1f} img/s; end to end "
          f"{end_to_end:.1f} img/s ({len(paths)} PNG files, {workers} workers, batch "
          f"{batch_size}); ratio end to end / raw {end_to_end / raw:.2f} (goal >= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-images", type=int, default=3000)
    parser.add_argument("--vit-images", type=int, default=192)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} (other jobs share these cores)")
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as folder:
        paths = draw_charts(Path(folder), max(args.tiny_images, args.vit_images))
        from mmgen.demo.tiny_clip import register

        tiny_weights = register()
        if not Path(tiny_weights).is_file():  # not trained yet: random weights time the same
            import open_clip

            tiny_weights = str(Path(folder) / "tiny_random.pt")
            torch.save(open_clip.create_model("mmgen-tiny-clip").state_dict(), tiny_weights)
        measure("tiny CLIP (mmgen-tiny-clip, 64 px)", "mmgen-tiny-clip", tiny_weights,
                paths[: args.tiny_images], args.workers, 128)
        measure("ViT-B-32 (random init, 224 px)", "ViT-B-32", None, paths[: args.vit_images],
                args.workers, 32)


if __name__ == "__main__":
    main()
