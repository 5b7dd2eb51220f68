"""GPU benchmark: ViT-B-32 fp16 pool embedding from WebDataset tar shards, CPU vs GPU JPEG decode.

One script, no weights (random init: timing only) and no network. It writes photo-like JPEGs
(400-640 px wide, like img2dataset's output) into tar shards, lists them with mmgen's shard
reader, and measures:
  raw forward        encode_image on a preprocessed fp16 batch already on the GPU
  cpu decode only    mmgen's loader: Pillow (JPEG draft mode) + open_clip preprocessing in
                     DataLoader workers
  cpu end to end     mmgen.clip.ClipEncoder over the tar members (what retrieve runs today)
  gpu decode only    raw bytes read from the tars, torchvision.io.decode_jpeg(device="cuda")
                     in batches (nvjpeg), resize + crop + normalise on the GPU
  gpu end to end     the same, then the fp16 forward, the next batch read while the GPU works
  preprocessing gap  mean absolute difference between the two paths' model inputs, in 0-255
                     levels (random weights make embeddings of any two images alike, so the
                     inputs are compared instead)
Goal: >= 3,000 images/s end to end on one GPU (CPU decoding reached 1,346 images/s on PNGs).

    python benchmarks/gpu_embed.py [--images 8192] [--batch 256] [--workers 14]
    python benchmarks/gpu_embed.py --cpu-smoke      # a minute on a CPU: both paths run, agree
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

PER_SHARD = 1000  # images per tar shard


def photo(index: int) -> bytes:
    """A photo-like JPEG (smooth colour fields plus grain), 400-640 px wide, quality 90."""
    from PIL import Image

    rng = np.random.default_rng(index)
    width = int(rng.integers(400, 641))
    height = int(width * rng.uniform(0.6, 1.0))
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(x * rng.uniform(2, 9) + y * rng.uniform(2, 9) + rng.uniform(0, 6))
                for _ in range(3)]
    pixels = (np.stack(channels, -1) * 90 + 128 + rng.normal(0, 10, (height, width, 3)))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_shards(folder: Path, count: int, processes: int) -> str:
    """Tar shards of `count` JPEGs (key.jpg + key.json); returns the brace pattern."""
    with Pool(processes) as pool:
        images = pool.map(photo, range(count), chunksize=64)
    for first in range(0, count, PER_SHARD):
        with tarfile.open(folder / f"{first // PER_SHARD:05d}.tar", "w") as archive:
            for index in range(first, min(count, first + PER_SHARD)):
                for suffix, data in ((".jpg", images[index]), (".json", b"{}")):
                    info = tarfile.TarInfo(f"{index:07d}{suffix}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return f"{{00000..{(count - 1) // PER_SHARD:05d}}}.tar"


class GpuPreprocess:
    """open_clip's inference preprocessing (bicubic resize of the shorter side, centre crop,
    normalise) on decoded uint8 CHW tensors, on their device."""

    def __init__(self, preprocess_cfg: dict, device: str, dtype: torch.dtype):
        self.size = preprocess_cfg["size"][0] if isinstance(preprocess_cfg["size"], (list, tuple)) \
            else preprocess_cfg["size"]
        self.mean = torch.tensor(preprocess_cfg["mean"], device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(preprocess_cfg["std"], device=device).view(1, 3, 1, 1) * 255
        self.device, self.dtype = device, dtype

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        size = self.size
        batch = torch.empty((len(images), 3, size, size), device=self.device)
        for position, image in enumerate(images):
            height, width = image.shape[-2:]
            scale = size / min(height, width)
            shape = (max(size, round(height * scale)), max(size, round(width * scale)))
            resized = torch.nn.functional.interpolate(
                image[None].float(), size=shape, mode="bicubic", antialias=True)
            top, left = round((shape[0] - size) / 2), round((shape[1] - size) / 2)
            batch[position] = resized[0, :, top:top + size, left:left + size]
        return ((batch.clamp_(0, 255) - self.mean) / self.std).to(self.dtype)


def decode(blobs: list[bytes], device: str) -> list[torch.Tensor]:
    """JPEG bytes -> RGB uint8 CHW tensors on `device` (nvjpeg in one batch on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    try:
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one bad file fails the batch: decode one by one (bad ones dropped)
        decoded = []
        for tensor in tensors:
            try:
                decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                continue
        return decoded


def gpu_path(items, batch_size: int, preprocess: GpuPreprocess, model, device: str,
             readers: int) -> tuple[float, float]:
    """(images/s decode only, images/s end to end)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(readers) as pool:
        def read(batch):
            return list(pool.map(lambda item: item.read_bytes(), batch))

        started = time.perf_counter()
        for batch in batches:
            preprocess(decode(read(batch), device))
        sync()
        decode_rate = len(items) / (time.perf_counter() - started)

        with torch.inference_mode(), ThreadPoolExecutor(1) as ahead:
            started = time.perf_counter()
            pending = ahead.submit(read, batches[0])
            for index in range(len(batches)):
                blobs = pending.result()
                if index + 1 < len(batches):
                    pending = ahead.submit(read, batches[index + 1])
                features = model.encode_image(preprocess(decode(blobs, device)))
                torch.nn.functional.normalize(features.float(), dim=-1).cpu()
            end_to_end = len(items) / (time.perf_counter() - started)
    return decode_rate, end_to_end


def cpu_path(encoder, items, preprocess, workers: int, batch_size: int) -> tuple[float, float]:
    """(images/s decode only, images/s end to end): mmgen's own loader."""
    from mmgen.clip import _collate, _ImageFiles, _single_thread_worker

    loader = torch.utils.data.DataLoader(
        _ImageFiles(items, preprocess, encoder.draft_side), batch_size=batch_size,
        num_workers=workers, collate_fn=_collate,
        worker_init_fn=_single_thread_worker if workers else None,
        multiprocessing_context="fork" if workers else None)
    started = time.perf_counter()
    decoded = sum(len(indices) for indices, _, _ in loader)
    decode_rate = decoded / (time.perf_counter() - started)
    started = time.perf_counter()
    embedded = sum(len(indices) for indices, _, _ in encoder.iter_image_embeddings(items))
    return decode_rate, embedded / (time.perf_counter() - started)


def preprocessing_gap(encoder, items, preprocess, gpu_preprocess: GpuPreprocess,
                      device: str) -> float:
    """Mean |CPU input - GPU input| over a few images, in 0-255 levels."""
    from mmgen.imageio import open_image

    cpu = torch.stack([preprocess(open_image(item.read_bytes(), max_side=encoder.draft_side,
                                             draft=True)) for item in items])
    gpu = gpu_preprocess(decode([item.read_bytes() for item in items], device)).float().cpu()
    return float(((cpu - gpu).abs() * gpu_preprocess.std.cpu()).mean())


def raw_forward(model, preprocess: GpuPreprocess, batch_size: int, device: str) -> float:
    batch = torch.randn((batch_size, 3, preprocess.size, preprocess.size), device=device)
    batch = batch.to(preprocess.dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rounds = 20 if device.startswith("cuda") else 2
    with torch.inference_mode():
        for _ in range(3):
            model.encode_image(batch)
        sync()
        started = time.perf_counter()
        for _ in range(rounds):
            torch.nn.functional.normalize(model.encode_image(batch).float(), dim=-1)
        sync()
    return rounds * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="a small CPU run: checks that both paths work and agree")
    args = parser.parse_args()
    if args.cpu_smoke:
        device, args.images, args.batch, args.workers = "cpu", 32, 16, min(args.workers, 2)
    elif not torch.cuda.is_available():
        sys.exit("gpu_embed: torch sees no GPU; run it on a CUDA machine, or use --cpu-smoke")
    else:
        device = "cuda"
    import torchvision

    from mmgen.clip import ClipEncoder
    from mmgen.pool.shards import ShardPool

    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (smoke check only)"
    print(f"device: {name}; torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"{os.cpu_count()} CPU cores, {args.workers} loader workers, batch {args.batch}")
    config = SimpleNamespace(arch="ViT-B-32", setup=None, pretrained=None, device=device,
                             fp16_on_cuda=True,
                             batch_size=args.batch, num_workers=args.workers, templates=["{}"])
    encoder = ClipEncoder(config)
    model, preprocess, _ = encoder._load()
    dtype = torch.float16 if encoder.half else torch.float32
    gpu_preprocess = GpuPreprocess(model.visual.preprocess_cfg, device, dtype)
    with tempfile.TemporaryDirectory(prefix="gpu_embed_") as folder:
        folder = Path(folder)
        started = time.perf_counter()
        pattern = write_shards(folder, args.images, max(1, min(16, os.cpu_count() or 1)))
        print(f"wrote {args.images} JPEGs into tar shards in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        source = ShardPool(pattern, folder, folder / "cache")
        items = source.listing().items
        print(f"indexed the shards (one read, content hashes) in "
              f"{time.perf_counter() - started:.1f} s: {len(items)} images")

        raw = raw_forward(model, gpu_preprocess, args.batch, device)
        print(f"raw forward (ViT-B-32 random init, {dtype}): {raw:,.0f} images/s")
        cpu_decode, cpu_end = cpu_path(encoder, items, preprocess, args.workers, args.batch)
        print(f"cpu decode only (Pillow, draft mode, {args.workers} workers): "
              f"{cpu_decode:,.0f} images/s")
        print(f"cpu end to end (mmgen.clip over tar members): {cpu_end:,.0f} images/s")
        gpu_path(items[:args.batch], args.batch, gpu_preprocess, model, device, 8)  # warm-up
        gpu_decode, gpu_end = gpu_path(items, args.batch, gpu_preprocess, model, device, 8)
        print(f"gpu decode only (torchvision.io.decode_jpeg on {device}): "
              f"{gpu_decode:,.0f} images/s")
        print(f"gpu end to end (tar bytes -> {device} decode -> {dtype} forward): "
              f"{gpu_end:,.0f} images/s")
        gap = preprocessing_gap(encoder, items[:16], preprocess, gpu_preprocess, device)
        print(f"preprocessing gap: the two paths' model inputs differ by {gap:.2f} of 255 levels "
              "on average")
        print(f"ratio gpu / cpu end to end: {gpu_end / cpu_end:.2f}; gpu end to end / raw "
              f"forward: {gpu_end / raw:.2f}; goal >= 3,000 images/s: "
              f"{'met' if gpu_end >= 3000 else 'missed'}")
        if gap > 3:
            sys.exit(f"gpu_embed: the GPU path's inputs differ from open_clip's by {gap:.2f} "
                     "levels (> 3): its preprocessing is wrong")


if __name__ == "__main__":
    main()
