"""Build a tiny, randomly initialised Moshi and serve it with the genuine ``moshi.server``.

Runs inside the Moshi environment (torch + moshi), never inside Coda's own:

    python tiny_moshi.py build DIR
    python tiny_moshi.py serve DIR --port PORT

The model is random, so it says nothing meaningful, but it speaks Moshi's real
websocket protocol in real time on one CPU thread: a genuine protocol peer.
Nothing is downloaded: every file is written to DIR and passed by path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEANET = {
    "channels": 1,
    "dimension": 32,
    "causal": True,
    "n_filters": 4,
    "n_residual_layers": 1,
    "activation": "ELU",
    "compress": 2,
    "dilation_base": 2,
    "disable_norm_outer_blocks": 0,
    "kernel_size": 7,
    "residual_kernel_size": 3,
    "last_kernel_size": 3,
    "norm": "none",
    "pad_mode": "constant",
    "ratios": [8, 6, 5, 4],
    "true_skip": True,
}
MIMI = {
    "sample_rate": 24000,
    "channels": 1,
    "frame_rate": 12.5,
    "seanet": SEANET,
    "quantizer": {
        "dimension": 16,
        "n_q": 8,
        "bins": 64,
        "input_dimension": 32,
        "output_dimension": 32,
    },
    "transformer": {
        "d_model": 32,
        "num_heads": 4,
        "num_layers": 1,
        "causal": True,
        "layer_scale": 0.01,
        "context": 250,
        "conv_layout": True,
        "max_period": 10000,
        "gating": "none",
        "norm": "layer_norm",
        "positional_embedding": "rope",
        "dim_feedforward": 64,
        "input_dimension": 32,
        "output_dimensions": [32],
    },
}
LM = {
    "dim": 64,
    "text_card": 40,
    "existing_text_padding_id": 3,
    "n_q": 4,
    "dep_q": 2,
    "card": 64,
    "num_heads": 4,
    "num_layers": 2,
    "hidden_scale": 2,
    "causal": True,
    "layer_scale": None,
    "context": 750,
    "max_period": 10000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 32,
    "depformer_dim_feedforward": 64,
    "depformer_num_heads": 2,
    "depformer_num_layers": 1,
    "depformer_layer_scale": None,
    "depformer_multi_linear": True,
    "depformer_context": 2,
    "depformer_max_period": 10000,
    "depformer_gating": "silu",
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0, 0, 1, 0, 1],
}
_CORPUS = (
    "hello there how are you today\n"
    "the quick brown fox jumps over the lazy dog\n"
    "pack my box with five dozen liquor jugs\n"
    "what can i do for you this evening\n"
) * 50


def build(folder: Path) -> None:
    """Write weights, configs and a SentencePiece tokenizer into ``folder``."""
    import sentencepiece
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(20261125)
    corpus = folder / "corpus.txt"
    corpus.write_text(_CORPUS)
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=LM["text_card"],
        pad_id=LM["existing_text_padding_id"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
    )
    (folder / "mimi_config.json").write_text(json.dumps(MIMI))
    config = {**LM, "mimi_config_name": f"file://{(folder / 'mimi_config.json').resolve()}"}
    (folder / "config.json").write_text(json.dumps(config))
    save_model(loaders.get_mimi(None, MIMI), str(folder / "mimi.safetensors"))
    lm = loaders.get_moshi_lm(None, lm_kwargs=LM, dtype=torch.float32)
    save_model(lm, str(folder / "lm.safetensors"))


def serve(folder: Path, host: str, port: int) -> None:
    """Run the genuine ``moshi.server`` on ``folder``'s files, on the CPU."""
    import torch

    torch.set_num_threads(1)  # with more threads the tiny model falls behind real time
    torch.cuda.synchronize = lambda *args, **kwargs: None  # the server's warm-up calls it
    sys.argv = [
        "moshi.server",
        *("--host", host, "--port", str(port)),
        *("--config-path", str(folder / "config.json")),
        *("--moshi-weight", str(folder / "lm.safetensors")),
        *("--mimi-weight", str(folder / "mimi.safetensors")),
        *("--tokenizer", str(folder / "tokenizer.model")),
        *("--static", "none", "--device", "cpu"),
    ]
    import moshi.server  # noqa: F401 - the module runs its server when imported


def main() -> None:
    """Command line: ``build DIR`` or ``serve DIR --port PORT``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["build", "serve"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8998)
    args = parser.parse_args()
    if args.command == "build":
        build(args.folder)
    else:
        serve(args.folder, args.host, args.port)


if __name__ == "__main__":
    main()
