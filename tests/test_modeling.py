"""The model library on clover-tiny: every head forward and backward, masking, save/load, Auto classes,
loading BERT and Video Swin weights, multiple choice with 2-10 candidates, encode-once answering."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM

from clover.configuration_clover import CloverConfig
from clover.modeling_clover import CloverForPretraining, CloverForVideoQA, CloverModel, QuestionGuidedPooling, VideoFeatures
from clover.video_swin import SwinTransformer3D, frame_changes, load_video_swin_checkpoint

ANSWERS = {0: "circle", 1: "square", 2: "star", 3: "red", 4: "blue"}


def tiny_config(**overrides) -> CloverConfig:
    settings = {"qa_heads": ["open", "mc", "count"], "id2label": ANSWERS}
    return CloverConfig.from_preset("clover-tiny", **{**settings, **overrides})


@pytest.fixture(scope="module")
def qa_model() -> CloverForVideoQA:
    torch.manual_seed(0)
    return CloverForVideoQA(tiny_config()).eval()


def random_inputs(batch: int = 2, length: int = 12, candidates: int | None = None, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, 8, 3, 112, 112, generator=generator)
    shape = (batch, length) if candidates is None else (batch, candidates, length)
    input_ids = torch.randint(5, 400, shape, generator=generator)
    input_ids[..., 0] = 2  # [CLS]
    attention_mask = torch.ones_like(input_ids)
    attention_mask[..., length - 3 :] = 0  # some padding
    return pixel_values, input_ids, attention_mask


def last_token_mask(input_ids: torch.Tensor, length: int = 12) -> torch.Tensor:
    """A `candidate_token_mask` for `random_inputs`' texts: the last real token of each is the candidate."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    mask[..., length - 4] = True
    return mask


# --- config ---------------------------------------------------------------------------------------


def test_presets_have_the_papers_grid():
    base, tiny = CloverConfig.from_preset("clover-base"), CloverConfig.from_preset("clover-tiny")
    assert base.video_depths == [2, 2, 18, 2] and base.patch_size == [2, 4, 4] and base.window_size == [8, 7, 7]
    assert base.video_embed_dim == 128 and base.video_width == 1024 and base.text_config.hidden_size == 768
    assert base.num_fusion_layers == 3 and base.num_frames == 8 and base.image_size == 224
    assert base.video_grid == tiny.video_grid == (4, 7, 7)


@pytest.mark.parametrize("head", ["open", "mc"])
def test_clover_tiny_trains_without_dropout(head):
    """clover-tiny has no dropout (it underfits the benchmark: docs/results.md), so a training-mode
    forward is deterministic; with BERT's hidden dropout (0.1) back, the same two forwards differ."""
    inputs = random_inputs(candidates=5 if head == "mc" else None)
    extra = {"candidate_token_mask": last_token_mask(inputs[1])} if head == "mc" else {}
    for hidden_dropout, same in [(None, True), (0.1, False)]:
        overrides = {} if hidden_dropout is None else {"text_config": {"hidden_dropout_prob": hidden_dropout}}
        torch.manual_seed(0)
        model = CloverForVideoQA(tiny_config(**overrides)).train()
        first, second = (model(*inputs, head=head, **extra).logits for _ in range(2))
        assert torch.equal(first, second) == same


def test_config_rejects_unknown_keys_with_a_hint():
    with pytest.raises(TypeError, match="'num_frame' \\(did you mean 'num_frames'\\?\\)"):
        CloverConfig.from_preset("clover-tiny", num_frame=4)
    with pytest.raises(ValueError, match="unknown preset"):
        CloverConfig.from_preset("clover-huge")
    with pytest.raises(ValueError, match="unknown qa_heads"):
        CloverConfig.from_preset("clover-tiny", qa_heads=["yesno"])


def test_config_round_trip(tmp_path):
    config = tiny_config(text_config={"num_hidden_layers": 3})
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, CloverConfig)
    assert loaded.text_config.num_hidden_layers == 3 and loaded.id2label == ANSWERS
    assert loaded.video_depths == config.video_depths and loaded.qa_heads == ["open", "mc", "count"]


# --- forward and backward for every head -----------------------------------------------------------


@pytest.mark.parametrize("head", ["open", "mc", "count"])
def test_each_head_forward_backward(head):
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config())
    pixel_values, input_ids, attention_mask = random_inputs(candidates=5 if head == "mc" else None)
    labels = {"open": torch.tensor([1, 3]), "mc": torch.tensor([0, 4]), "count": torch.tensor([2.0, 0.0])}[head]
    extra = {"candidate_token_mask": last_token_mask(input_ids)} if head == "mc" else {}
    out = model(pixel_values, input_ids, attention_mask, labels=labels, head=head, **extra)
    expected = {"open": (2, 5), "mc": (2, 5), "count": (2,)}[head]
    assert out.logits.shape == expected
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    heads = [head, "mc_match"] if head == "mc" else [head]  # clover-tiny scores candidates with concat+match
    grads = [p.grad for name in heads for p in model.heads[name].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert model.clover.video_encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_loss_only_with_labels(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs()
    out = qa_model(pixel_values, input_ids, attention_mask, head="open")
    assert out.loss is None and out.logits.shape == (2, 5)


def test_open_loss_matches_cross_entropy_and_ignores_out_of_vocabulary(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs()
    out = qa_model(pixel_values, input_ids, attention_mask, head="open", labels=torch.tensor([2, -100]))
    by_hand = -torch.log_softmax(out.logits[0], dim=-1)[2]
    assert torch.allclose(out.loss, by_hand, atol=1e-6)


def test_wrong_input_shapes_give_clear_errors(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs()
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 8, 3, 112, 112\)"):
        qa_model(pixel_values[:, :4], input_ids, attention_mask, head="open")
    with pytest.raises(ValueError, match="needs input_ids of shape \\(B, K, L\\)"):
        qa_model(pixel_values, input_ids, attention_mask, head="mc")
    open_only = CloverForVideoQA(tiny_config(qa_heads=["open"]))
    with pytest.raises(ValueError, match="no 'count' head"):
        open_only(pixel_values, input_ids, attention_mask, head="count")


def test_masked_video_forward_changes_only_through_masked_cells():
    torch.manual_seed(0)
    model = CloverModel(tiny_config()).eval()
    pixel_values, _, _ = random_inputs(batch=1)
    mask = torch.zeros(1, 49, dtype=torch.bool)
    with torch.no_grad():
        plain = model.encode_video(pixel_values).tokens
        unmasked = model.encode_video(pixel_values, mask).tokens
        mask[0, :10] = True
        masked = model.encode_video(pixel_values, mask).tokens
    assert masked.shape == plain.shape == (1, 4, 7, 7, 128)
    assert torch.equal(plain, unmasked)
    assert not torch.allclose(plain, masked)
    # The masked input is the mask token itself: changing the pixels under masked cells changes nothing.
    changed = pixel_values.clone()
    changed[..., :16, :16] = 5.0  # the top-left cell of the 7x7 grid (16x16 pixels at 112 px)
    mask = torch.zeros(1, 49, dtype=torch.bool)
    mask[0, 0] = True
    with torch.no_grad():
        assert torch.allclose(model.encode_video(changed, mask).tokens, model.encode_video(pixel_values, mask).tokens)
    with pytest.raises(ValueError, match="video_mask must have shape \\(1, 49\\)"):
        model.encode_video(pixel_values, torch.zeros(1, 50, dtype=torch.bool))


# --- multiple choice, encode once --------------------------------------------------------------------


@pytest.mark.parametrize("num_candidates", [2, 5, 10])
def test_multiple_choice_candidate_counts(qa_model, num_candidates):
    pixel_values, input_ids, attention_mask = random_inputs(candidates=num_candidates)
    out = qa_model(
        pixel_values, input_ids, attention_mask, head="mc", labels=torch.tensor([0, num_candidates - 1]),
        candidate_token_mask=last_token_mask(input_ids),
    )  # fmt: skip
    assert out.logits.shape == (2, num_candidates) and torch.isfinite(out.loss)
    texts = [[f"c{i}" for i in range(num_candidates)]] * 2
    ranked = qa_model.top_answers(out.logits, "mc", k=num_candidates, candidates=texts)
    assert [len(r) for r in ranked] == [num_candidates] * 2
    assert abs(sum(p for _, p in ranked[0]) - 1) < 1e-5


def test_padded_candidates_are_never_chosen(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs(candidates=4)
    candidate_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    tokens = last_token_mask(input_ids)
    out = qa_model(pixel_values, input_ids, attention_mask, head="mc", candidate_mask=candidate_mask, candidate_token_mask=tokens)
    probs = out.logits.softmax(-1)
    assert torch.all(probs[0, 2:] == 0) and torch.allclose(probs.sum(-1), torch.ones(2))
    with torch.no_grad():  # the padded candidates' text does not matter
        input_ids[0, 2:] = 7
        again = qa_model(pixel_values, input_ids, attention_mask, head="mc", candidate_mask=candidate_mask, candidate_token_mask=tokens)
    assert torch.allclose(again.logits[0, :2], out.logits[0, :2], atol=1e-5)


def test_match_term_adds_the_bilinear_score_of_the_candidate_tokens(qa_model):
    """concat+match = the paper's concat score + <W_a answer, W_c mean(candidate token states)> / sqrt(d)."""
    pixel_values, input_ids, attention_mask = random_inputs(candidates=3)
    tokens = torch.zeros_like(input_ids, dtype=torch.bool)
    tokens[..., 6:8] = True  # a two-token candidate
    with torch.no_grad():
        out = qa_model(pixel_values, input_ids, attention_mask, head="mc", candidate_token_mask=tokens)
        clover, match = qa_model.clover, qa_model.heads["mc_match"]
        video = clover.encode_video(pixel_values).tokens.repeat_interleave(3, dim=0)  # (6, 4, 7, 7, C)
        ids, mask = input_ids.flatten(0, 1), attention_mask.flatten(0, 1)  # (6, L)
        states = clover.encode_text(ids, mask)  # (6, L, D)
        features = qa_model.answer_features(clover.fuse(video, states, mask), video)  # (6, D)
        concat = qa_model.heads["mc"](features)[:, 0]  # (6,)
        candidate = states[:, 6:8].mean(1)  # (6, D)
        bilinear = (match.answer_proj(features) * match.candidate_proj(candidate)).sum(-1) / 64**0.5  # (6,)
    assert torch.allclose(out.logits, (concat + bilinear).view(2, 3), atol=1e-5)
    assert bilinear.abs().max() > 1e-4  # the term is there, not a zero
    with pytest.raises(ValueError, match='mc_scoring="concat\+match", which needs candidate_token_mask'):
        qa_model(pixel_values, input_ids, attention_mask, head="mc")
    paper = CloverForVideoQA(tiny_config(mc_scoring="concat")).eval()
    assert "mc_match" not in paper.heads and paper.answer_heads == ["open", "mc", "count"]
    assert paper(pixel_values, input_ids, attention_mask, head="mc").logits.shape == (2, 3)  # no token mask needed


def test_encode_once_answers_like_full_forwards(qa_model):
    pixel_values, _, _ = random_inputs(batch=1)
    _, questions, masks = random_inputs(batch=3, seed=1)
    with torch.no_grad():
        features = qa_model.encode_video(pixel_values)
        reused = qa_model(input_ids=questions, attention_mask=masks, video_features=features, head="open").logits
        separate = torch.cat(
            [qa_model(pixel_values, questions[i : i + 1], masks[i : i + 1], head="open").logits for i in range(3)]
        )
    assert torch.allclose(reused, separate, atol=1e-5)
    def names(logits):
        return [[name for name, _ in row] for row in qa_model.top_answers(logits, "open", k=3)]

    assert names(reused) == names(separate)


def test_top_answers_open_and_count(qa_model):
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0, 0.5]])
    ranked = qa_model.top_answers(logits, "open", k=3)[0]
    assert [name for name, _ in ranked] == ["square", "star", "blue"]
    assert ranked[0][1] == pytest.approx(torch.softmax(logits, -1)[0, 1].item())
    assert qa_model.top_answers(torch.tensor([2.6, -1.0, 42.0]), "count") == [[("3", 1.0)], [("0", 1.0)], [("10", 1.0)]]


def test_fusion_cls_attention_is_a_distribution_over_video_tokens(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs()
    out = qa_model(pixel_values, input_ids, attention_mask, head="open", output_cls_attention=True)
    assert out.cls_attention.shape == (2, 4 * 7 * 7)
    assert torch.all(out.cls_attention >= 0) and torch.all(out.cls_attention.sum(-1) <= 1 + 1e-5)


def test_fusion_output_layers_gives_every_layers_states_and_text_attention(qa_model):
    """`output_layers` returns each fusion layer's output (the last one is `last_hidden_state`) and
    each layer's and head's attention of every text token over the video tokens ([CLS]'s head mean in
    the last layer is `cls_attention`); without it the fields are empty and the fused states the same."""
    pixel_values, input_ids, attention_mask = random_inputs()
    clover = qa_model.clover
    with torch.no_grad():
        video = clover.encode_video(pixel_values).tokens
        states = clover.encode_text(input_ids, attention_mask)
        plain = clover.fuse(video, states, attention_mask, output_cls_attention=True)
        layered = clover.fuse(video, states, attention_mask, output_cls_attention=True, output_layers=True)
    layers, heads = qa_model.config.num_fusion_layers, qa_model.config.text_config.num_attention_heads
    assert plain.hidden_states is None and plain.text_attentions is None
    assert len(layered.hidden_states) == layers == 2
    assert torch.equal(layered.hidden_states[-1], plain.last_hidden_state)
    assert not torch.allclose(layered.hidden_states[0], layered.hidden_states[1])
    assert layered.text_attentions.shape == (2, layers, heads, 12, 4 * 7 * 7)
    assert torch.allclose(layered.text_attentions[:, -1, :, 0].mean(1), plain.cls_attention, atol=1e-6)
    assert torch.all(layered.text_attentions.sum(-1) < 1)  # the rest of each token's attention is on the text
    # The first layer's attention, by hand from the fusion embeddings: softmax(q k^T / sqrt(d)) over the
    # video tokens and the question's real tokens, each text token as the query.
    with torch.no_grad():
        self_attention = clover.fusion.layer[0].attention.self
        hidden = clover.fusion.embeddings(video, states)  # (2, 196 + 12, D)
        head_size = hidden.shape[-1] // heads
        query = self_attention.query(hidden[:, 196:]).view(2, 12, heads, head_size)  # (2, L, heads, hd)
        key = self_attention.key(hidden).view(2, -1, heads, head_size)  # (2, N, heads, hd)
        scores = torch.einsum("blhd,bnhd->bhln", query, key) / head_size**0.5  # (2, heads, L, N)
        keep = torch.cat([torch.ones(2, 196), attention_mask.float()], dim=1).bool()[:, None, None]  # (2, 1, 1, N)
        expected = scores.masked_fill(~keep, float("-inf")).softmax(-1)[..., :196]
    assert torch.allclose(layered.text_attentions[:, 0], expected, atol=1e-5)


# --- save, load, Auto classes --------------------------------------------------------------------------


def test_save_and_load_give_identical_outputs(qa_model, tmp_path):
    qa_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")), "weights must be saved as safetensors, never pickled"
    loaded = CloverForVideoQA.from_pretrained(tmp_path).eval()
    pixel_values, input_ids, attention_mask = random_inputs()
    saved, restored = qa_model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[key], restored[key]) for key in saved)
    assert loaded.config.qa_pooling == qa_model.config.qa_pooling == "cls+max"
    with torch.no_grad():
        for head, ids in (("open", input_ids), ("count", input_ids)):
            # Same weights at other memory alignments (safetensors): the count head's 1-output matmul can
            # take another CPU kernel and round differently (~1e-8).
            expected = qa_model(pixel_values, ids, attention_mask, head=head).logits
            assert torch.allclose(expected, loaded(pixel_values, ids, attention_mask, head=head).logits, rtol=0, atol=1e-6)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, CloverModel)
    with torch.no_grad():
        assert torch.equal(base.get_video_features(pixel_values), qa_model.clover.get_video_features(pixel_values))


def test_pretraining_checkpoint_starts_a_qa_model(tmp_path):
    torch.manual_seed(0)
    pretrained = CloverForPretraining(tiny_config())
    assert pretrained.mlm_head.predictions.decoder.weight is pretrained.clover.text_encoder.embeddings.word_embeddings.weight
    pretrained.save_pretrained(tmp_path)
    qa = CloverForVideoQA.from_pretrained(tmp_path)
    for name, tensor in pretrained.clover.state_dict().items():
        assert torch.equal(tensor, qa.clover.state_dict()[name]), name


def test_retrieval_embeddings_are_normalised(qa_model):
    pixel_values, input_ids, attention_mask = random_inputs()
    with torch.no_grad():
        out = qa_model.clover(pixel_values, input_ids, attention_mask)
    assert out.video_embeds.shape == out.text_embeds.shape == (2, 128)
    assert torch.allclose(out.video_embeds.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert out.logits_per_text.shape == (2, 2)


def test_alignment_head_norms():
    """"layernorm" is the paper's heads; "batchnorm" (clover-tiny) ends all four alignment heads in BatchNorm,
    which in training makes every embedding dimension zero-mean over the batch, so the clips' embeddings
    cannot all be the same; it needs 2 pairs per batch to train, and says so."""
    paper = CloverModel(tiny_config(alignment_head_norm="layernorm"))
    assert isinstance(paper.video_proj[-1], torch.nn.LayerNorm) and isinstance(paper.text_proj[-1], torch.nn.Linear)
    assert CloverConfig.from_preset("clover-base").alignment_head_norm == "layernorm"
    torch.manual_seed(0)
    model = CloverForPretraining(tiny_config()).train()
    heads = [model.clover.video_proj, model.clover.text_proj, model.clover.fused_video_proj, model.clover.fused_text_proj]
    assert all(isinstance(head[-1], torch.nn.BatchNorm1d) for head in heads)
    pixel_values, input_ids, attention_mask = random_inputs(batch=4)
    video = model.clover.video_embedding(model.clover.encode_video(pixel_values).tokens, normalize=False)  # (4, E)
    assert torch.allclose(video.mean(0), torch.zeros(video.shape[1]), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 pairs per batch"):
        model(pixel_values[:1], input_ids[:1], attention_mask[:1])
    with pytest.raises(ValueError, match="alignment_head_norm"):
        tiny_config(alignment_head_norm="groupnorm")


def test_retrieval_text_pooling_reads_the_cls_state_or_the_mean_of_the_kept_tokens():
    """"cls" (the paper's default) embeds the [CLS] state; "mean" the average of the states the attention
    mask keeps, so padding changes nothing: a caption padded to 12 tokens embeds as it does alone. The
    setting saves with the config."""
    torch.manual_seed(0)
    assert CloverConfig.from_preset("clover-tiny").retrieval_text_pooling == "cls"
    model = CloverModel(tiny_config(retrieval_text_pooling="mean")).eval()
    input_ids = torch.randint(5, 100, (2, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # caption 2 has 7 tokens and 5 of padding
    with torch.no_grad():
        states = model.encode_text(input_ids, attention_mask)  # (2, 12, D)
        torch.testing.assert_close(model.pool_text(states, attention_mask)[1], states[1, :7].mean(0))
        torch.testing.assert_close(model.pool_text(states, attention_mask, "cls"), states[:, 0])
        alone = model.get_text_features(input_ids[1:, :7], attention_mask[1:, :7])  # (1, E)
        padded = model.get_text_features(input_ids, attention_mask)[1:]  # (1, E)
        torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-5)
        expected = F.normalize(model.text_proj(states[:, 0]), dim=-1)
        model.config.retrieval_text_pooling = "cls"
        torch.testing.assert_close(model.get_text_features(input_ids, attention_mask), expected)
    assert CloverConfig.from_dict(tiny_config(retrieval_text_pooling="mean").to_dict()).retrieval_text_pooling == "mean"
    with pytest.raises(ValueError, match="retrieval_text_pooling"):
        tiny_config(retrieval_text_pooling="max")


def test_recompute_embedding_statistics_sets_the_exact_statistics_of_the_pairs():
    """The retrieval heads' BatchNorm statistics become the mean and unbiased variance of their inputs
    over the pairs, however the pairs are batched (a batch of one included); afterwards the evaluation
    embeddings before normalisation average to the BatchNorm's bias over those pairs, where the running
    averages of training left them offset. Nothing else changes, and the training mode is restored."""
    torch.manual_seed(0)
    model = CloverModel(tiny_config())
    pixel_values, input_ids, attention_mask = random_inputs(batch=5)
    batches = [
        {"pixel_values": pixel_values[s], "input_ids": input_ids[s], "attention_mask": attention_mask[s]}
        for s in (slice(0, 2), slice(2, 3), slice(3, 5))
    ]
    model.train()
    for batch in batches[::2]:  # training moves the running averages away from 0 / 1
        model.get_video_features(batch["pixel_values"]), model.get_text_features(batch["input_ids"], batch["attention_mask"])
    parameters = {name: value.clone() for name, value in model.named_parameters()}
    with torch.no_grad():
        video_inputs = model.video_proj[:-1](model.encode_video(pixel_values).tokens.flatten(1, 3).mean(1))  # (5, E)
        text_inputs = model.text_proj[:-1](model.encode_text(input_ids, attention_mask)[:, 0])  # (5, E)
        offset = model.eval().get_video_features(pixel_values, normalize=False).mean(0) - model.video_proj[-1].bias  # (E,)
    assert offset.abs().max() > 0.1  # the running averages' offset
    model.train()

    assert model.recompute_embedding_statistics(iter(batches)) == 5
    assert model.training
    for norm, inputs in ((model.video_proj[-1], video_inputs), (model.text_proj[-1], text_inputs)):
        torch.testing.assert_close(norm.running_mean, inputs.mean(0), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(norm.running_var, inputs.var(0), rtol=1e-4, atol=1e-7)
    for name, value in model.named_parameters():
        assert torch.equal(value, parameters[name]), name
    model.eval()
    with torch.no_grad():
        video = model.get_video_features(pixel_values, normalize=False)  # (5, E)
    torch.testing.assert_close(video.mean(0), model.video_proj[-1].bias.detach(), rtol=0, atol=1e-4)

    paper = CloverModel(tiny_config(alignment_head_norm="layernorm"))
    assert paper.recompute_embedding_statistics(iter(batches)) == 0


def test_set_embedding_statistics_from_the_heads_inputs():
    """From pooled features (what `recompute_embedding_statistics` gathers from clips and captions, or
    what `finetune.fit_retrieval_heads` keeps): each head's BatchNorm holds the mean and unbiased
    variance of what its layers before the norm make of all the pairs, whatever the running averages
    were; the evaluation mode stays. Fewer than 2 pairs change nothing."""
    torch.manual_seed(0)
    model = CloverModel(tiny_config()).eval()
    model.video_proj[-1].running_mean.fill_(5.0)
    video = torch.randn(20, model.config.video_width)  # (20, Cv)
    text = torch.randn(20, model.config.text_config.hidden_size) * 3 + 1  # (20, D)
    assert model.set_embedding_statistics(video[:1], text[:1]) == 0
    assert torch.equal(model.video_proj[-1].running_mean, torch.full_like(model.video_proj[-1].running_mean, 5.0))
    assert model.set_embedding_statistics(video, text) == 20
    with torch.no_grad():
        inputs = {"video": model.video_proj[:-1](video), "text": model.text_proj[:-1](text)}  # (20, E) each
    for norm, values in ((model.video_proj[-1], inputs["video"]), (model.text_proj[-1], inputs["text"])):
        torch.testing.assert_close(norm.running_mean, values.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var, values.var(0), rtol=1e-5, atol=1e-6)
    assert not model.training


def test_qa_pooling_adds_the_maximum_of_the_fused_video_tokens():
    """"cls" (the paper, clover-base) feeds the heads the fused [CLS]; "cls+max" (clover-tiny) adds the
    element-wise maximum over the fused video tokens, for every head and for one clip broadcast over
    several questions; a checkpoint saved before the option existed (no key) reads as "cls"."""
    assert CloverConfig.from_preset("clover-base").qa_pooling == "cls" and tiny_config().qa_pooling == "cls+max"
    assert CloverConfig.from_dict({k: v for k, v in tiny_config().to_dict().items() if k != "qa_pooling"}).qa_pooling == "cls"
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config()).eval()
    pixel_values, input_ids, attention_mask = random_inputs(batch=3)
    video = model.encode_video(pixel_values[:1])  # one clip, three questions
    tokens = video.tokens.expand(3, *video.tokens.shape[1:])  # (3, t, h, w, Cv)
    fused = model.clover.fuse(tokens, model.clover.encode_text(input_ids, attention_mask), attention_mask)
    num_video = tokens.shape[1] * tokens.shape[2] * tokens.shape[3]
    by_hand = fused.pooled + torch.stack([fused.last_hidden_state[b, :num_video].max(dim=0).values for b in range(3)])
    for head in ("open", "count"):
        expected = model.heads[head](by_hand)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, video_features=video, head=head).logits
        assert torch.allclose(logits, expected.squeeze(-1) if head == "count" else expected, atol=1e-5)
    model.config.qa_pooling = "cls"
    logits = model(input_ids=input_ids, attention_mask=attention_mask, video_features=video, head="open").logits
    assert torch.allclose(logits, model.heads["open"](fused.pooled), atol=1e-5)
    with pytest.raises(ValueError, match="qa_pooling must be one of 'cls', 'cls\\+max', 'cls\\+max\\+regions', 'cls\\+max\\+query', 'cls\\+max\\+query\\+time', got 'mean'"):
        tiny_config(qa_pooling="mean")


def _identity_pooling(weight_on_marker: float = 50.0, sharpness: float = 20.0, num_heads: int = 1) -> QuestionGuidedPooling:
    """A 4-wide QuestionGuidedPooling (one head unless told) whose word score reads channel 3 of a word's
    state, whose query is `sharpness` x each word's state, whose key, value and output are the identity
    and whose `where` is zero."""
    pooling = QuestionGuidedPooling(video_width=4, hidden_size=4, attention_size=4, num_heads=num_heads)
    with torch.no_grad():
        for layer in (pooling.word_score, pooling.query, pooling.key, pooling.value, pooling.output, pooling.where):
            layer.bias.zero_()
        pooling.word_score.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, weight_on_marker]]))
        pooling.query.weight.copy_(sharpness * torch.eye(4))
        for layer in (pooling.key, pooling.value, pooling.output):
            layer.weight.copy_(torch.eye(4))
        pooling.where.weight.zero_()
    return pooling


def test_question_guided_pooling_reads_the_token_the_named_word_matches_by_hand():
    """The word with the marker channel carries the question; its state [1, 0, 0, 1] matches the video
    token whose layer-normed features point along channel 0, and the output is 10 x that token's normed
    features: [1, -1, 0, 0] normalises to [sqrt 2, -sqrt 2, 0, 0]. Padding is never a word, however high
    it scores."""
    pooling = _identity_pooling().eval()
    words = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 100.0]]])  # (1, L=4, 4)
    mask = torch.tensor([[1, 1, 1, 0]])  # the last word is padding
    video = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]).view(1, 1, 1, 3, 4)  # (1, t, h, w=3, Cv)
    root2 = 2**0.5
    out = pooling(words, mask, video)
    assert pooling.output_scale == 10.0
    assert torch.allclose(out, 10 * torch.tensor([[root2, -root2, 0.0, 0.0]]), atol=1e-2)
    assert torch.allclose(pooling.attention(words, mask, video), torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-3)
    named_other = words.clone()
    named_other[0, 1] = torch.tensor([-1.0, 0.0, 0.0, 1.0])  # now it points at the second token
    assert torch.allclose(pooling(named_other, mask, video), 10 * torch.tensor([[-root2, root2, 0.0, 0.0]]), atol=1e-2)
    assert not torch.allclose(pooling(words, torch.ones_like(mask), video), out, atol=1e-2)  # the padding, unmasked, takes over


def test_question_guided_pooling_says_which_cell_of_the_frame_it_reads():
    """`where` sees the attention summed over time in a 3x3 split of the frame, 1 per cell when uniform:
    a question that reads the top-right token of a 3x3 grid in both frames (half its attention in each)
    puts 9 x 1 - 1 = 8 in cell 2 and -1 in the others. With the values zero, the output is `where` of that."""
    pooling = _identity_pooling().eval()
    with torch.no_grad():
        pooling.value.weight.zero_()
        pooling.where.weight.copy_(torch.eye(4, 9))  # output channel i = cell i
    video = torch.zeros(1, 2, 3, 3, 4)  # (1, t=2, h=3, w=3, Cv)
    video[..., :] = torch.tensor([0.0, 1.0, 0.0, -1.0])  # every token normalises to [0, sqrt 2, 0, -sqrt 2]
    video[:, :, 0, 2] = torch.tensor([1.0, -1.0, 0.0, 0.0])  # but the top-right one, in both frames
    words = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])  # (1, L=1, 4): matches the top-right token
    attention = pooling.attention(words, torch.ones(1, 1), video)  # (1, 18)
    assert torch.allclose(attention.view(2, 3, 3)[:, 0, 2], torch.tensor([0.5, 0.5]), atol=1e-3)
    assert torch.allclose(pooling(words, torch.ones(1, 1), video), torch.tensor([[-1.0, -1.0, 8.0, -1.0]]), atol=1e-2)


def test_question_guided_pooling_heads_read_apart_and_the_attention_averages_them():
    """Two heads of two channels. Query and key swap channels 1 and 2, so head 0 matches word channel 0
    with token channel 0 and head 1 word channel 1 with token channel 1: the word [1, 1, 0, 0] reads token
    0 in head 0 and token 1 in head 1. `attention` is their mean, and the read is token 0's values in
    the first half and token 1's in the second (x10)."""
    pooling = _identity_pooling(num_heads=2).eval()
    swap = torch.eye(4)[[0, 2, 1, 3]]
    with torch.no_grad():
        pooling.query.weight.copy_(20 * swap)
        pooling.key.weight.copy_(swap)
    video = torch.tensor([[3.0, 0.0, -1.0, -2.0], [0.0, 3.0, -1.0, -2.0]]).view(1, 1, 1, 2, 4)  # (1, t, h, w=2, Cv)
    words = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    normed = torch.nn.functional.layer_norm(video.view(2, 4), (4,))
    assert torch.allclose(pooling.attention(words, torch.ones(1, 1), video), torch.tensor([[0.5, 0.5]]), atol=1e-3)
    expected = 10 * torch.cat([normed[0, :2], normed[1, 2:]])
    assert torch.allclose(pooling(words, torch.ones(1, 1), video), expected[None], atol=1e-2)
    with pytest.raises(ValueError, match="attention_size 6 is not a multiple of num_heads 4"):
        QuestionGuidedPooling(video_width=4, hidden_size=4, attention_size=6)


def _time_pooling(time_slots: int = 2) -> QuestionGuidedPooling:
    """`_identity_pooling` with `time_slots` (its time terms zero, as they start) and a zero query: every
    word then attends evenly over the video tokens."""
    pooling = _identity_pooling().eval()
    timed = QuestionGuidedPooling(video_width=4, hidden_size=4, attention_size=4, num_heads=1, time_slots=time_slots).eval()
    timed.load_state_dict({**timed.state_dict(), **pooling.state_dict()})
    with torch.no_grad():
        timed.query.weight.zero_()
        for layer in (timed.time_read, timed.time_where):
            layer.weight.zero_()
            layer.bias.zero_()
    return timed


def test_question_guided_pooling_over_time_keeps_the_order_the_summed_read_loses():
    """Two time slots of two tokens, attended evenly (0.25 each). The summed read is the same whichever
    slot comes first; `time_read` sees each slot's read apart: set to pass slot 0's read on (and `output`
    to zero), the output is 10 x 0.25 x (slot 0's two normed tokens), and swapping the slots changes it."""
    pooling = _time_pooling()
    tokens = torch.tensor([[[1.0, -1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0]], [[0.0, 0.0, 1.0, -1.0], [-1.0, 0.0, 0.0, 1.0]]])  # (t=2, w=2, Cv)
    video, swapped = tokens.view(1, 2, 1, 2, 4), tokens.flip(0).view(1, 2, 1, 2, 4)  # (1, t, h=1, w, Cv)
    words, mask = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]), torch.ones(1, 1)
    normed = torch.nn.functional.layer_norm(tokens, (4,))  # (t, w, Cv)
    # Its time terms at zero, the pooling is the summed one: the same output for both orders.
    assert torch.allclose(pooling(words, mask, video), 10 * 0.25 * normed.sum((0, 1))[None], atol=1e-5)
    assert torch.allclose(pooling(words, mask, video), pooling(words, mask, swapped), atol=1e-5)
    with torch.no_grad():
        pooling.output.weight.zero_()
        pooling.time_read.weight.copy_(torch.cat([torch.eye(4), torch.zeros(4, 4)], dim=1))  # slot 0's read
    assert torch.allclose(pooling(words, mask, video), 10 * 0.25 * normed[0].sum(0)[None], atol=1e-5)
    assert torch.allclose(pooling(words, mask, swapped), 10 * 0.25 * normed[1].sum(0)[None], atol=1e-5)
    with pytest.raises(ValueError, match="video tokens have 1 time slots; this pooling was built for 2"):
        pooling(words, mask, video[:, :1])


def test_question_guided_pooling_over_time_says_where_the_object_is_in_each_slot():
    """An object top-right in slot 0 and bottom-left in slot 1 of a 3x3 grid, the word matching it: half
    the attention on each. `time_where` sees each slot's cells, 1 = uniform over the clip: 0.5 x 9 x 2 - 1 = 8
    in slot 0's cell 2 and slot 1's cell 6, -1 elsewhere (the summed `where` would see 3.5 in both cells,
    for either direction of the move). Read out as [slot 0 cell 2, slot 1 cell 2, slot 0 cell 6, slot 1
    cell 6], the move and its reverse give [8, -1, -1, 8] and [-1, 8, 8, -1]."""
    pooling = _time_pooling()
    with torch.no_grad():
        pooling.value.weight.zero_()
        pooling.query.weight.copy_(20 * torch.eye(4))
        pooling.time_where.weight.zero_()
        for channel, (slot, cell) in enumerate([(0, 2), (1, 2), (0, 6), (1, 6)]):
            pooling.time_where.weight[channel, slot * 9 + cell] = 1.0
    video = torch.zeros(1, 2, 3, 3, 4)  # (1, t=2, h=3, w=3, Cv)
    video[..., :] = torch.tensor([0.0, 1.0, 0.0, -1.0])  # background
    moving_down_left = video.clone()
    moving_down_left[0, 0, 0, 2] = moving_down_left[0, 1, 2, 0] = torch.tensor([1.0, -1.0, 0.0, 0.0])
    moving_up_right = moving_down_left.flip(1)
    words, mask = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]]), torch.ones(1, 1)
    attention = pooling.attention(words, mask, moving_down_left).view(2, 3, 3)
    assert torch.allclose(attention[0, 0, 2], torch.tensor(0.5), atol=1e-3) and torch.allclose(attention[1, 2, 0], torch.tensor(0.5), atol=1e-3)
    assert torch.allclose(pooling(words, mask, moving_down_left), torch.tensor([[8.0, -1.0, -1.0, 8.0]]), atol=1e-2)
    assert torch.allclose(pooling(words, mask, moving_up_right), torch.tensor([[-1.0, 8.0, 8.0, -1.0]]), atol=1e-2)


def test_qa_pooling_query_time_starts_as_the_summed_pooling_and_upgrades_a_checkpoint(tmp_path):
    """"cls+max+query+time": the pooling with one time slot per slot of the video grid (4), its time
    terms starting at zero, so a model answers as "cls+max+query" with the same weights until it
    learns them; it round-trips, and a "cls+max+query" checkpoint loaded with it keeps its answers."""
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(qa_pooling="cls+max+query")).eval()
    model.save_pretrained(tmp_path / "query")
    timed = CloverForVideoQA.from_pretrained(tmp_path / "query", qa_pooling="cls+max+query+time").eval()
    pooling = timed.heads["question_pooling"]
    assert pooling.time_slots == timed.config.video_grid[0] == 4
    assert pooling.time_read.weight.shape == (128, 4 * 64) and pooling.time_where.weight.shape == (128, 4 * 9)
    assert all(not layer.weight.any() and not layer.bias.any() for layer in (pooling.time_read, pooling.time_where))
    pixel_values, input_ids, attention_mask = random_inputs()
    with torch.no_grad():
        before = model(pixel_values, input_ids, attention_mask, head="count").logits
        assert torch.allclose(timed(pixel_values, input_ids, attention_mask, head="count").logits, before, atol=1e-5)
        pooling.time_read.weight.normal_()
        changed = timed(pixel_values, input_ids, attention_mask, head="count").logits
        assert not torch.allclose(changed, before, atol=1e-3)
    timed.save_pretrained(tmp_path / "time")
    loaded = CloverForVideoQA.from_pretrained(tmp_path / "time").eval()
    assert loaded.config.qa_pooling == "cls+max+query+time"
    saved = timed.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in loaded.state_dict().items())
    with torch.no_grad():  # the same weights; a kernel may sum in another order (one ulp seen on a CPU)
        assert torch.allclose(loaded(pixel_values, input_ids, attention_mask, head="count").logits, changed, atol=1e-6)


def test_qa_pooling_query_adds_question_guided_pooling_to_cls_max():
    """"cls+max+query" adds `QuestionGuidedPooling` of the text encoder's states over the video encoder's
    tokens to "cls+max", for every head, one clip broadcast over several questions; its layers start from
    PyTorch's init (not BERT's std 0.02), it sits among the heads, and it is saved and loaded."""
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(qa_pooling="cls+max+query")).eval()
    pooling = model.heads["question_pooling"]
    assert model.answer_heads == ["open", "mc", "count"]
    assert pooling.query.weight.std() > 0.04  # Kaiming-uniform of 128 inputs: std 0.051
    assert "question_pooling" not in CloverForVideoQA(tiny_config()).heads
    pixel_values, input_ids, attention_mask = random_inputs(batch=3)
    video = model.encode_video(pixel_values[:1])  # one clip, three questions
    tokens = video.tokens.expand(3, *video.tokens.shape[1:])  # (3, t, h, w, Cv)
    states = model.clover.encode_text(input_ids, attention_mask)
    fused = model.clover.fuse(tokens, states, attention_mask)
    num_video = tokens.shape[1] * tokens.shape[2] * tokens.shape[3]
    cls_max = fused.pooled + fused.last_hidden_state[:, :num_video].amax(dim=1)
    by_hand = cls_max + pooling(states, attention_mask, tokens)
    for head in ("open", "count"):
        expected = model.heads[head](by_hand)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, video_features=video, head=head).logits
        assert torch.allclose(logits, expected.squeeze(-1) if head == "count" else expected, atol=1e-5)
    assert not torch.allclose(by_hand, cls_max, atol=1e-3)
    _, mc_ids, mc_mask = random_inputs(batch=2, candidates=3)
    assert model(pixel_values[:2], mc_ids, mc_mask, head="mc", candidate_token_mask=mc_mask).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="reads the question: pass text_states and attention_mask"):
        model.answer_features(fused, tokens)


def test_question_attention_is_the_pooling_attention_and_its_candidates_mean():
    """`output_question_attention`: the question-guided pooling's attention over the video tokens (B, n),
    for multiple choice the mean over each question's candidate texts; None for a model without the
    pooling, or when not asked for."""
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(qa_pooling="cls+max+query")).eval()
    pooling = model.heads["question_pooling"]
    pixel_values, input_ids, attention_mask = random_inputs(batch=2)
    with torch.no_grad():
        tokens = model.encode_video(pixel_values).tokens  # (2, t, h, w, Cv)
        out = model(pixel_values, input_ids, attention_mask, head="open", output_question_attention=True)
        by_hand = pooling.attention(model.clover.encode_text(input_ids, attention_mask), attention_mask, tokens)
        assert out.question_attention.shape == (2, 4 * 7 * 7)
        assert torch.allclose(out.question_attention, by_hand, atol=1e-6)
        assert torch.allclose(out.question_attention.sum(-1), torch.ones(2), atol=1e-5)
        # One clip's features broadcast over several questions.
        one_clip = VideoFeatures(tokens=tokens[:1])
        broadcast = model(input_ids=input_ids, attention_mask=attention_mask, video_features=one_clip, head="open", output_question_attention=True)
        expected = pooling.attention(model.clover.encode_text(input_ids, attention_mask), attention_mask, tokens[:1].expand(2, -1, -1, -1, -1))
        assert torch.allclose(broadcast.question_attention, expected, atol=1e-6)
        _, mc_ids, mc_mask = random_inputs(batch=2, candidates=3)
        mc = model(pixel_values, mc_ids, mc_mask, head="mc", candidate_token_mask=mc_mask, output_question_attention=True)
        states = model.clover.encode_text(mc_ids.flatten(0, 1), mc_mask.flatten(0, 1))  # (6, L, D)
        per_pair = pooling.attention(states, mc_mask.flatten(0, 1), tokens.repeat_interleave(3, dim=0))  # (6, n)
        assert torch.allclose(mc.question_attention, per_pair.view(2, 3, -1).mean(1), atol=1e-6)
        assert model(pixel_values, input_ids, attention_mask, head="open").question_attention is None
        plain = CloverForVideoQA(tiny_config()).eval()
        assert plain(pixel_values, input_ids, attention_mask, head="open", output_question_attention=True).question_attention is None


def test_qa_pooling_query_round_trips_and_starts_new_on_an_older_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(qa_pooling="cls+max+query")).eval()
    pixel_values, input_ids, attention_mask = random_inputs()
    model.save_pretrained(tmp_path / "query")
    loaded = CloverForVideoQA.from_pretrained(tmp_path / "query").eval()
    assert loaded.config.qa_pooling == "cls+max+query"
    with torch.no_grad():
        assert torch.equal(model(pixel_values, input_ids, attention_mask).logits, loaded(pixel_values, input_ids, attention_mask).logits)
    CloverForVideoQA(tiny_config()).save_pretrained(tmp_path / "plain")  # "cls+max", as the demo checkpoint
    upgraded = CloverForVideoQA.from_pretrained(tmp_path / "plain", qa_pooling="cls+max+query")
    assert upgraded.config.qa_pooling == "cls+max+query"
    assert 0.04 < upgraded.heads["question_pooling"].key.weight.std() < 0.06  # new, at PyTorch's init
    assert torch.equal(upgraded.heads["question_pooling"].video_norm.weight, torch.ones(upgraded.config.video_width))


def test_qa_pooling_regions_adds_the_maximum_of_each_cell_of_a_3x3_split_of_the_frame():
    """"cls+max+regions" adds a linear map of the maxima over each cell of a 3x3 split of the 7x7 token
    grid over all time steps, each cell three token rows by three columns as adaptive pooling cuts 7 into 3
    (0-2, 2-4, 4-6: neighbours share one), checked against maxima taken by hand."""
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(qa_pooling="cls+max+regions")).eval()
    assert model.region_proj.in_features == 9 * model.config.text_config.hidden_size
    assert not hasattr(CloverForVideoQA(tiny_config()), "region_proj")
    pixel_values, input_ids, attention_mask = random_inputs(batch=2)
    video = model.encode_video(pixel_values)
    tokens = video.tokens  # (2, t, 7, 7, Cv)
    fused = model.clover.fuse(tokens, model.clover.encode_text(input_ids, attention_mask), attention_mask)
    frames, height, width = tokens.shape[1:4]
    grid = fused.last_hidden_state[:, : frames * height * width].reshape(2, frames, height, width, -1)  # (2, t, 7, 7, D)
    spans = [(0, 3), (2, 5), (4, 7)]  # adaptive max pooling of 7 cells into 3
    cells = [grid[:, :, r0:r1, c0:c1].amax(dim=(1, 2, 3)) for r0, r1 in spans for c0, c1 in spans]  # 9 x (2, D)
    regions = torch.stack(cells, dim=-1).flatten(1)  # (2, D * 9), channel-major as Tensor.flatten of (D, 3, 3)
    by_hand = fused.pooled + grid.flatten(1, 3).amax(dim=1) + model.region_proj(regions)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, video_features=video, head="open").logits
    assert torch.allclose(logits, model.heads["open"](by_hand), atol=1e-5)


# --- pretrained backbones ------------------------------------------------------------------------------


def test_text_encoder_and_fusion_load_from_a_local_bert(tmp_path):
    torch.manual_seed(1)
    bert_config = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128)
    bert = BertForMaskedLM(bert_config)
    bert.save_pretrained(tmp_path / "bert")
    model = CloverForPretraining.from_backbones(CloverConfig.from_preset("clover-tiny"), text_backbone=str(tmp_path / "bert"))
    clover = model.clover
    assert clover.config.text_config.hidden_size == 64 and clover.config.text_backbone == str(tmp_path / "bert")
    for name, tensor in bert.bert.state_dict().items():
        if "position_ids" not in name:
            assert torch.equal(clover.text_encoder.state_dict()[name], tensor), name
    for index, fusion_layer in enumerate(clover.fusion.layer):  # fusion = BERT's first layers
        for name, tensor in bert.bert.encoder.layer[index].state_dict().items():
            assert torch.equal(fusion_layer.state_dict()[name], tensor), f"fusion layer {index}: {name}"
    assert torch.equal(model.mlm_head.predictions.transform.dense.weight, bert.cls.predictions.transform.dense.weight)
    # And the fusion layer computes what the BERT layer computes.
    hidden = torch.randn(2, 9, 64)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    model.eval(), bert.eval()
    with torch.no_grad():
        ours = clover.fusion.layer[0](hidden, mask)
        theirs = bert.bert.encoder.layer[0](hidden)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_transformers_video_backbone_from_a_local_directory(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    backbone_config = VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=48,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    )
    VideoMAEModel(backbone_config).save_pretrained(tmp_path / "videomae")
    model = CloverForVideoQA.from_backbones(tiny_config(), video_backbone=str(tmp_path / "videomae"))
    assert model.config.video_grid == (2, 4, 4) and model.config.video_width == 48
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    _, input_ids, attention_mask = random_inputs()
    out = model(pixel_values, input_ids, attention_mask, head="open", labels=torch.tensor([0, 1]))
    out.loss.backward()
    model.save_pretrained(tmp_path / "clover")
    loaded = CloverForVideoQA.from_pretrained(tmp_path / "clover").eval()
    with torch.no_grad():
        assert torch.allclose(model.eval()(pixel_values, input_ids, attention_mask, head="open").logits,
                              loaded(pixel_values, input_ids, attention_mask, head="open").logits, atol=1e-6)


# --- the Video Swin checkpoint loader --------------------------------------------------------------------


def official_style_state_dict(encoder: SwinTransformer3D) -> dict[str, torch.Tensor]:
    """A state dict laid out like the original release's Kinetics checkpoints (mmaction)."""
    state = {f"backbone.{k}": v.clone() + 1.0 for k, v in encoder.state_dict().items() if k != "mask_token"}
    state["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(3, 3, dtype=torch.long)
    state["cls_head.fc_cls.weight"] = torch.zeros(400, encoder.num_features)
    return {"state_dict": state, "meta": {}}


def swin():
    return SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=(8, 7, 7))


def test_swin_checkpoint_with_original_key_names_loads(tmp_path):
    encoder, source = swin(), swin()
    path = tmp_path / "swin.pth"
    torch.save(official_style_state_dict(source), path)
    report = load_video_swin_checkpoint(encoder, path)
    assert report.missing == ["mask_token"] and report.unexpected == []
    assert torch.equal(encoder.patch_embed.proj.weight, source.patch_embed.proj.weight + 1.0)
    assert torch.equal(encoder.layers[0].blocks[0].attn.relative_position_bias_table,
                       source.layers[0].blocks[0].attn.relative_position_bias_table + 1.0)


def test_swin_checkpoint_missing_unexpected_and_wrong_shape():
    encoder = swin()
    state = official_style_state_dict(swin())["state_dict"]
    del state["backbone.norm.weight"]
    state["backbone.layers.9.extra.weight"] = torch.zeros(3)
    report = load_video_swin_checkpoint(encoder, state)
    assert "norm.weight" in report.missing and report.unexpected == ["backbone.layers.9.extra.weight"]
    assert "missing" in str(report) and "unexpected" in str(report)
    state["backbone.patch_embed.proj.weight"] = torch.zeros(32, 3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"patch_embed\.proj\.weight: checkpoint has \(32, 3, 2, 4, 4\), model expects \(16, 3, 2, 8, 8\)"):
        load_video_swin_checkpoint(encoder, state)


def test_from_backbones_loads_a_swin_checkpoint_into_the_model(tmp_path):
    config = tiny_config()
    source = CloverModel(config).video_encoder
    torch.save({"state_dict": {f"backbone.{k}": v + 0.5 for k, v in source.state_dict().items() if k != "mask_token"}}, tmp_path / "k400.pth")
    model = CloverForVideoQA.from_backbones(config, video_swin_checkpoint=tmp_path / "k400.pth")
    assert model.video_checkpoint_report.missing == ["mask_token"]
    assert torch.equal(model.clover.video_encoder.norm.weight, source.norm.weight + 0.5)


def test_conv_stem_gives_the_patchify_grid_from_each_patchs_own_frames():
    torch.manual_seed(0)
    encoder = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="conv").eval()
    stem = encoder.patch_embed
    assert [layer.out_channels for layer in stem.convs if isinstance(layer, torch.nn.Conv2d)] == [8, 8, 16]  # 3 halvings (8 = 2^3), doubling up to 16, at least 8
    frames = torch.randn(2, 8, 3, 112, 112)  # (B, T, 3, H, W)
    tokens = stem(frames.transpose(1, 2))  # (B, T/2, H/8, W/8, C)
    assert tokens.shape == (2, 4, 14, 14, 16)
    assert encoder(frames).shape == (2, 4, 7, 7, 32)
    # By hand: the token of frames 2-3 at cell (5, 9) is LayerNorm(merge([conv maps of frame 2; of frame 3])).
    maps = stem.convs(frames[0, 2:4])  # (2, 16, 14, 14)
    by_hand = stem.norm(stem.merge(torch.cat([maps[0, :, 5, 9], maps[1, :, 5, 9]])))
    torch.testing.assert_close(tokens[0, 1, 5, 9], by_hand)
    changed = frames.clone()
    changed[:, 7] += 1.0  # the last frame: only the last temporal patch may change
    moved = stem(changed.transpose(1, 2))
    assert torch.equal(moved[:, :3], tokens[:, :3]) and not torch.allclose(moved[:, 3], tokens[:, 3])


def test_deep_conv_stem_adds_a_stride_one_layer_that_widens_each_tokens_view():
    """"deep_conv" is "conv" plus one 3x3 convolution of stride 1 at the token resolution (BatchNorm, ReLU):
    the same grid, and a token's receptive field grows from 15 to 31 pixels (8-pixel patches)."""
    torch.manual_seed(0)
    encoder = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="deep_conv").eval()
    stem = encoder.patch_embed
    convs = [layer for layer in stem.convs if isinstance(layer, torch.nn.Conv2d)]
    assert [(layer.out_channels, layer.stride) for layer in convs] == [(8, (2, 2)), (8, (2, 2)), (16, (2, 2)), (16, (1, 1))]
    assert all(getattr(layer, "keeps_torch_init", False) for layer in convs)
    frames = torch.randn(1, 8, 3, 112, 112)  # (B, T, 3, H, W)
    assert stem(frames.transpose(1, 2)).shape == (1, 4, 14, 14, 16)
    assert encoder(frames).shape == (1, 4, 7, 7, 32)

    shallow = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="conv").eval().patch_embed

    def token(patch_embed: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
        return patch_embed(clip.transpose(1, 2))[0, 0, 5, 5]  # frames 0-1, cell (5, 5): pixels 40-47

    # By hand, cell c of the stride-2 layers sees pixels 8c-7 .. 8c+7 (33-47); one stride-1 layer more,
    # cells c-1 .. c+1: pixels 25-55. Row 52 is in the second only, row 60 in neither.
    near, far = frames.clone(), frames.clone()
    near[0, 0, :, 52, 44] += 10.0
    far[0, 0, :, 60, 44] += 10.0
    torch.testing.assert_close(token(shallow, near), token(shallow, frames))
    assert not torch.allclose(token(stem, near), token(stem, frames))
    torch.testing.assert_close(token(stem, far), token(stem, frames))


def test_frame_difference_stem_feeds_each_frames_change_since_the_one_before():
    """"deep_conv_diff" is "deep_conv" whose first convolution also reads frame t - frame t-1 (zeros for
    frame 0): its weights on those three channels are what a still clip never uses."""
    changes = frame_changes(torch.tensor([1.0, 4.0, 2.0, 2.0]).view(1, 1, 4, 1, 1))  # (B, C, T, H, W)
    assert changes.flatten().tolist() == [0.0, 3.0, -2.0, 0.0]
    torch.manual_seed(0)
    stem = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="deep_conv_diff").eval().patch_embed
    plain = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="deep_conv").eval().patch_embed
    assert stem.convs[0].in_channels == 6 and plain.convs[0].in_channels == 3
    plain.load_state_dict({**stem.state_dict(), "convs.0.weight": stem.convs[0].weight[:, :3]})
    still = torch.randn(1, 1, 3, 112, 112).expand(1, 8, 3, 112, 112)  # (B, T, 3, H, W): one frame held
    torch.testing.assert_close(stem(still.transpose(1, 2)), plain(still.transpose(1, 2)))  # no change, no difference
    moving = still.clone()
    moving[0, 3:, :, 40:48, 40:48] += 2.0  # a patch appears at frame 3 and stays
    tokens, without = stem(moving.transpose(1, 2)), plain(moving.transpose(1, 2))  # (B, T/2, 14, 14, C)
    torch.testing.assert_close(tokens[:, 0], without[:, 0])  # frames 0-1: still
    assert not torch.allclose(tokens[0, 1, 5, 5], without[0, 1, 5, 5])  # frames 2-3 see the change at frame 3
    torch.testing.assert_close(tokens[:, 2:], without[:, 2:])  # later frames: held again, no change


def test_conv_stem_keeps_torchs_init_and_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = CloverForVideoQA(tiny_config(video_stem="conv"))
    first = model.clover.video_encoder.patch_embed.convs[0].weight  # (16, 3, 3, 3): fan-in 27
    # PyTorch's Kaiming-uniform bound is 1/sqrt(fan_in), so std 1/sqrt(3 * 27) = 0.111, not transformers' 0.02.
    assert abs(first.std().item() - 1 / (3 * 27) ** 0.5) < 0.02
    model.train()
    model.clover.encode_video(torch.randn(2, 8, 3, 112, 112))  # moves the BatchNorm running statistics
    model.eval()
    pixel_values, input_ids, attention_mask = random_inputs()
    expected = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits
    model.save_pretrained(tmp_path)
    loaded = CloverForVideoQA.from_pretrained(tmp_path).eval()
    assert loaded.config.video_stem == "conv"
    stem = loaded.clover.video_encoder.patch_embed
    assert torch.equal(stem.convs[1].running_mean, model.clover.video_encoder.patch_embed.convs[1].running_mean)
    torch.testing.assert_close(loaded(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits, expected)


def test_video_stem_errors_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"video_stem must be one of 'patchify', 'conv', 'deep_conv', 'deep_conv_diff', got 'convolution'"):
        tiny_config(video_stem="convolution")
    with pytest.raises(ValueError, match=r"same power of two .* got patch_size \[2, 6, 6\]"):
        tiny_config(video_stem="conv", patch_size=[2, 6, 6], image_size=96)
    # An official checkpoint has the patchify layer's weights: a conv-stem model reports them, and its own stem as missing.
    encoder = SwinTransformer3D(patch_size=(2, 8, 8), embed_dim=16, depths=(1, 1), num_heads=(1, 2), stem="conv")
    report = load_video_swin_checkpoint(encoder, official_style_state_dict(swin()))
    assert "backbone.patch_embed.proj.weight" in report.unexpected and "patch_embed.convs.0.weight" in report.missing


def test_base_preset_forward_on_cpu():
    """clover-base builds with the paper's sizes and runs a forward pass (about 88M video parameters)."""
    torch.manual_seed(0)
    model = CloverModel(CloverConfig.from_preset("clover-base")).eval()
    video_params = sum(p.numel() for p in model.video_encoder.parameters())
    assert 87e6 < video_params < 89e6  # Video Swin-B
    with torch.inference_mode():
        tokens = model.encode_video(torch.randn(1, 8, 3, 224, 224)).tokens
    assert tokens.shape == (1, 4, 7, 7, 1024)


def _colour_choice_accuracy(mc_scoring: str, steps: int = 60) -> float:
    """Train a small clover-tiny on "what color is it ?" about clips of grey noise with one small square
    of a colour (a sixteenth of the frame, at a random place), the four colour words as shuffled
    candidates; return the accuracy on 64 new clips. Text alone cannot beat chance (0.25)."""
    from clover.processing_clover import CloverProcessor
    from clover.tokenization import tiny_tokenizer

    colors = {"red": (1.5, -1.0, -1.0), "green": (-1.0, 1.5, -1.0), "blue": (-1.0, -1.0, 1.5), "white": (1.5, 1.5, 1.5)}
    config = tiny_config(qa_heads=["mc"], mc_scoring=mc_scoring, num_frames=2, image_size=32, video_depths=[1], video_num_heads=[2])
    torch.manual_seed(0)
    model, processor = CloverForVideoQA(config), CloverProcessor.from_config(config, tiny_tokenizer())
    generator = torch.Generator().manual_seed(0)

    def batch(size: int):
        names = list(colors)
        answers = torch.randint(0, 4, (size,), generator=generator).tolist()
        order = [torch.randperm(4, generator=generator).tolist() for _ in range(size)]
        pixels = 0.3 * torch.randn(size, 2, 3, 32, 32, generator=generator)  # (B, 2, 3, 32, 32) grey noise
        for b, a in enumerate(answers):  # one 8x8 square of the colour, in one cell of the 4x4 token grid
            y, x = (8 * torch.randint(0, 4, (2,), generator=generator)).tolist()
            pixels[b, :, :, y : y + 8, x : x + 8] += torch.tensor(colors[names[a]]).view(1, 3, 1, 1)
        text = processor.encode_multiple_choice(["what color is it ?"] * size, [[names[i] for i in row] for row in order])
        labels = torch.tensor([row.index(a) for row, a in zip(order, answers)])
        return pixels, text, labels

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        pixels, text, labels = batch(16)
        loss = model(pixel_values=pixels, labels=labels, head="mc", **text).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    pixels, text, labels = batch(64)
    with torch.no_grad():
        return float((model(pixel_values=pixels, head="mc", **text).logits.argmax(-1) == labels).float().mean())


def test_match_scoring_learns_a_choice_only_the_video_answers_where_the_papers_score_does_not_yet():
    """The reason for clover-tiny's mc_scoring="concat+match": from random weights, the paper's score
    (a head on the fused [CLS] of question + candidate) needs attention between the candidate's word
    and a small object to form first; the bilinear match term learns as an open-ended head does."""
    # 40 steps: the match term is at 100 % there, the paper's score at chance (23-28 %). At 60 steps the
    # paper's score was below 60 % on one machine and 78 % on another (float rounding differs by CPU).
    assert _colour_choice_accuracy("concat+match", steps=40) > 0.9
    assert _colour_choice_accuracy("concat", steps=40) < 0.6
