"""Float64 reference for the attention tests: the full weight matrix, no tricks (no running maximum)."""

from __future__ import annotations

import torch
from helpers import attention_kernel, make_kernel, randn, reference_attention, reference_weights


# The reference itself is checked against torch where torch has the same computation.
def test_reference_edp_is_sdpa():
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2), randn(2, 3, 7, 4, seed=3)
    mask = randn(5, 7, seed=4)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(reference_attention(q, k, v, make_kernel("edp"), attn_mask=mask), expected)


def test_reference_attention_kernel_maps_both_sides():
    q, k = randn(4, 6, seed=5), randn(3, 6, seed=6)
    kern = attention_kernel(6)
    expected = torch.exp((q @ kern.query_map) @ (k @ kern.key_map).T / 6**0.5)
    torch.testing.assert_close(reference_weights(q, k, kern, normalize=False), expected)
