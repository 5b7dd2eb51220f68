"""Retrieval methods (the `retrieval` group's `_target_`): how a subgroup scores a pool image.

Each method turns the subgroups into a score function over pool embeddings; `random` has none.
A new method is a subclass here (or anywhere importable) named by `retrieval._target_`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmgen.topk import ScoreFn


@dataclass
class RetrievalContext:
    """What a method may use: subgroup keywords, the CLIP encoder, reference embeddings."""

    keywords: Sequence[str]
    templates: Sequence[str]
    encoder: object  # mmgen.clip.ClipEncoder; loads its weights only if a method encodes text
    reference_embeddings: list[np.ndarray] = field(default_factory=list)  # per subgroup, unit rows
    num_candidates: int = 0  # pool images that may be chosen; positions run over 0..this-1
    seed: int = 0


@dataclass
class Retriever:
    """Base: the config fields every method shares (see mmgen/schema/select.py)."""

    name: str = "text"
    min_score: float = 0.0
    knn_k: int = 1
    near_duplicate_cosine: float | None = None
    scored = True  # whether scores mean similarity (written to the task file, min_score applies)

    def score_fn(self, context: RetrievalContext) -> ScoreFn:
        """A function from (float32 [n, dim] pool rows, their positions) to [n, subgroups]."""
        raise NotImplementedError


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


class TextRetriever(Retriever):
    """The seed's method: cosine to the keyword's text embedding, averaged over templates."""

    def score_fn(self, context: RetrievalContext) -> ScoreFn:
        queries = context.encoder.keyword_queries(context.keywords, context.templates)
        columns = np.ascontiguousarray(queries.T)  # a transposed view multiplies ~20x slower
        return lambda rows, positions: rows @ columns


class ImageCentroidRetriever(Retriever):
    """Cosine to the normalised mean of the subgroup's reference image embeddings."""

    def score_fn(self, context: RetrievalContext) -> ScoreFn:
        centroids = _unit(np.stack([group.mean(axis=0) for group in context.reference_embeddings]))
        columns = np.ascontiguousarray(centroids.T)  # a transposed view multiplies ~20x slower
        return lambda rows, positions: rows @ columns


class ImageKnnRetriever(Retriever):
    """Mean cosine to the subgroup's `knn_k` nearest reference images (k=1: the nearest one)."""

    def score_fn(self, context: RetrievalContext) -> ScoreFn:
        groups = [np.ascontiguousarray(group.T, dtype=np.float32)  # [dim, members]
                  for group in context.reference_embeddings]

        def scores(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
            columns = []
            for group in groups:
                similarity = rows @ group
                k = min(self.knn_k, group.shape[1])
                nearest = np.partition(similarity, group.shape[1] - k, axis=1)[:, -k:]
                columns.append(nearest.mean(axis=1))
            return np.stack(columns, axis=1)

        return scores


class RandomRetriever(Retriever):
    """The random-image baseline: a seeded random score per (image, subgroup), so each image
    lands in a random subgroup and each subgroup takes a uniform sample; min_score is ignored
    and no scores are written."""

    scored = False

    def score_fn(self, context: RetrievalContext) -> ScoreFn:
        rng = np.random.default_rng(context.seed)
        noise = rng.random((context.num_candidates, len(context.keywords)), dtype=np.float32)
        return lambda rows, positions: noise[positions]
