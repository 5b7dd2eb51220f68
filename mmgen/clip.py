"""Load any open_clip model (pretrained tag, local checkpoint or the demo's tiny CLIP) through one
code path, and embed image files and texts with it as L2-normalised float32 vectors.

Weights load on first use, never at import, so composing a config or reading a cache is cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmgen.contracts import file_sha256
from mmgen.imageio import ImageError, open_image

if TYPE_CHECKING:  # any object with the clip config's attributes works (benchmarks pass one)
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

DRAFT_FACTOR = 2  # images decode shrunk to this x the model input (JPEGs 2-4x faster)
DECODE = f"mmgen.imageio; JPEG draft; longer side <= {DRAFT_FACTOR}x input"  # in the cache key


def resolve_device(device: str) -> str:
    """'auto' becomes cuda when a GPU is visible, else cpu; cuda without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("clip.device=cuda but torch sees no GPU; use clip.device=auto or cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"clip.device '{device}' is not one of auto, cpu, cuda")
    return device


def resolve_weights(clip_cfg: DictConfig) -> str | None:
    """The `pretrained` argument for open_clip: a tag, a checkpoint path, or the tiny checkpoint."""
    if clip_cfg.setup:  # a custom architecture: the hook adds it and names its checkpoint
        from mmgen.stages import call

        return clip_cfg.pretrained or call(clip_cfg.setup)
    return clip_cfg.pretrained



def expected_preprocess(arch: str, pretrained: str | None) -> dict:
    """The inference preprocessing open_clip will use, read from configs without loading weights."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(f"clip.arch '{arch}' is not an open_clip model config; "
                         f"known ones include {', '.join(open_clip.list_models()[:8])}, ...")
    preprocess = asdict(PreprocessCfg())
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) if pretrained else None
    if tag_cfg:
        preprocess = merge_preprocess_dict(preprocess, tag_cfg)
    size = model_cfg["vision_cfg"].get("image_size", preprocess["size"])
    preprocess["size"] = [size, size] if isinstance(size, int) else list(size)
    return json.loads(json.dumps(preprocess))  # tuples become lists, so identities compare equal


class _ImageFiles(Dataset):
    """Image files -> preprocessed tensors; an unreadable file yields its reason instead."""

    def __init__(self, paths: Sequence[Path], preprocess, draft_side: int | None = None):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.draft_side = draft_side  # a large image is shrunk to this longer side on decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            source = path if isinstance(path, (str, Path)) else path.read_bytes()  # tar/dataset
            image = open_image(source, max_side=self.draft_side, draft=True,
                               name_for_errors=f"image '{getattr(path, 'name', path)}'")
            return index, self.preprocess(image), ""
        except ImageError as err:  # empty, corrupt, truncated, bombs: the file is skipped
            return index, None, err.reason
        except OSError as err:  # a tar shard or dataset file gone since it was listed
            return index, None, f"unreadable: {err}"


def _collate(items):
    loaded = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    failed = [(index, reason) for index, tensor, reason in items if tensor is None]
    batch = torch.stack([tensor for _, tensor in loaded]) if loaded else None
    return [index for index, _ in loaded], batch, failed


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)  # workers only decode; the main process owns the cores for the forward


class ClipEncoder:
    """One open_clip model, loaded lazily; embeds texts and image files, L2-normalised."""

    def __init__(self, clip_cfg: DictConfig):
        self.cfg = clip_cfg
        self.device = resolve_device(clip_cfg.device)
        self.half = self.device.startswith("cuda") and clip_cfg.fp16_on_cuda
        self._model = None
        self.draft_side: int | None = None  # set when the model loads

    @cached_property
    def pretrained(self) -> str | None:
        return resolve_weights(self.cfg)

    @cached_property
    def identity(self) -> dict:
        """What makes two embeddings of one file equal: architecture, weights, preprocessing."""
        pretrained = self.pretrained
        if pretrained is None:
            raise ValueError(f"clip.pretrained is null for arch '{self.cfg.arch}': set an "
                             "open_clip tag (e.g. laion2b_s34b_b79k) or a checkpoint path "
                             "(clip=local)")
        path = Path(pretrained)
        if path.is_file():
            weights = f"file-sha256:{file_sha256(path)[:16]}"
        elif "/" in pretrained or path.suffix in {".pt", ".pth", ".bin", ".safetensors"}:
            raise FileNotFoundError(f"clip.pretrained checkpoint '{pretrained}' not found; "
                                    "fix the path or name an open_clip pretrained tag")
        else:
            weights = f"tag:{pretrained}"
        return {"arch": self.cfg.arch, "weights": weights, "decode": DECODE,
                "preprocess": expected_preprocess(self.cfg.arch, pretrained)}

    @cached_property
    def key(self) -> str:
        """A short hash of `identity`: the embedding cache folder name."""
        encoded = json.dumps(self.identity, sort_keys=True).encode()
        return f"{self.cfg.arch}-{hashlib.sha256(encoded).hexdigest()[:12]}"

    def _load(self):
        if self._model is not None:
            return self._model
        import open_clip

        pretrained = self.pretrained
        log.info("loading CLIP %s (%s) on %s%s", self.cfg.arch, pretrained, self.device,
                 " in fp16" if self.half else "")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.cfg.arch, pretrained=pretrained, device=self.device,
                precision="fp16" if self.half else "fp32")
        except RuntimeError as err:
            raise RuntimeError(
                f"could not load CLIP weights '{pretrained}' for {self.cfg.arch}: {err}. Without "
                "internet, download them once on a connected machine or point clip=local "
                "clip.pretrained at a checkpoint file") from err
        loaded = json.loads(json.dumps(model.visual.preprocess_cfg))
        size = loaded["size"]
        loaded["size"] = [size, size] if isinstance(size, int) else list(size)
        if pretrained is not None and loaded != self.identity["preprocess"]:
            raise RuntimeError(f"open_clip preprocessing {loaded} differs from the expected "
                               f"{self.identity['preprocess']}; the embedding cache key would be "
                               "wrong")
        model.eval()
        self.draft_side = DRAFT_FACTOR * max(loaded["size"])
        self._model = (model, preprocess, open_clip.get_tokenizer(self.cfg.arch))
        return self._model

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns float32 [len(texts), dim], unit norm."""
        model, _, tokenizer = self._load()
        features = model.encode_text(tokenizer(list(texts)).to(self.device)).float()
        return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

    def keyword_queries(self, keywords: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """One query per keyword: the normalised mean of its template sentences' embeddings."""
        queries = []
        for keyword in keywords:
            sentences = self.encode_texts([template.format(keyword) for template in templates])
            mean = sentences.mean(axis=0)
            queries.append(mean / np.linalg.norm(mean))
        return np.stack(queries).astype(np.float32)

    def iter_image_embeddings(self, paths: Sequence[Path]
                              ) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
        """Per batch: (indices into paths, float32 unit embeddings, [(index, why) unreadable])."""
        model, preprocess, _ = self._load()
        workers = max(0, int(self.cfg.num_workers)) if len(paths) > self.cfg.batch_size else 0
        loader = DataLoader(
            _ImageFiles(paths, preprocess, self.draft_side), batch_size=self.cfg.batch_size,
            num_workers=workers,
            collate_fn=_collate, pin_memory=self.device.startswith("cuda"),
            worker_init_fn=_single_thread_worker if workers else None,
            # fork explicitly: inside joblib's loky workers the inherited start method fails
            multiprocessing_context="fork" if workers and sys.platform == "linux" else None)
        dtype = torch.float16 if self.half else torch.float32
        threads = torch.get_num_threads()
        if workers and self.device == "cpu":  # the decoding workers hold cores: an
            # oversubscribed forward runs 1.5-3.5x slower (bench_scale on 2 cores)
            torch.set_num_threads(max(1, min(threads, len(os.sched_getaffinity(0)) - workers)))
        try:
            with torch.inference_mode():
                for indices, batch, failed in loader:
                    embeddings = np.zeros((0, 0), dtype=np.float32)
                    if batch is not None:
                        features = model.encode_image(
                            batch.to(self.device, dtype, non_blocking=True))
                        features = torch.nn.functional.normalize(features.float(), dim=-1)
                        embeddings = features.cpu().numpy()
                    yield indices, embeddings, failed
        finally:
            torch.set_num_threads(threads)

    def encode_images(self, paths: Sequence[Path]) -> tuple[np.ndarray, dict[int, str]]:
        """Embed files in memory: float32 [len(paths), dim] (zero rows for failures), failures."""
        rows: dict[int, np.ndarray] = {}
        failures: dict[int, str] = {}
        for indices, embeddings, failed in self.iter_image_embeddings(paths):
            rows.update(zip(indices, embeddings))
            failures.update(failed)
        dim = next(iter(rows.values())).shape[0] if rows else 0
        matrix = np.zeros((len(paths), dim), dtype=np.float32)
        for index, row in rows.items():
            matrix[index] = row
        return matrix, failures
