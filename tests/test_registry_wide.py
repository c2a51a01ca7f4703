"""Registry-wide checks, parametrised over every registered block and model (never a hand-kept list).

Blocks: output shape, backward with every parameter receiving a gradient, no NaN, batch size 1, non-square input,
eval-mode determinism, bf16 autocast forward. Models: the same at a small input, plus every block of every slot the
model declares, in the smallest model of each family ("runs in every backbone whose slot accepts it").
"""
from __future__ import annotations

import pytest
import torch

from blockzoo import create_block, list_blocks, list_models
from blockzoo.registry import IncompatibleBlockError, get_block_spec, get_model_spec
from helpers import family_representatives, model_marks, small_model

C, H, W = 32, 12, 10


def _block_io(name: str, batch: int = 2):
    spec = get_block_spec(name)
    x = torch.randn(batch, C, H, W)
    if spec.slot == "act":
        return create_block(name), (x,), lambda y: y.shape == x.shape
    if spec.slot == "conv":
        out = C if spec.requires.keeps_channels else 48
        stride = 2 if spec.requires.stride else 1
        m = create_block(name, C, out_channels=out, stride=stride)
        return m, (x,), lambda y: y.shape == (batch, out, -(-H // stride), -(-W // stride))
    if spec.slot == "head":
        m = create_block(name, C)
        return m, (x,), lambda y: y.shape == (batch, m.out_features)
    if spec.slot == "connection":
        return create_block(name, C), (x, torch.randn_like(x)), lambda y: y.shape == x.shape
    kw = {"input_resolution": (H, W)} if spec.requires.fixed_resolution else {}
    m = create_block(name, C, **kw)
    return m, (x,), (lambda y: y.shape == x.shape) if spec.requires.keeps_channels else (lambda y: y.shape[0] == batch)


@pytest.mark.parametrize("name", list_blocks())
def test_block(name):
    m, args, shape_ok = _block_io(name)
    args = tuple(a.requires_grad_() for a in args)  # parameter-free blocks must still pass gradients through
    m.train()
    y = m(*args)
    assert shape_ok(y), f"{name}: bad output shape {tuple(y.shape)}"
    assert torch.isfinite(y).all()
    (y.float() * torch.randn_like(y.float())).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args), f"{name}: no input gradient"
    args = tuple(a.detach() for a in args)
    m.eval()
    with torch.no_grad():
        m1, args1, shape1 = _block_io(name, batch=1)
        m1.eval()
        y1 = m1(*args1)
        assert shape1(y1) and torch.isfinite(y1).all(), f"{name}: batch size 1 failed"
        assert torch.equal(m(*args), m(*args)), f"{name}: eval mode is not deterministic"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = m(*args)
        assert shape_ok(yb) and torch.isfinite(yb.float()).all(), f"{name}: bf16 autocast failed"


@pytest.mark.parametrize("name", [pytest.param(n, marks=model_marks(n)) for n in list_models()])
def test_model(name):
    m, x = small_model(name)
    m.train()
    y = m(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing[:10]}"
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x[:1]), m(x[:1]))
        f = m.forward_features(x)
        assert f.shape[-1 if f.ndim == 3 else 1] == m.num_features   # NCHW maps, or (B, N, C) tokens (ViTs)
        assert m.forward_head(f, pre_logits=True).shape == (2, m.head_hidden_size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(m(x).float()).all()
        xr = torch.randn(1, 1, x.shape[2], x.shape[3] - x.shape[3] // 8)   # non-square
        assert m(xr).shape == (1, 7)


@pytest.mark.parametrize("model", sorted(family_representatives().values()))
def test_reset_classifier_like_timm(model):
    """reset_classifier(num_classes, global_pool) on the smallest model of every family: timm's argument name gives
    a new pooling head, 0 classes gives the pooled features, a bad count is a ConfigError."""
    from blockzoo import ConfigError
    m, x = small_model(model)
    m.eval()
    m.reset_classifier(3, "max")
    with torch.no_grad():
        assert m(x).shape == (2, 3)
        m.reset_classifier(0, global_pool="avg")
        assert m(x).shape == (2, m.head_hidden_size)
    with pytest.raises(ConfigError):
        m.reset_classifier(-1)
    with pytest.raises(ConfigError, match="two different pooling heads"):
        m.reset_classifier(3, global_pool="avg", head="max")


def _slot_cases():
    cases = []
    for _fam, model in sorted(family_representatives().items()):
        spec = get_model_spec(model)
        for slot, default in spec.slots.items():
            for blk in list_blocks(slot=slot):
                if blk != default and not blk.startswith("_"):
                    cases.append(pytest.param(model, slot, blk, id=f"{model}-{slot}={blk}"))
    return cases


@pytest.mark.parametrize("model,slot,block", _slot_cases())
def test_block_in_backbone(model, slot, block):
    """Every block either runs in the backbone or is refused when the model is built (never deep inside forward)."""
    try:
        m, x = small_model(model, **{slot: block})
    except IncompatibleBlockError as e:
        assert str(e) and model in str(e) or block in str(e)
        pytest.skip(f"refused at build time: {e}")
    m.train()
    y = m(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.sum().backward()


def test_every_paper_record_is_in_papers_py():
    """Blocks and models cite the records of ``blockzoo.papers`` (one place for every bibliographic record)."""
    from blockzoo import papers
    from blockzoo.registry import Paper

    records = {v for v in vars(papers).values() if isinstance(v, Paper)}
    specs = [get_block_spec(n) for n in list_blocks()] + [get_model_spec(n) for n in list_models()]
    stray = sorted({s.name for s in specs if s.paper is not None and s.paper not in records})
    assert not stray, f"these entries cite a Paper record that is not in blockzoo/papers.py: {stray}"
