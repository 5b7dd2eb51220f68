"""Build a LLaVA-style image-text-to-text model with random weights, offline, for tests and
benchmarks: a byte-level BPE tokenizer trained on a few sentences, a CLIP image processor, a
chat template, and the model from a config. Nothing is downloaded.

Sizes: `tiny` (a few hundred thousand parameters, for tests on CPU) and `llava-1.5-7b` (the
paper's target model's shapes: CLIP ViT-L/14 at 336 px + a Llama-2-7B decoder). A tiny Qwen2-VL
(dynamic resolution, M-RoPE, a Qwen-style chat template) covers the other processor family.
"""
from __future__ import annotations

from pathlib import Path

# LLaVA-1.5's conversation shape: "USER: <image>\n{question} ASSISTANT: {answer}"
_PARTS = "{% for part in message['content'] %}"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    + _PARTS + "{% if part['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    + _PARTS + "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: "
    + _PARTS + "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
SIZES = {
    "tiny": {"image_size": 32, "patch_size": 8, "vision_hidden": 32, "vision_layers": 1,
             "vision_heads": 2, "vision_intermediate": 64, "text_hidden": 32, "text_layers": 2,
             "text_heads": 2, "text_intermediate": 64, "vocab_size": None},
    "llava-1.5-7b": {"image_size": 336, "patch_size": 14, "vision_hidden": 1024,
                     "vision_layers": 24, "vision_heads": 16, "vision_intermediate": 4096,
                     "text_hidden": 4096, "text_layers": 32, "text_heads": 32,
                     "text_intermediate": 11008, "vocab_size": 32064},
}
CORPUS = [
    "What is the value of the tallest bar in the chart? The answer is 42.",
    "Which slice of the pie chart is the largest? Apples have the largest share.",
    "How many lines are drawn in the plot? There are three lines, and the red one rises.",
    "Options: A. north B. south C. east D. west. The city lies to the north of the river.",
]


def build_tokenizer(vocab_size: int = 400, prefix_space: bool = True):
    """A byte-level BPE tokenizer with LLaVA's special tokens; `prefix_space=False` tokenises a
    text's first word as GPT-2 and Llama-3 do (no leading space added: "Chess" != " Chess")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"})


def build_processor(size: str = "tiny", prefix_space: bool = True):
    """A LlavaProcessor whose image size and patch size match the `size` model."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    shape = SIZES[size]
    side = shape["image_size"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": side},
                                         crop_size={"height": side, "width": side})
    return LlavaProcessor(image_processor=image_processor,
                          tokenizer=build_tokenizer(prefix_space=prefix_space),
                          patch_size=shape["patch_size"], vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)


def build_config(size: str, tokenizer):
    """A LlavaConfig of the given size whose vocabulary covers `tokenizer`."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    shape = SIZES[size]
    vision = CLIPVisionConfig(hidden_size=shape["vision_hidden"], image_size=shape["image_size"],
                              patch_size=shape["patch_size"],
                              num_hidden_layers=shape["vision_layers"],
                              num_attention_heads=shape["vision_heads"],
                              intermediate_size=shape["vision_intermediate"])
    text = LlamaConfig(vocab_size=shape["vocab_size"] or len(tokenizer),
                       hidden_size=shape["text_hidden"], num_hidden_layers=shape["text_layers"],
                       num_attention_heads=shape["text_heads"],
                       num_key_value_heads=shape["text_heads"],
                       intermediate_size=shape["text_intermediate"], max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       image_seq_length=(shape["image_size"] // shape["patch_size"]) ** 2)


def save_random_llava(folder: str | Path, size: str = "tiny", seed: int = 0, dtype=None,
                      prefix_space: bool = True) -> Path:
    """Write processor + random-weight model to `folder`, loadable with from_pretrained."""
    import torch
    from transformers import LlavaForConditionalGeneration

    folder = Path(folder)
    processor = build_processor(size, prefix_space)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_config(size, processor.tokenizer))
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    + _PARTS + "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_random_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight Qwen2-VL (processor + model) to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2TokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    folder = Path(folder)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # as Qwen's
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=QWEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # Qwen's class (transformers 4.x's processor accepts no other) around our trained backend
    tokenizer = Qwen2TokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    pixels = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}  # at most 16 image tokens
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels, patch_size=14, merge_size=2,
                                              temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(**pixels), tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE)
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "max_position_embeddings": 2048, "bos_token_id": token("<|endoftext|>"),
                     "eos_token_id": token("<|im_end|>"),
                     # the 4.x spelling, which 5.x still reads; mrope_section sums to head_dim/2
                     "rope_theta": 10000.0,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2},
        image_token_id=token("<|image_pad|>"), video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"))
    torch.manual_seed(seed)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
