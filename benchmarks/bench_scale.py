"""Benchmark: retrieve at scale, from a folder and from WebDataset tar shards, with the tiny CLIP.

Builds the demo's reference and eval sets, then synthetic pools of N small JPEG charts (each
unique), both as a folder and as tar shards of 10,000 images, and for each N and layout runs,
each in a fresh process:
  - cold:    `mmgen.retrieve` with an empty cache (list, hash, decode, embed, search, select);
  - decode:  the same images through the embedding's DataLoader without the model;
  - rerun:   the same command again, fully cached, against one listing of the pool.
Times leave out the imports (torch, open_clip: seconds on a busy machine), printed apart.
It prints time, images/s and peak RSS per case, and how time and memory grow with N. A first
section measures Pillow's JPEG draft mode (mmgen.imageio) against a full decode on 1024 px JPEGs.

    python benchmarks/bench_scale.py [--sizes 10000 100000] [--layouts folder tar] [--workers 2]
"""
from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

SHARD_SIZE = 10_000  # images per tar shard (img2dataset's default)
CHART_SIZE = (96, 72)  # small charts: cheap to make, larger than the tiny CLIP's 64 px input
REFERENCE = {"reference": {"bar": 4, "line": 3, "pie": 3}, "eval": {"bar": 1, "line": 1, "pie": 1},
             "pool": {"bar": 1, "line": 1, "pie": 1, "map": 1, "shapes": 1, "noise": 1,
                      "table": 1}}


# ---------------------------------------------------------------- synthetic data


def chart_jpeg(index: int, rng: random.Random) -> bytes:
    """A small bar or line chart as JPEG bytes; the index is drawn in, so every image differs."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", CHART_SIZE, (255, 255, 255))
    pen = ImageDraw.Draw(image)
    values = [rng.randint(8, 60) for _ in range(rng.randint(3, 7))]
    color = tuple(rng.randint(0, 200) for _ in range(3))
    step = 80 // len(values)
    for position, value in enumerate(values):
        left = 10 + position * step
        if index % 2:
            pen.rectangle([left, 66 - value, left + step // 2, 66], fill=color)
        else:
            pen.ellipse([left - 2, 64 - value, left + 2, 68 - value], fill=color)
    pen.line([(8, 4), (8, 66), (94, 66)], fill=(0, 0, 0))
    pen.text((12, 0), str(index), fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def build_pools(root: Path, size: int) -> dict[str, str]:
    """The demo reference set under root, and a pool of `size` charts as a folder and as shards;
    returns dataset.pool per layout."""
    from mmgen.demo.build import build_demo

    build_demo(root, seed=0, counts=REFERENCE)
    folder, shards = root / f"pool_{size}", root / f"shards_{size}"
    folder.mkdir()
    shards.mkdir()
    rng = random.Random(size)
    for first in range(0, size, SHARD_SIZE):
        with tarfile.open(shards / f"{first // SHARD_SIZE:05d}.tar", "w") as archive:
            for index in range(first, min(size, first + SHARD_SIZE)):
                data = chart_jpeg(index, rng)
                sub = folder / f"{index // 1000:03d}"  # 1,000 files a folder, as downloaders do
                sub.mkdir(exist_ok=True)
                (sub / f"{index:07d}.jpg").write_bytes(data)
                for suffix, payload in ((".jpg", data), (".json", b'{"url": null}')):
                    info = tarfile.TarInfo(f"{index:07d}{suffix}")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
    last = (size - 1) // SHARD_SIZE
    return {"folder": folder.name, "tar": f"{shards.name}/{{00000..{last:05d}}}.tar"}


# ---------------------------------------------------------------- one case, in a fresh process


def compose(root: Path, pool: str, out: Path, cache: Path, workers: int):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import mmgen.stage  # noqa: F401  (registers the schema)
    from mmgen import CONF_DIR

    overrides = ["+experiment=demo", f"dataset.root={root}", f"dataset.pool='{pool}'",
                 f"clip.num_workers={workers}", "clip.device=cpu"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out)
        HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.out_dir, cfg.paths.cache_dir = str(out), str(cache)
    return cfg


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest child (loader workers), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_case(case: dict) -> dict:
    """cold | rerun | decode, timed inside this process."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    cfg = compose(Path(case["root"]), case["pool"], Path(case["out"]), Path(case["cache"]),
                  case["workers"])
    started = time.perf_counter()
    import open_clip  # noqa: F401  (torch and open_clip take seconds to import: timed apart)

    import mmgen.clip
    import mmgen.partition  # noqa: F401
    from mmgen import retrieve
    from mmgen.pool import open_pool

    result = {"imports_s": time.perf_counter() - started}
    if case["kind"] == "rerun":
        source = open_pool(cfg)
        started = time.perf_counter()
        count = len(source.list_all().items)  # one listing, not memoised
        result["listing_s"] = time.perf_counter() - started
        if source.kind == "tar shards":  # the fingerprint only stats the tars
            started = time.perf_counter()
            source.signature()
            result["signature_s"] = time.perf_counter() - started
        from mmgen.pool import items

        items._LISTINGS.clear()
    if case["kind"] == "decode":  # the model's preprocessing, loaded before the clock starts
        from mmgen.clip import ClipEncoder

        encoder = ClipEncoder(cfg.clip)
        encoder._load()
    started = time.perf_counter()
    if case["kind"] == "decode":
        count = decode_only(cfg, encoder)
    else:
        retrieve.run(cfg)
    result["seconds"] = time.perf_counter() - started
    result["images"] = count if case["kind"] != "cold" else len(open_pool(cfg).listing().items)
    result["rss_mb"], result["worker_rss_mb"] = peak_rss_mb()
    return result


def decode_only(cfg, encoder) -> int:
    """The embedding's DataLoader over the pool, without the model: images decoded."""
    import torch

    from mmgen.clip import _collate, _ImageFiles, _single_thread_worker
    from mmgen.pool import open_pool, pool_listing

    items = pool_listing(open_pool(cfg)).items
    loader = torch.utils.data.DataLoader(
        _ImageFiles(items, encoder._load()[1], encoder.draft_side),
        batch_size=cfg.clip.batch_size,
        num_workers=cfg.clip.num_workers, collate_fn=_collate,
        worker_init_fn=_single_thread_worker, multiprocessing_context="fork")
    return sum(len(indices) for indices, _, _ in loader)


def in_fresh_process(case: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"bench_scale: the {case['kind']} case failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- JPEG draft mode


def decode_speedup(count: int, folder: Path) -> None:
    """open_image(max_side=128, the tiny CLIP's decode side) on 1024 px JPEGs: draft vs full."""
    import numpy as np
    from PIL import Image

    from mmgen.imageio import open_image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):  # photo-like: smooth gradients plus noise, quality 90
        ramp = np.linspace(0, 255, 1024)
        pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp[::-1], ramp) / 2,
                           np.full((1024, 1024), 40.0 + index)], -1)
        pixels += rng.normal(0, 12, pixels.shape)
        path = folder / f"photo_{index}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    print(f"\nJPEG decode, {count} files of 1024x1024, one core:")
    for side, model in ((128, "tiny CLIP, 64 px input"), (448, "ViT-B-32, 224 px input")):
        timings = {}
        for draft in (False, True):
            started = time.perf_counter()
            for path in paths:
                open_image(path, max_side=side, draft=draft)
            timings[draft] = count / (time.perf_counter() - started)
        print(f"  max_side {side} ({model}): full decode {timings[False]:,.0f} img/s, draft "
              f"{timings[True]:,.0f} img/s, speed-up {timings[True] / timings[False]:.2f}x")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--layouts", nargs="+", default=["folder", "tar"])
    parser.add_argument("--workers", type=int, default=2, help="image-decoding processes")
    parser.add_argument("--decode-images", type=int, default=100)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as scratch:
        scratch = Path(scratch)
        if args.decode_images:
            (scratch / "photos").mkdir()
            decode_speedup(args.decode_images, scratch / "photos")
        rows = {}
        for size in args.sizes:
            root = scratch / f"data_{size}"
            started = time.perf_counter()
            pools = build_pools(root, size)
            print(f"\nbuilt a {size:,}-image pool (folder and shards) in "
                  f"{time.perf_counter() - started:.0f} s")
            for layout in args.layouts:
                base = {"root": str(root), "pool": pools[layout], "workers": args.workers,
                        "cache": str(scratch / f"cache_{size}_{layout}"),
                        "out": str(scratch / f"out_{size}_{layout}")}
                row = {kind: in_fresh_process({**base, "kind": kind})
                       for kind in ("cold", "rerun", "decode")}
                rows[size, layout] = row
                report(size, layout, row)
        growth(rows, args.sizes, args.layouts)


def report(size: int, layout: str, row: dict) -> None:
    cold, rerun, decode = row["cold"], row["rerun"], row["decode"]
    end_to_end = cold["images"] / cold["seconds"]
    decode_rate = decode["images"] / decode["seconds"]
    print(f"{layout:6} {size:>7,}: cold {cold['seconds']:7.1f} s = {end_to_end:5,.0f} img/s "
          f"(decode only {decode_rate:5,.0f} img/s, ratio {end_to_end / decode_rate:.2f}); peak RSS "
          f"{cold['rss_mb']:,.0f} MB (+ workers {cold['worker_rss_mb']:,.0f} MB); cached rerun "
          f"{rerun['seconds']:.2f} s vs one listing {rerun['listing_s']:.2f} s "
          f"({rerun['seconds'] / rerun['listing_s']:.1f}x)"
          + (f", fingerprint stats only {rerun['signature_s'] * 1000:.0f} ms"
             if "signature_s" in rerun else "")
          + f"; imports before each {rerun['imports_s']:.1f} s")


def growth(rows: dict, sizes: list[int], layouts: list[str]) -> None:
    if len(sizes) < 2:
        return
    small, large = sizes[0], sizes[-1]
    print(f"\ngrowth from {small:,} to {large:,} images ({large / small:.0f}x):")
    for layout in layouts:
        a, b = rows[small, layout], rows[large, layout]
        print(f"  {layout:6}: time {b['cold']['seconds'] / a['cold']['seconds']:.1f}x, peak RSS "
              f"{b['cold']['rss_mb'] / a['cold']['rss_mb']:.2f}x, cached rerun "
              f"{b['rerun']['seconds'] / a['rerun']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
