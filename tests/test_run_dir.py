"""run_dir.pack: a tensor stored as its differences from a reference comes back bit for bit
(signed zeros, NaNs and infinities included), whatever the reference and the dtype."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings, strategies as st  # noqa: E402

from agents.rl.run_dir import PACKED, pack, unpack  # noqa: E402

SPECIAL = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, 3.0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), changed=st.floats(0, 1), dtype=st.sampled_from(
    [torch.float32, torch.float64, torch.float16, torch.bfloat16]), seed=st.integers(0, 2**16),
    with_reference=st.booleans())
def test_pack_then_unpack_is_bit_exact(n, changed, dtype, seed, with_reference):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(n, generator=gen).to(dtype)
    x = ref.clone() if with_reference else torch.zeros(n, dtype=dtype)
    hit = torch.rand(n, generator=gen) < changed
    x[hit] = torch.tensor(SPECIAL, dtype=dtype)[torch.randint(len(SPECIAL), (int(hit.sum()),),
                                                                generator=gen)]
    obj = {"w": x.view(1, n), "nested": [x, {"step": torch.tensor(7.0)}], "n": n}
    reference = {"w": ref.view(1, n)} if with_reference else None
    back = unpack(pack(obj, reference), reference)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    assert torch.equal(back["w"].view(bits), obj["w"].view(bits))
    assert torch.equal(back["nested"][0].view(bits), x.view(bits))
    assert back["nested"][1]["step"] == 7.0 and back["n"] == n


def test_a_mostly_unchanged_tensor_is_stored_small_and_a_changed_one_whole():
    ref = torch.randn(100_000)
    few = ref.clone()
    few[:10] += 1
    packed = pack({"a": few, "b": torch.randn(100_000)}, {"a": ref, "b": ref})
    assert packed["a"][PACKED] and packed["a"]["where"].numel() == 10
    assert torch.is_tensor(packed["b"])                 # no gain: stored as it is
    wrong = unpack(packed, {"a": torch.zeros(100_000)})["a"]
    assert not torch.equal(wrong, few)                  # the reference matters
