"""Hugging Face: the catalogue as attn_implementation on tiny randomly initialized Llama and BERT models."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attention_kernels.hf import register_hf_kernel, register_hf_kernels  # noqa: E402

NAMES = register_hf_kernels()


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return cfg, transformers.LlamaForCausalLM


def _bert():
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=64)
    return cfg, transformers.BertForMaskedLM


@pytest.mark.parametrize("build", [_llama, _bert], ids=["llama", "bert"])
def test_edp_gives_sdpa_logits(build):
    cfg, cls = build()
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.randint(0, 64, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        model.set_attn_implementation("kernel_edp")
        out = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build", [_llama, _bert], ids=["llama", "bert"])
def test_training_step_with_rbf(build):
    cfg, cls = build()
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="kernel_rbf").train()
    assert model.config._attn_implementation == "kernel_rbf"
    before = [p.detach().clone() for p in model.parameters()]
    ids = torch.randint(0, 64, (2, 9))
    loss = model(ids, labels=ids).loss
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert sum(changed) > len(changed) // 2


def test_rbf_is_not_softmax_and_custom_registration():
    cfg, cls = _llama()
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.randint(0, 64, (1, 7))
    with torch.no_grad():
        sdpa = model(ids).logits
        model.set_attn_implementation(register_hf_kernel("my_poly", "polynomial", degree=2))
        poly = model(ids).logits
    assert not torch.allclose(poly, sdpa)
    assert {"kernel_edp", "kernel_rbf", "kernel_elu"} <= set(NAMES)
    with pytest.raises(ValueError, match="normalize=True"):
        register_hf_kernel("bad", "tanh", normalize=True)
