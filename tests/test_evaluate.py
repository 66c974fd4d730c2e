"""Size, latency and fidelity measurements, checked against the safetensors format, sleeps and scikit-learn."""

import json
import struct
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file
from sklearn.metrics.pairwise import cosine_similarity
from torch import nn
from torch.nn.utils import prune as torch_prune

from mmtutor.compress.quantize import quantize_linear_weights
from mmtutor.evaluate import (LatencyComparison, Timing, agreement, compare_latency, cosine_fidelity, fixed_threads,
                              latency, model_size_bytes, shippable_tensors)
from mmtutor.sizes import count_parameters

FAST = settings(max_examples=40, deadline=None)

# PyTorch's quantized tensors and torch.ao.quantization announce their deprecation (in favour of torchao); the
# int8 models they build are still what a user of torch 2.x ships.
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"),
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
]


def parse_safetensors(blob: bytes) -> tuple[int, dict]:
    """The header length and header of a safetensors blob: u64 little-endian length, then JSON."""
    (length,) = struct.unpack("<Q", blob[:8])
    return length, json.loads(blob[8:8 + length])


# --------------------------------------------------------------------------------------------------
# size
# --------------------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=2, max_size=5))
def test_size_is_four_bytes_per_parameter_plus_the_header(widths):
    layers = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers)
    n = count_parameters(model)
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    length, header = parse_safetensors(blob)
    assert model_size_bytes(model) == len(blob) == 8 + length + 4 * n
    assert length % 8 == 0                                            # the header is padded to 8 bytes
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert set(tensors) == set(model.state_dict())
    assert all(v["dtype"] == "F32" for v in tensors.values())
    assert max(v["data_offsets"][1] for v in tensors.values()) == 4 * n


def test_size_of_files_directories_and_bytes(tmp_path):
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_bytes(b"x" * 123)
    file_size = (tmp_path / "model.safetensors").stat().st_size
    assert model_size_bytes(tmp_path / "model.safetensors") == file_size == model_size_bytes(model)
    assert model_size_bytes(str(tmp_path)) == file_size + 123
    assert model_size_bytes(b"12345") == 5


def test_tied_weights_are_counted_once():
    embed = nn.Embedding(50, 16)
    head = nn.Linear(16, 50, bias=False)
    head.weight = embed.weight                                        # as in GPT-2's LM head
    model = nn.ModuleDict({"embed": embed, "head": head})
    assert len(model.state_dict()) == 2 and count_parameters(model) == 800
    length, _ = parse_safetensors(save(shippable_tensors(model)))
    assert model_size_bytes(model) == 8 + length + 4 * 800
    assert list(shippable_tensors(model)) == ["embed.weight"]


def test_int8_and_int4_models_are_about_four_and_eight_times_smaller():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    fp32 = model_size_bytes(model)
    ours = model_size_bytes(quantize_linear_weights(model, num_bits=8))
    ours_int4 = model_size_bytes(quantize_linear_weights(model, num_bits=4))
    dynamic = model_size_bytes(torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8))
    assert 3.9 < fp32 / ours < 4.0 and 3.9 < fp32 / dynamic < 4.0
    assert 7.5 < fp32 / ours_int4 < 8.0


def test_quantized_tensors_are_counted_as_codes_scales_and_zero_points():
    x = torch.randn(6, 10)
    per_channel = torch.quantize_per_channel(x, torch.rand(6) + 0.1, torch.zeros(6, dtype=torch.long), 0, torch.qint8)
    per_tensor = torch.quantize_per_tensor(x, 0.1, 3, torch.quint8)
    tensors = shippable_tensors({"w": per_channel, "v": per_tensor, "flag": torch.float32, "pair": (x, x[0])})
    assert torch.equal(tensors["w"], per_channel.int_repr()) and tensors["w.scale"].shape == (6,)
    assert tensors["w.zero_point"].dtype == torch.int8 and tensors["v.zero_point"].tolist() == [3]
    assert tensors["v.scale"].dtype == torch.float32 and "flag" not in tensors
    assert torch.equal(tensors["pair.1"], x[0])                       # a view of shared memory is copied
    expected = sum(t.numel() * t.element_size() for t in tensors.values())
    length, _ = parse_safetensors(save(tensors))
    assert model_size_bytes({"w": per_channel, "v": per_tensor, "flag": torch.float32, "pair": (x, x[0])}) == \
        8 + length + expected


def test_pruning_masks_are_counted_honestly():
    model = nn.Sequential(nn.Linear(200, 100))
    dense = model_size_bytes(model)
    torch_prune.l1_unstructured(model[0], "weight", 0.9)          # stores weight_orig AND a float weight_mask
    assert model_size_bytes(model) > 1.9 * dense
    torch_prune.remove(model[0], "weight")                         # zeros in a dense tensor: no smaller
    assert model_size_bytes(model) == dense


# --------------------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------------------

def test_latency_of_a_sleep():
    timing = latency(time.sleep, 0.01, repeats=7, warmup=1)
    assert isinstance(timing, Timing) and len(timing.times) == 7
    assert 0.01 <= timing.median < 0.02                                # sleep never returns early
    q1, median, q3 = np.percentile(timing.times, [25, 50, 75])
    assert (timing.q1, timing.median, timing.q3) == (q1, median, q3) and timing.iqr == q3 - q1


def test_compare_latency_of_two_sleeps_gives_the_ratio_of_their_durations():
    comparison = compare_latency(lambda: time.sleep(0.02), lambda: time.sleep(0.01), repeats=7, warmup=1)
    assert isinstance(comparison, LatencyComparison)
    assert comparison.ratio == comparison.baseline.median / comparison.candidate.median
    # both sleeps overshoot by the same wake-up delay d: (20 + d) / (10 + d) is a little under 2
    assert 1.6 < comparison.ratio <= 2.05


def test_compare_latency_interleaves_and_alternates():
    calls = []
    compare_latency(lambda: calls.append("b"), lambda: calls.append("c"), repeats=4, warmup=1)
    assert "".join(calls) == "bc" + "bccbbccb"


def test_latency_fixes_and_restores_the_thread_count():
    previous = torch.get_num_threads()
    seen = []
    timing = latency(lambda: seen.append(torch.get_num_threads()), repeats=3, warmup=0, threads=1)
    assert seen == [1, 1, 1] and timing.threads == 1 and torch.get_num_threads() == previous

    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        latency(fails, threads=1)
    assert torch.get_num_threads() == previous
    with fixed_threads(None) as used:
        assert used == previous


# --------------------------------------------------------------------------------------------------
# fidelity
# --------------------------------------------------------------------------------------------------

@FAST
@given(rows=st.integers(1, 20), cols=st.integers(1, 12), seed=st.integers(0, 2**16), zero_rows=st.booleans())
def test_cosine_fidelity_equals_scikit_learn(rows, cols, seed, zero_rows):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    if zero_rows:
        a[0] = 0.0
    expected = float(np.mean(np.diag(cosine_similarity(a, b))))
    assert cosine_fidelity(a, b) == pytest.approx(expected, abs=1e-12)
    assert cosine_fidelity(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(expected,
                                                                                                      abs=1e-6)
    assert cosine_fidelity(b, 3.0 * b) == pytest.approx(1.0)           # scale does not matter, direction does


@FAST
@given(rows=st.integers(1, 30), classes=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_agreement_is_the_fraction_of_equal_argmax(rows, classes, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(rows, classes, generator=g), torch.randn(rows, classes, generator=g)
    assert agreement(a, b) == pytest.approx(float((a.argmax(1) == b.argmax(1)).float().mean()))
    assert agreement(a, a + 0.0) == 1.0 and agreement(a, 2 * a + 1) == 1.0
    assert agreement(a.numpy(), (-a).numpy()) == 0.0


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="obj"):
        model_size_bytes(42)
    with pytest.raises(ValueError, match="obj"):
        model_size_bytes(tmp_path / "missing.safetensors")
    with torch.device("meta"):
        meta = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="meta"):
        model_size_bytes(meta)
    with pytest.raises(TypeError, match="state"):
        shippable_tensors([torch.ones(2)])
    with pytest.raises(TypeError, match="fn"):
        latency("not callable")
    with pytest.raises(TypeError, match="candidate_fn"):
        compare_latency(time.sleep, None)
    with pytest.raises(ValueError, match="repeats"):
        latency(time.sleep, 0, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        latency(time.sleep, 0, warmup=-1)
    with pytest.raises(ValueError, match="threads"):
        latency(time.sleep, 0, threads=0)
    with pytest.raises(TypeError, match="threads"):
        latency(time.sleep, 0, threads=1.5)
    with pytest.raises(ValueError, match="a and b"):
        cosine_fidelity(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="a must be finite"):
        cosine_fidelity(np.array([[1.0, np.nan]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="b must be a non-empty 2-D"):
        cosine_fidelity(np.ones((1, 3)), np.ones(3))
    with pytest.raises(TypeError, match="a must"):
        cosine_fidelity("abc", np.ones((1, 3)))
    with pytest.raises(ValueError, match="logits_a and logits_b"):
        agreement(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="logits_b must be finite"):
        agreement(np.ones((1, 2)), np.array([[np.inf, 0.0]]))
