"""The pool of unlabelled images: where it lives (folder, list file, tar shards, Hugging Face
dataset), content hashes, and the content-keyed embedding cache."""
from mmgen.pool.hashing import FileHasher, bytes_hash, content_hash
from mmgen.pool.items import EXTRACT_DIR, Listing, PoolSource, place_candidates
from mmgen.pool.sources import (
    open_pool,
    pool_listing,
    retrieval_inputs_digest,
    unusable_pool_error,
)
from mmgen.pool.store import EmbeddingStore

__all__ = ["EXTRACT_DIR", "EmbeddingStore", "FileHasher", "Listing", "PoolSource", "bytes_hash",
           "content_hash", "open_pool", "place_candidates", "pool_listing",
           "retrieval_inputs_digest", "unusable_pool_error"]
