"""Every bad input of kernel_attention gets a clear error naming the argument."""

from __future__ import annotations

import pytest
import torch
from helpers import randn

from attention_kernels.functional import kernel_attention

Q = randn(2, 3, 5, 8, seed=0)
K = randn(2, 3, 7, 8, seed=1)
V = randn(2, 3, 7, 4, seed=2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"attn_mask": torch.ones(5, 6, dtype=torch.bool)}, ValueError, "does not broadcast"),
        ({"attn_mask": torch.ones(4, 5, 7, dtype=torch.bool)}, ValueError, "does not broadcast"),
        ({"attn_mask": torch.zeros(5, 7, dtype=torch.float32)}, TypeError, "attn_mask has dtype torch.float32"),
        ({"attn_mask": torch.zeros(5, 7, dtype=torch.int64)}, TypeError, "attn_mask must be boolean"),
        ({"attn_mask": [[True]]}, TypeError, "attn_mask must be a torch.Tensor"),
        ({"kernel": "linear"}, ValueError, "normalize=True needs a non-negative kernel"),
        ({"kernel": "tanh"}, ValueError, "normalize=True needs a non-negative kernel"),
        ({"kernel": "polynomial", "degree": 3}, ValueError, "normalize=True"),
        ({"kernel": "random_fourier_features"}, ValueError, "normalize=True"),
        ({"kernel": "nope"}, ValueError, "unknown kernel"),
        ({"kernel": "rbf", "scale": 0.5}, TypeError, "scale: kernel 'rbf' has no scale"),
        ({"scale": -1.0}, ValueError, "scale must be positive"),
        ({"kernel": "rbf", "degree": 2}, TypeError, "unexpected parameter .degree.; valid parameters: gamma"),
        ({"dropout_p": 1.0}, ValueError, "dropout_p"),
        ({"normalize": 1}, TypeError, "normalize must be a bool"),
        ({"is_causal": 1}, TypeError, "is_causal must be a bool"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"backend": "triton"}, ValueError, "backend='triton' takes .* float16, bfloat16 or float32"),
        ({"window": (2,)}, ValueError, "window must be None or a pair"),
        ({"window": (-2, 0)}, ValueError, "window must be None or a pair"),
        ({"window": (1.5, 0)}, ValueError, "window must be None or a pair"),
        ({"alibi_slopes": torch.ones(4, dtype=torch.float64)}, ValueError, "alibi_slopes must have shape"),
        ({"alibi_slopes": torch.ones(3, dtype=torch.long)}, TypeError, "alibi_slopes must be a floating"),
        ({"alibi_slopes": [0.1, 0.2, 0.3]}, TypeError, "alibi_slopes must be a torch.Tensor"),
        ({"sinks": torch.ones(2, dtype=torch.float64)}, ValueError, r"sinks must have shape \(heads,\) = \(3,\)"),
        ({"sinks": torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)}, ValueError, "sinks must be finite"),
        ({"sinks": torch.zeros(3, dtype=torch.float64), "normalize": False}, ValueError, "sinks .* normalize=True"),
        ({"softcap": 0.0}, ValueError, "softcap must be a finite positive"),
        ({"softcap": 2.0, "kernel": "elu"}, ValueError, r"softcap caps the exponent .* kernel 'elu' \(feature_map"),
        ({"return_lse": 1}, TypeError, "return_lse must be a bool"),
        ({"return_lse": True, "normalize": False}, ValueError, "return_lse=True .* normalize=True"),
        ({"max_seqlen_q": 5}, ValueError, "max_seqlen_q/max_seqlen_k need cu_seqlens"),
        ({"window": (1, 0), "backend": "linear", "kernel": "elu"}, ValueError,
         "backend='linear' does not support window"),
        ({"sinks": torch.zeros(3, dtype=torch.float64), "backend": "linear", "kernel": "elu"}, ValueError,
         "backend='linear' does not support sinks"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kernel_attention(Q, K, V, **kwargs)


def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="backend='triton' needs"):
        kernel_attention(Q.float(), K.float(), V.float(), backend="triton")


def test_bad_tensors():
    with pytest.raises(ValueError, match="query head dim 8 does not match key head dim 6"):
        kernel_attention(Q, randn(2, 3, 7, 6), V)
    with pytest.raises(ValueError, match="key has 7 positions but value has 6"):
        kernel_attention(Q, K, randn(2, 3, 6, 4))
    with pytest.raises(TypeError, match="same dtype"):
        kernel_attention(Q, K.float(), V)
    with pytest.raises(TypeError, match="query must be a floating tensor"):
        kernel_attention(torch.ones(2, 3, 5, 8, dtype=torch.long), K, V)
    with pytest.raises(TypeError, match="key must be a torch.Tensor"):
        kernel_attention(Q, K.numpy(), V)
    with pytest.raises(ValueError, match="query must have shape"):
        kernel_attention(torch.ones(8, dtype=torch.float64), K, V)
    with pytest.raises(ValueError, match="do not broadcast"):
        kernel_attention(Q, randn(2, 2, 7, 8), randn(2, 2, 7, 4))
    with pytest.raises(ValueError, match="enable_gqa=True needs the query heads"):
        kernel_attention(Q, randn(2, 2, 7, 8), randn(2, 2, 7, 4), enable_gqa=True)


def test_empty_sequences():
    assert kernel_attention(Q[..., :0, :], K, V).shape == (2, 3, 0, 4)
    assert (kernel_attention(Q, K[..., :0, :], V[..., :0, :]) == 0).all()


def test_packed_layout_errors():
    q, k, v = randn(9, 2, 4), randn(9, 2, 4), randn(9, 2, 3)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    with pytest.raises(ValueError, match="must be given together"):
        kernel_attention(q, k, v, cu_seqlens_q=cu)
    with pytest.raises(ValueError, match="`cu_seqlens_k` must start at 0, never decrease and end at the packed"):
        kernel_attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=torch.tensor([0, 5, 4], dtype=torch.int32))
    with pytest.raises(ValueError, match="1-D int32/int64"):
        kernel_attention(q, k, v, cu_seqlens_q=cu.float(), cu_seqlens_k=cu)
    with pytest.raises(ValueError, match="`cu_seqlens_q` has 2 sequences but `cu_seqlens_k` has 1"):
        kernel_attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="`max_seqlen_q` must be an int >= the longest sequence \\(5\\)"):
        kernel_attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=4)
    with pytest.raises(ValueError, match="query must be a packed"):
        kernel_attention(q.unsqueeze(0), k, v, cu_seqlens_q=cu, cu_seqlens_k=cu)
    with pytest.raises(ValueError, match="attn_mask is not supported with cu_seqlens"):
        kernel_attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, attn_mask=torch.ones(9, 9, dtype=torch.bool))


def test_triton_backend_with_softcap_names_the_kernel_it_cannot_fuse(monkeypatch):
    import attention_kernels.functional as functional

    if functional._triton_ops() is None:
        pytest.skip("triton_ops unavailable")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="backend='triton' has no fused form of kernel 'elu'"):
        kernel_attention(Q.float(), K.float(), V.float(), backend="triton", kernel="elu", softcap=3.0)
