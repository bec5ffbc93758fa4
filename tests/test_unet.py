"""The built-in backend has GLIDE's topology; the truncated forward is the paper's block removal."""

from __future__ import annotations

import pytest
import torch

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet
from unetdyn.backends.registry import resolve_device
from unetdyn.unet import Surgery, Unet, encoder_blocks_needed, exact_float32, forward, zero_output


def _inputs(unet, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, *unet.image_shape, generator=g)
    t = torch.tensor([999, 505, 10][:b])
    labels = torch.tensor([0, 4, 10][:b])  # 10 = null class
    return x, t, labels


def test_builtin_has_glides_block_structure():
    net = BuiltinUnet(BuiltinConfig(model_channels=16))
    assert isinstance(net, Unet)
    assert len(net.input_blocks) == 16 and len(net.output_blocks) == 16
    assert len(net.middle_block) == 3  # res, attention, res
    down = [i for i, b in enumerate(net.input_blocks) if getattr(b[0], "resample", "") == "down"]
    up = [j for j, b in enumerate(net.output_blocks) if getattr(b[-1], "resample", "") == "up"]
    assert down == [4, 8, 12] and up == [3, 7, 11]
    # attention at the lower resolutions only: encoder levels 1-3, decoder levels 3-1
    attn = [i for i, b in enumerate(net.input_blocks) if any(type(m).__name__ == "Attention" for m in b)]
    assert attn == [5, 6, 7, 9, 10, 11, 13, 14, 15]
    assert net(*_inputs(net)).shape == (3, 6, 32, 32)
    assert net.decoder_out_shape(0) == (64, 4, 4) and net.decoder_out_shape(15) == (16, 32, 32)


def test_protocol_forward_equals_plain_forward(unet):
    x, t, labels = _inputs(unet)
    with torch.no_grad():
        assert torch.equal(forward(unet, x, t, unet.condition([0, 4, None])).out, unet(x, t, labels))


@pytest.mark.parametrize("nb", [1, 2, 8, 12, 16])
def test_truncated_forward_equals_zeroed_block_output(unet, nb):
    x, t, labels = _inputs(unet)
    with torch.no_grad():
        res = forward(unet, x, t, unet.condition([0, 4, None]), Surgery(drop_blocks=nb))
        with zero_output(unet.output_blocks[nb - 1]):
            ref = unet(x, t, labels)
    assert torch.equal(res.out, ref)
    assert (res.encoder_blocks, res.decoder_blocks, res.middle) == (16 - nb, 16 - nb, False)
    assert not torch.equal(res.out, unet(x, t, labels))


@pytest.mark.parametrize("ns", [1, 2, 5])
def test_zero_skips_zeroes_the_top_skips(unet, ns):
    """The top ns skips come from input_blocks[0:ns] and feed output_blocks[15], [14], ..."""
    x, t, labels = _inputs(unet)
    with torch.no_grad():
        res = forward(unet, x, t, unet.condition([0, 4, None]), Surgery(zero_skips=ns))
        # reference built from the plain pieces: the skips (not the blocks' outputs) are zeroed
        emb = unet.embed(t, labels)
        hs, h = [], x
        for blk in unet.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        hs = [torch.zeros_like(s) if k < ns else s for k, s in enumerate(hs)]
        h = unet.middle_block(h, emb)
        for blk in unet.output_blocks:
            h = blk(torch.cat([h, hs.pop()], 1), emb)
        ref = unet.out(h)
    assert torch.equal(res.out, ref)
    assert res.encoder_blocks == 16 and res.decoder_blocks == 16


def test_shares_are_each_decoders_input_energy_from_below(unet):
    x, t, labels = _inputs(unet)
    energy = lambda h: h.pow(2).flatten(1).sum(1)  # noqa: E731
    with torch.no_grad():
        res = forward(unet, x, t, unet.condition([0, 4, None]), shares=True)
        emb = unet.embed(t, labels)  # the reference, from the plain pieces: decoder j gets cat([h, skip])
        hs, h = [], x
        for blk in unet.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        h = unet.middle_block(h, emb)
        ref = []
        for blk in unet.output_blocks:
            skip = hs.pop()
            ref.append(energy(h) / (energy(h) + energy(skip)))
            h = blk(torch.cat([h, skip], 1), emb)
        assert list(res.below) == list(range(16))
        for j in range(16):
            torch.testing.assert_close(res.below[j], ref[j])
            assert ((0 < ref[j]) & (ref[j] < 1)).all()
        # what removing the bottom 4 blocks zeroes is decoder 4's input from below; zeroed skips leave only it
        assert torch.equal(forward(unet, x, t, unet.condition([0, 4, None]), Surgery(drop_blocks=4), shares=True)
                           .below[4], torch.zeros(3))
        assert torch.equal(forward(unet, x, t, unet.condition([0, 4, None]), Surgery(zero_skips=16), shares=True)
                           .below[15], torch.ones(3))
        assert forward(unet, x, t, unet.condition([0, 4, None])).below == {}  # not asked for: not measured


def test_zero_output_hook_never_outlives_the_with(unet):
    block = unet.output_blocks[3]
    with pytest.raises(RuntimeError, match="boom"), zero_output(block):
        assert len(block._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(block._forward_hooks) == 0


def test_encoder_prefix_for_multi_skip_blocks():
    """A diffusers-like layout: 4 down blocks pushing 3,3,3,2 skips; 4 up blocks popping 3 each."""

    class Fake:
        skips_pushed = (1, 3, 3, 3, 2)  # conv_in pushes one
        skips_popped = (3, 3, 3, 3)

    assert encoder_blocks_needed(Fake, 0) == 5
    assert encoder_blocks_needed(Fake, 1) == 4  # 9 skips needed: conv_in + 3 + 3 + 3 (needs block 3)
    assert encoder_blocks_needed(Fake, 2) == 3  # 6 skips: 1 + 3 + 3 (block 2 overshoots by one)
    assert encoder_blocks_needed(Fake, 4) == 0


def test_surgery_out_of_range_is_named(unet):
    x, t, _ = _inputs(unet)
    with pytest.raises(ValueError, match="drop_blocks=17 is out of range 0..16"):
        forward(unet, x, t, unet.condition([0, 4, None]), Surgery(drop_blocks=17))


def test_unknown_class_is_named(unet):
    with pytest.raises(ValueError, match="unknown class 'dragon'; classes are circle, square"):
        unet.condition(["dragon"])
    with pytest.raises(ValueError, match="class index 10 is out of range 0..9"):
        unet.condition([10])


def test_inference_forward_equals_the_training_forward_bit_for_bit(unet):
    """Without grad the residual blocks compute in place: the same bits, and training still backpropagates."""
    torch.manual_seed(0)
    x, t, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 500, 999]), torch.tensor([0, 3, 10])
    with torch.no_grad():
        fast = unet(x, t, labels)
    slow = unet(x, t, labels)
    assert torch.equal(fast, slow)
    slow.square().mean().backward()
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)
    unet.zero_grad(set_to_none=True)


# -- float32 on CUDA without touching the caller's TF32 settings -------------------------------


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture()
def tf32_on():
    """Both global TF32 flags on (as a caller may have them) for the test, then as they were."""
    saved = _tf32()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_resolve_device_changes_no_global_setting(tf32_on, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the CUDA path, without a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert _tf32() == (True, True)


def test_exact_float32_turns_tf32_off_only_inside(tf32_on):
    with exact_float32(torch.device("cuda", 0)):
        assert _tf32() == (False, False)
        with exact_float32("cuda"):  # nested: the outer setting comes back
            pass
        assert _tf32() == (False, False)
    assert _tf32() == (True, True)
    with pytest.raises(RuntimeError), exact_float32("cuda"):
        raise RuntimeError
    assert _tf32() == (True, True)
    for device in ("cpu", "meta", None):  # only CUDA has TF32
        with exact_float32(device):
            assert _tf32() == (True, True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_forward_on_cuda_runs_without_tf32(tf32_on, monkeypatch):
    net = BuiltinUnet(BuiltinConfig(model_channels=16)).cuda().eval()
    seen = []
    begin = net.begin
    monkeypatch.setattr(net, "begin", lambda *a: (seen.append(_tf32()), begin(*a))[1])
    x, t, _ = (v.cuda() for v in _inputs(net))
    with torch.no_grad():
        forward(net, x, t, net.condition([0, 4, None]), Surgery(drop_blocks=2))
    assert seen == [(False, False)] and _tf32() == (True, True)
