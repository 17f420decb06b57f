"""A vision projector (mmproj) small enough to build in a test: random weights in llama.cpp's
llava ("mlp") layout, for a text model of `n_embd` (SmolLM2-135M: 576). No PyPI package ships a
vision GGUF, so this is what lets the image path run on a real engine: llama-server loads it
with `--mmproj`, encodes each image into (28 / 14)² = 4 tokens and generates. What it says about
an image means nothing.

The layout follows llama.cpp's tools/mtmd/clip.cpp; note that the llava graph runs all but the
last encoder block, and that `ffn_up` and `ffn_down` must differ in shape."""

from __future__ import annotations

from pathlib import Path

IMAGE_SIDE, PATCH_SIDE, WIDTH, FEED_FORWARD, BLOCKS, PROJECTOR_HIDDEN = 28, 14, 32, 64, 2, 64


def write_projector(path: Path, n_embd: int = 576) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(1234)

    def random(*shape: int):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def filled(value: float, size: int):
        return np.full((size,), value, dtype=np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("general.name", "tiny-random-mmproj")
    writer.add_uint32("general.file_type", 0)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_audio_encoder", False)
    writer.add_bool("clip.use_gelu", True)
    for key, value in [("image_size", IMAGE_SIDE), ("patch_size", PATCH_SIDE), ("embedding_length", WIDTH),
                       ("feed_forward_length", FEED_FORWARD), ("block_count", BLOCKS), ("projection_dim", n_embd),
                       ("attention.head_count", 2)]:
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    tensors = {
        "v.patch_embd.weight": random(WIDTH, 3, PATCH_SIDE, PATCH_SIDE), "v.patch_embd.bias": filled(0, WIDTH),
        "v.position_embd.weight": random((IMAGE_SIDE // PATCH_SIDE) ** 2, WIDTH),
        "v.pre_ln.weight": filled(1, WIDTH), "v.pre_ln.bias": filled(0, WIDTH),
    }
    for block in range(BLOCKS):
        prefix = f"v.blk.{block}"
        for norm in ("ln1", "ln2"):
            tensors |= {f"{prefix}.{norm}.weight": filled(1, WIDTH), f"{prefix}.{norm}.bias": filled(0, WIDTH)}
        for attention in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors |= {f"{prefix}.{attention}.weight": random(WIDTH, WIDTH), f"{prefix}.{attention}.bias": filled(0, WIDTH)}
        tensors |= {
            f"{prefix}.ffn_up.weight": random(FEED_FORWARD, WIDTH), f"{prefix}.ffn_up.bias": filled(0, FEED_FORWARD),
            f"{prefix}.ffn_down.weight": random(WIDTH, FEED_FORWARD), f"{prefix}.ffn_down.bias": filled(0, WIDTH),
        }
    tensors |= {
        "mm.0.weight": random(PROJECTOR_HIDDEN, WIDTH), "mm.0.bias": filled(0, PROJECTOR_HIDDEN),
        "mm.2.weight": random(n_embd, PROJECTOR_HIDDEN), "mm.2.bias": filled(0, n_embd),
    }
    for name, values in tensors.items():
        writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def red_png(side: int = 32) -> bytes:
    """A PNG of one red square, made with the standard library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
