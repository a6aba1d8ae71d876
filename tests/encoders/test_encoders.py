"""Encoders: offline loader, cache invalidation, learning on a synthetic catalog, determinism,
and the next-item metrics against brute force."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsim.data import PrepareOptions, SessionLog, prepare
from shopsim.data.next_item import expected_rank_metrics
from shopsim.encoders.backbone import load_backbone, locate_backbone, weights_hash
from shopsim.encoders.cache import cached, hash_texts
from shopsim.encoders.embed import embed_texts
from shopsim.encoders.finetune import EncoderConfig, EncoderTrainer
from shopsim.encoders.text import item_texts
from shopsim.errors import ShopsimError
from shopsim.experiments.encode import run_encode

COLORS = ["red", "blue", "green", "black", "white", "yellow"]
KINDS = ["shirt", "dress", "scarf", "coat", "hat"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with MiniLM's tokenizer, saved as a local Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(locate_backbone()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def colour_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic shop: a shopper browses items of one colour; item text names colour and kind."""
    tmp = tmp_path_factory.mktemp("colour-shop")
    rng = np.random.default_rng(0)
    items = [(f"{c}-{k}", f"{c} {k}", c) for c, k in itertools.product(COLORS, KINDS)]
    pd.DataFrame(items, columns=["item_id", "title", "colour"]).to_csv(tmp / "items.csv", index=False)
    rows = []
    t0 = pd.Timestamp("2024-01-01")
    for s in range(400):
        colour = COLORS[rng.integers(len(COLORS))]
        kinds = rng.permutation(KINDS)[: rng.integers(3, 5)]
        for j, k in enumerate(kinds):
            rows.append(
                {
                    "user_id": f"u{s}",
                    "session_id": f"s{s}",
                    "item_id": f"{colour}-{k}",
                    "timestamp": t0 + pd.Timedelta(minutes=10 * s + j),
                    "event": "view",
                }
            )
    pd.DataFrame(rows).to_csv(tmp / "events.csv", index=False)
    prepare(
        tmp / "events.csv",
        PrepareOptions(format="events", items=tmp / "items.csv", text_cols=["title"]),
        tmp / "data",
    )
    return tmp / "data"


def test_packaged_backbone_loads_offline(no_network: None) -> None:
    path = locate_backbone()
    assert (path / "model.safetensors").exists()
    tok, model = load_backbone(path)
    vec = embed_texts(tok, model, ["red cotton shirt", ""], progress=False)
    assert vec.shape == (2, 384)
    assert np.linalg.norm(vec[0]) > 0
    assert np.all(vec[1] == 0)


def test_hub_name_without_local_copy_is_one_clear_line() -> None:
    with pytest.raises(ShopsimError) as err:
        locate_backbone("sentence-transformers/all-MiniLM-L6-v2")
    assert str(err.value) == (
        "backbone 'sentence-transformers/all-MiniLM-L6-v2': no local copy (shopsim never downloads "
        "models); point --backbone / encoder.backbone at a local Hugging Face folder (config.json + "
        "weights), e.g. one saved with save_pretrained()"
    )


def test_cache_reused_and_invalidated(tmp_path: Path, tiny_backbone: Path) -> None:
    calls = []

    def build() -> np.ndarray:
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    base = {"backbone": weights_hash(tiny_backbone), "text_hash": hash_texts(["a", "b"]), "max_length": 64}
    _, hit = cached(tmp_path, "v", base, build)
    arr, hit2 = cached(tmp_path, "v", base, build)
    assert (hit, hit2) == (False, True)
    assert len(calls) == 1
    assert isinstance(arr, np.memmap)  # memory-mapped load
    for changed in (
        {**base, "text_hash": hash_texts(["a", "c"])},  # text changed
        {**base, "max_length": 32},  # config changed
    ):
        _, hit = cached(tmp_path, "v", changed, build)
        assert not hit
    # weights changed: re-save the tiny model with other weights → another hash
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(tiny_backbone))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(1.0)
    other = tmp_path / "other-bert"
    model.save_pretrained(str(other))
    assert weights_hash(other) != base["backbone"]


def test_tiny_full_finetune_improves_its_objective(colour_shop: Path, tiny_backbone: Path) -> None:
    log = SessionLog.load(colour_shop)
    tok, bert = load_backbone(tiny_backbone)
    texts = item_texts(log.items, "events").tolist()
    vecs = embed_texts(tok, bert, texts, progress=False)
    cfg = EncoderConfig(
        backbone=str(tiny_backbone),
        finetune="full",
        use_ids=False,
        use_attributes=False,
        epochs=1,
        ft_epochs=3,
        ft_batch_size=64,
        backbone_lr=1e-3,
        progress=False,
        patience=6,
    )
    trainer = EncoderTrainer(log, cfg, vecs, backbone=(tok, bert))
    trainer.fit_frozen()
    trainer.fit_backbone()
    ft_losses = [h["loss"] for h in trainer.history if h["stage"] == 1]
    assert ft_losses[-1] < ft_losses[0]
    # text is the only signal and it names the colour: next items must rank well above chance
    assert trainer.best_valid > 0.6


def test_text_learns_the_colour_rule(colour_shop: Path) -> None:
    log = SessionLog.load(colour_shop)
    tok, bert = load_backbone(locate_backbone())
    vecs = embed_texts(tok, bert, item_texts(log.items, "events").tolist(), progress=False)
    trainer = EncoderTrainer(log, EncoderConfig(use_ids=False, use_attributes=False, progress=False), vecs)
    trainer.fit_frozen()
    # 30 items, 4 same-colour candidates left after the history: chance R@10 is 1/3
    assert trainer.best_valid > 0.9


def test_fixed_seed_gives_identical_vectors(colour_shop: Path) -> None:
    log = SessionLog.load(colour_shop)
    vecs = np.random.default_rng(0).normal(size=(len(log.items), 8)).astype(np.float32)
    out = []
    for _ in range(2):
        tr = EncoderTrainer(log, EncoderConfig(epochs=3, augment=0.5, progress=False, seed=7), vecs)
        tr.fit_frozen()
        out.append(tr.item_vectors())
    np.testing.assert_array_equal(out[0], out[1])
    tr = EncoderTrainer(log, EncoderConfig(epochs=3, augment=0.5, progress=False, seed=8), vecs)
    tr.fit_frozen()
    assert not np.array_equal(out[0], tr.item_vectors())


def test_encode_writes_outputs_and_serves_cache(
    colour_shop: Path, tiny_backbone: Path, tmp_path: Path
) -> None:
    cfg = EncoderConfig(backbone=str(tiny_backbone), epochs=3, progress=False)
    first = run_encode(colour_shop, tmp_path, cfg, n_boot=50)
    assert not first["served_from_cache"]
    for name in ("item_vectors.npy", "item_ids.json", "encoder.pt", "eval.json", "manifest.json"):
        assert (tmp_path / name).exists()
    models = first["models"]
    assert set(models) >= {
        "popularity",
        "cooccurrence",
        "als",
        "attribute_match",
        "frozen_text",
        "two_tower_frozen",
    }
    for m in models.values():
        lo, hi = m["overall"]["recall@10"]["ci95"]
        assert lo <= m["overall"]["recall@10"]["value"] <= hi
    second = run_encode(colour_shop, tmp_path, cfg, n_boot=50)
    assert second["served_from_cache"]
    third = run_encode(
        colour_shop,
        tmp_path,
        EncoderConfig(backbone=str(tiny_backbone), epochs=3, seed=1, progress=False),
        n_boot=50,
    )
    assert not third["served_from_cache"]
    from shopsim.encoders.bundle import EncoderBundle

    bundle = EncoderBundle.load(tmp_path)
    state = bundle.encode_state([np.array([0, 1])], [np.array([2, 2])])
    assert state.shape == (1, 64)
    assert np.linalg.norm(state) == pytest.approx(1.0, abs=1e-5)
    assert json.loads((tmp_path / "eval.json").read_text())["protocol"]["candidates"] == "full catalog"


# ------------------------------------------------------------- metrics vs brute force
@pytest.mark.parametrize("seed", range(5))
def test_expected_metrics_equal_average_over_tie_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 7, 3
    scores = rng.integers(0, 3, size=(4, n)).astype(float)  # many ties
    targets = rng.integers(0, n, size=4)
    got = expected_rank_metrics(scores, targets, k=k)
    for b in range(4):
        rec, ndcg, rr = [], [], []
        for perm in itertools.permutations(range(n)):
            # rank by score desc, ties by this permutation
            order = sorted(range(n), key=lambda i: (-scores[b, i], perm[i]))
            pos = order.index(targets[b]) + 1
            rec.append(float(pos <= k))
            ndcg.append(1 / np.log2(pos + 1) if pos <= k else 0.0)
            rr.append(1 / pos)
        assert got[f"recall@{k}"][b] == pytest.approx(np.mean(rec))
        assert got[f"ndcg@{k}"][b] == pytest.approx(np.mean(ndcg))
        assert got["mrr"][b] == pytest.approx(np.mean(rr))
