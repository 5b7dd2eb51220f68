"""Closed choices: a value outside the list fails at compose time, naming the key."""
from enum import Enum


class Choice(str, Enum):
    """A closed choice that compares, hashes, prints and serialises as its plain value."""

    def __str__(self) -> str:
        return self.value


class Refset(Choice):
    full = "full"  # every reference sample, in its subgroup
    imbalanced = "imbalanced"  # the largest subgroup cut to the smallest one's size
    small = "small"  # refset.fraction of each subgroup
    no_partition = "no_partition"  # one subgroup holding every reference sample


class Select(Choice):
    high = "high"  # keep the highest-loss samples (MM-Gen)
    low = "low"  # keep the lowest-loss samples
    random = "random"  # keep a random share


class ExportFormat(Choice):
    llava = "llava"
    sharegpt = "sharegpt"
    hf = "hf"


class BackendName(Choice):
    openai = "openai"
    azure = "azure"
    compatible = "compatible"
    demo_teacher = "demo_teacher"
    dry_run = "dry_run"
    openai_batch = "openai_batch"


class ImageFormat(Choice):
    jpeg = "jpeg"
    png = "png"


class ImageDetail(Choice):
    low = "low"
    high = "high"
    auto = "auto"


class Device(Choice):
    auto = "auto"  # cuda when a GPU is visible, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Dtype(Choice):
    auto = "auto"  # bfloat16 on a GPU, else float32
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
