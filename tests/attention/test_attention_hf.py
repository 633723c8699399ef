"""Hugging Face: the catalogue as attn_implementation, on tiny randomly initialized transformers models.

The sweep builds every architecture of the pinned transformers that supports the attention interface and can
be made from a shrunken default config without downloads, and checks that ``kernel_edp`` gives the reference
attention's logits (sdpa, or eager where the model refuses sdpa) or a clear error naming the model feature.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attention_kernels.functional import kernel_attention  # noqa: E402
from attention_kernels.hf import register_hf_kernel, register_hf_kernels  # noqa: E402

NAMES = register_hf_kernels()

# Shrinks a default config: every field of these names that a config (or sub-config) has is overridden.
_SMALL = dict(
    hidden_size=32, d_model=32, n_embd=32, embed_dim=32, hidden_dim=32, n_embed=32,
    num_attention_heads=4, n_head=4, n_heads=4, encoder_attention_heads=4, decoder_attention_heads=4,
    num_key_value_heads=2, head_dim=8, intermediate_size=64, ffn_dim=64, encoder_ffn_dim=64, decoder_ffn_dim=64,
    n_inner=64, num_hidden_layers=2, n_layer=2, num_layers=2, encoder_layers=2, decoder_layers=2, n_layers=2,
    vocab_size=99, max_position_embeddings=64, n_positions=64, image_size=32, patch_size=8, num_experts=4,
    num_local_experts=4, n_routed_experts=4, moe_intermediate_size=16, num_experts_per_tok=2,
    shared_expert_intermediate_size=16, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
    v_head_dim=8, sliding_window=4, first_k_dense_replace=1, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    decoder_start_token_id=1, attn_logit_softcapping=30.0, final_logit_softcapping=None,
)
_MAX_PARAMS = 3_000_000
_SEQ = 7


def _fields(cls) -> set[str]:
    try:
        return {f.name for f in dataclasses.fields(cls)}
    except TypeError:
        return set(inspect.signature(cls.__init__).parameters)


def _tiny_kwargs(cfg_cls, depth: int = 0) -> dict:
    fields = _fields(cfg_cls)
    kw = {k: v for k, v in _SMALL.items() if k in fields}
    for name, sub in getattr(cfg_cls, "sub_configs", {}).items():
        if depth < 3 and name in fields and isinstance(sub, type) and issubclass(sub, transformers.PretrainedConfig):
            kw[name] = _tiny_kwargs(sub, depth + 1)
    return kw


def _model_class(model_type: str):
    from transformers.models.auto import modeling_auto as ma

    names = ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type) or ma.MODEL_MAPPING_NAMES.get(model_type)
    if isinstance(names, (list, tuple)):
        names = names[0]
    return getattr(transformers, names, None) if names else None


def _architectures() -> list[str]:
    from transformers.models.auto import configuration_auto as ca

    out = []
    for model_type in ca.CONFIG_MAPPING_NAMES:
        try:
            cls = _model_class(model_type)
        except Exception:  # a model whose optional dependency is missing  # noqa: BLE001
            continue
        if cls is not None and getattr(cls, "_supports_attention_backend", False):
            out.append(model_type)
    return out


def _inputs(model, cfg, generator) -> dict | None:
    """Inputs for a text model (batch 2, right padding in the second row), or None for other modalities."""
    if model.main_input_name != "input_ids":
        return None
    vocab = getattr(cfg.get_text_config(), "vocab_size", None) or 99
    ids = torch.randint(3, min(vocab, 99), (2, _SEQ), generator=generator)
    mask = torch.ones(2, _SEQ, dtype=torch.long)
    mask[1, _SEQ - 2:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if getattr(cfg, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids[:, :5]
    return inputs


def _output(out) -> torch.Tensor:
    for name in ("logits", "last_hidden_state", "prediction_logits"):
        t = getattr(out, name, None)
        if isinstance(t, torch.Tensor):
            return t
    return out[0]


@functools.lru_cache(maxsize=None)
def _build(model_type: str):
    """(model, inputs, reference implementation) or a string saying why it cannot be made generically."""
    from transformers.models.auto import configuration_auto as ca

    cls = _model_class(model_type)
    if cls.main_input_name != "input_ids":
        return f"inputs: {cls.main_input_name}"
    try:
        cfg = ca.CONFIG_MAPPING[model_type](**_tiny_kwargs(ca.CONFIG_MAPPING[model_type]))
        with torch.device("meta"):
            meta = cls._from_config(cfg)
        if sum(p.numel() for p in meta.parameters()) > _MAX_PARAMS:
            return "too big from a shrunken default config"
    except Exception as exc:  # noqa: BLE001
        return f"config/build: {type(exc).__name__}"
    for reference in ("sdpa", "eager"):
        try:
            torch.manual_seed(0)
            model = cls._from_config(cfg, attn_implementation=reference).eval()
        except ValueError:  # "does not support an attention implementation through sdpa"
            continue
        except Exception as exc:  # noqa: BLE001
            return f"build: {type(exc).__name__}"
        inputs = _inputs(model, cfg, torch.Generator().manual_seed(0))
        if inputs is None:
            return f"inputs: {model.main_input_name}"
        try:
            with torch.no_grad():
                expected = _output(model(**inputs))
        except Exception as exc:  # noqa: BLE001
            return f"{reference} forward: {type(exc).__name__}: {exc}"[:200]
        return model, inputs, reference, expected
    return "no sdpa or eager"


# Errors the kernel_* attention raises on purpose, with the argument they name.
_CLEAR = (NotImplementedError, TypeError, ValueError)


def _check_architecture(model_type: str) -> str:
    built = _build(model_type)
    if isinstance(built, str):
        return "skipped: " + built
    model, inputs, reference, expected = built
    causal_lm = _is_causal_lm(model_type)
    if causal_lm:
        with torch.no_grad():
            expected_steps = _decode_with_cache(model, inputs["input_ids"][:1])
    model.set_attn_implementation("kernel_edp")
    try:
        with torch.no_grad():
            out = _output(model(**inputs))
            if causal_lm:
                steps = _decode_with_cache(model, inputs["input_ids"][:1])
    except _CLEAR as exc:
        message = str(exc)
        # our refusals name the argument and kernel_attention / the kernel_* attention; anything else is a bug
        assert "kernel_attention has no" in message or "kernel_* attention" in message, (
            f"{model_type}: unclear error {type(exc).__name__}: {message}"
        )
        return f"refused: {message[:80]}"
    finally:
        model.set_attn_implementation(reference)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{model_type}: {m}")
    if not causal_lm:
        return "equal"
    torch.testing.assert_close(steps, expected_steps, rtol=1e-5, atol=1e-5, msg=lambda m: f"{model_type}: {m}")
    return "equal, generation equal"


def _is_causal_lm(model_type: str) -> bool:
    from transformers.models.auto import modeling_auto as ma

    return model_type in ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _decode_with_cache(model, prompt: torch.Tensor, steps: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy generation of ``steps`` tokens, one query at a time against the model's (dynamic) KV cache.

    A plain loop rather than ``generate``, whose model-specific logits processors (forced tokens, ...) would
    hide the attention's logits. Returns the logits of every step and the tokens (prompt + generated).
    """
    out = model(prompt, use_cache=True)
    tokens, logits = prompt, [out.logits[:, -1]]
    for _ in range(steps):
        tokens = torch.cat([tokens, logits[-1].argmax(-1, keepdim=True)], dim=1)
        out = model(tokens[:, -1:], past_key_values=out.past_key_values, use_cache=True)
        logits.append(out.logits[:, -1])
    return torch.stack(logits, dim=1), tokens


@pytest.mark.slow
def test_every_architecture_edp_equals_reference_or_refuses_clearly():
    start, cpu, results = time.perf_counter(), time.process_time(), {}
    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    # tiny tensors: one thread; intra-op threads only spin (10x the time on a busy 2-core machine)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for model_type in _architectures():
                t = time.perf_counter()
                results[model_type] = _check_architecture(model_type)
                results[model_type] += f" ({time.perf_counter() - t:.2f}s)"
    finally:
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)
    equal = [m for m, r in results.items() if r.startswith("equal")]
    refused = {m: r for m, r in results.items() if r.startswith("refused")}
    print(f"\n{len(equal)} equal, {len(refused)} refused, {len(results) - len(equal) - len(refused)} skipped "
          f"of {len(results)} in {time.perf_counter() - start:.1f}s ({time.process_time() - cpu:.1f}s CPU)")
    for m, r in sorted(results.items()):
        print(f"  {m}: {r}")
    assert len(equal) >= 115


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


def _attend(name="kernel_edp", **kwargs):
    """Call a registered function directly: (B, H, L, D) in, (B, L, H, D) out."""
    from transformers import AttentionInterface

    q, k, v = (torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3))
    module = torch.nn.Module()
    module.is_causal = True
    fn = AttentionInterface._global_mapping[name]
    return fn(module, q, k, v, kwargs.pop("attention_mask", None), **kwargs), (q, k, v)


def _eager_reference(q, k, v, argument, value):
    """transformers' own eager attention with the feature: Gemma 2's (softcap, window), GPT-OSS's (sinks)."""
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward as gemma2_eager
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward as gpt_oss_eager

    keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if argument == "sliding_window":
        keep &= ~torch.ones_like(keep).tril(-value)
    additive = torch.zeros(keep.shape).masked_fill(~keep, -torch.inf)
    module = torch.nn.Module().eval()
    module.num_key_value_groups, module.head_dim = 1, q.shape[-1]
    if argument in ("s_aux", "sinks"):
        module.sinks = value
        return gpt_oss_eager(module, q, k, v, additive, scaling=q.shape[-1] ** -0.5)[0]
    softcap = value if argument == "softcap" else None
    return gemma2_eager(module, q, k, v, additive, scaling=q.shape[-1] ** -0.5, softcap=softcap)[0]


def test_eager_reference_without_features_is_causal_attention():
    (out, _), (q, k, v) = _attend()
    torch.testing.assert_close(_eager_reference(q, k, v, "sliding_window", 6), out)
    torch.testing.assert_close(_eager_reference(q, k, v, "sinks", torch.full((4,), -torch.inf)), out)


@pytest.mark.parametrize("argument, value, feature", [
    ("softcap", 2.0, "softcap"), ("s_aux", torch.linspace(-1, 1, 4), "sinks"),
    ("sinks", torch.linspace(-1, 1, 4), "sinks"), ("sliding_window", 3, "window"),
])
def test_model_features_are_computed_or_refused(argument, value, feature):
    """Refused while kernel_attention lacks the argument; equal to the eager formula once it has it."""
    from attention_kernels.hf import _kernel_attention_takes

    if not _kernel_attention_takes(feature):
        with pytest.raises(NotImplementedError, match=f"passes {argument}=.*kernel_attention has no '{feature}'"):
            _attend(**{argument: value})
        return
    (out, _), (q, k, v) = _attend(**{argument: value})
    torch.testing.assert_close(out, _eager_reference(q, k, v, argument, value))


def test_sliding_window_encoded_by_the_mask_or_too_wide_is_honoured():
    keep = torch.ones(6, 6, dtype=torch.bool).tril() & ~torch.ones(6, 6, dtype=torch.bool).tril(-3)
    (out, _), (q, k, v) = _attend(attention_mask=keep, sliding_window=3)
    torch.testing.assert_close(out, kernel_attention(q, k, v, keep).transpose(1, 2))
    (out, _), _ = _attend(sliding_window=6)  # covers every key: no window to apply
    torch.testing.assert_close(out, kernel_attention(q, k, v, is_causal=True).transpose(1, 2))


def test_position_bias_is_an_additive_mask_and_scaling_is_used():
    bias = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(4))
    (out, _), (q, k, v) = _attend(position_bias=bias, scaling=0.3)
    keep = torch.ones(6, 6, dtype=torch.bool).tril()
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, bias.masked_fill(~keep, -torch.inf), scale=0.3)
    torch.testing.assert_close(out, expected.transpose(1, 2))
    pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    pad[1, ..., 4:] = False  # a boolean mask with a larger batch than the bias
    (out, _), _ = _attend(position_bias=bias, attention_mask=pad & keep)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, bias.masked_fill(~(pad & keep), -torch.inf))
    torch.testing.assert_close(out, expected.transpose(1, 2))
    (out, _), _ = _attend("kernel_rbf", scaling=0.3)  # gamma = scaling / 2
    torch.testing.assert_close(out, kernel_attention(q, k, v, is_causal=True, kernel="rbf", gamma=0.15).transpose(1, 2))
    with pytest.raises(ValueError, match="scaling=0.3: .* kernel 'elu' has no scale or gamma"):
        _attend("kernel_elu", scaling=0.3)
    _attend("kernel_elu", scaling=8 ** -0.5)  # the default scaling is what elu computes


def test_unknown_and_unsupported_arguments_are_named():
    with pytest.raises(TypeError, match=r"passes indices=<tensor of shape \(2, 6\)>"):
        _attend(indices=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="output_attentions=True"):
        _attend(output_attentions=True)
    with pytest.raises(NotImplementedError, match="cu_seq_lens_q: a packed"):
        _attend(cu_seq_lens_q=torch.tensor([0, 6]))
    (out, _), _ = _attend(position_ids=torch.arange(6), use_cache=True, output_attentions=False)
    assert out.shape == (2, 6, 4, 8)


def test_generation_with_cache_and_left_padding_equals_sdpa():
    cfg, cls = _llama()
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.randint(3, 64, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    args = dict(attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    expected = model.generate(ids, **args)
    model.set_attn_implementation("kernel_edp")
    torch.testing.assert_close(model.generate(ids, **args), expected)


def test_swap_attention_switches_hf_models_and_warns_when_nothing_changes():
    from attention_kernels.swap import swap_attention

    cfg, cls = _bert()
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        expected = model(ids).logits
        wrapper = torch.nn.Sequential(model)  # a transformers model nested in a plain module
        assert swap_attention(wrapper) is wrapper
        assert model.config._attn_implementation == "kernel_edp"
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-5)
        swap_attention(model, kernel="rbf", gamma=0.1)
        assert model.config._attn_implementation.startswith("kernel_rbf[gamma=0.1;")
        assert not torch.allclose(model(ids).logits, expected)
    with pytest.warns(UserWarning, match="swap_attention replaced nothing: Linear"):
        swap_attention(torch.nn.Linear(3, 3))


def test_swap_attention_refuses_models_outside_the_attention_interface():
    from attention_kernels.swap import swap_attention

    cfg = transformers.GPTNeoConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                    attention_types=[[["global", "local"], 1]], max_position_embeddings=64)
    with torch.device("meta"):
        model = transformers.GPTNeoForCausalLM._from_config(cfg)
    with pytest.raises(ValueError, match="GPTNeoForCausalLM computes attention in its own classes"):
        swap_attention(model)


def test_dropout_is_applied():
    torch.manual_seed(5)
    (out, _), (q, k, v) = _attend(dropout=0.5)
    torch.manual_seed(5)
    torch.testing.assert_close(out, kernel_attention(q, k, v, dropout_p=0.5, is_causal=True).transpose(1, 2))
    assert not torch.allclose(out, kernel_attention(q, k, v, is_causal=True).transpose(1, 2))


def test_unmasked_window_for_a_decoding_query_is_refused():
    from transformers import AttentionInterface

    q, k = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 6, 8)
    with pytest.raises(NotImplementedError, match="passes sliding_window=3 without a mask for 1 queries against 6"):
        AttentionInterface._global_mapping["kernel_edp"](torch.nn.Module(), q, k, k, None, sliding_window=3)


@pytest.mark.parametrize("model_type", ["gpt_neo", "gptj", "falcon", "git", "bark", "sam", "data2vec-vision"])
def test_models_with_their_own_attention_classes_get_a_clear_error(model_type):
    """from_config(attn_implementation="kernel_edp") names the model instead of transformers' bare KeyError."""
    from transformers.models.auto import configuration_auto as ca

    kwargs = _tiny_kwargs(ca.CONFIG_MAPPING[model_type])
    if model_type == "gpt_neo":  # its layer pattern must match its depth
        kwargs.update(num_layers=2, attention_types=[[["global", "local"], 1]])
    cfg = ca.CONFIG_MAPPING[model_type](**kwargs)
    cls = _model_class(model_type)
    with torch.device("meta"), pytest.raises(ValueError, match=r"kernel_edp.* computes it in its own classes"):
        cls._from_config(cfg, attn_implementation="kernel_edp")
