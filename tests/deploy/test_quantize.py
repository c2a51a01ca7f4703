"""blockzoo.deploy.quantization (S007): INT8 post-training quantization (onnxruntime and PT2E back ends), the saved
files, the paper's per-channel / per-tensor scheme, QAT and 4-bit weights, and evaluate() on exported graphs.

Tolerance for "agrees with float": the largest logit error relative to the largest float logit, on random inputs
and randomly initialised models (int8 with 256 levels per tensor: a few percent of the output scale; measured 1-4%,
except a random-init ConvNeXt through onnxruntime's min/max calibration: 11%, 1.7% through PT2E's histogram
observer), and the same top-1 class on at least 5 of 6 images. The PT2E and QAT tests are slow (torchao traces its
conv-BN patterns with torch.export: tens of seconds on 2 loaded cores); the onnxruntime ones run by default.
"""
from __future__ import annotations

import zipfile
from importlib.util import find_spec

import pytest
import torch
import torch.nn as nn

import blockzoo
from blockzoo.deploy.quantization import (
    QuantizedModel,
    convert_qat,
    latency_ms,
    load_quantized,
    parity_error,
    prepare_qat,
    quantization_config,
    quantize,
)
from blockzoo.errors import ConfigError
from blockzoo.train import evaluate

REL_TOL = 0.15         # max |int8 - float| / max |float| over the logits

needs_ort = pytest.mark.skipif(find_spec("onnxruntime") is None,
                               reason="onnxruntime is not installed (pip install 'blockzoo[export]')")
needs_torchao = pytest.mark.skipif(find_spec("torchao") is None,
                                   reason="torchao is not installed (pip install 'blockzoo[quant]')")


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).detach().abs().max() / ref.abs().max())


class TinyNet(nn.Module):
    """conv-BN-ReLU, conv-BN-ReLU, pool, linear: the smallest net with the paper's conv+BN fold."""

    def __init__(self, c: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _tiny() -> tuple[nn.Module, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    m = TinyNet().eval()
    for bn in (m.features[1], m.features[4]):           # trained-looking BN statistics: the fold matters
        bn.weight.data.uniform_(0.2, 3.0)
        bn.running_var.uniform_(0.1, 4.0)
        bn.running_mean.uniform_(-1.0, 1.0)
    return m, [torch.randn(8, 1, 8, 8) for _ in range(2)], torch.randn(4, 1, 8, 8)


@needs_ort
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_100_small", "convnext_atto_small"])
def test_int8_model_runs_and_agrees_with_float(name, tmp_path):
    torch.manual_seed(0)
    m = blockzoo.create_model(name, num_classes=10, in_chans=1).eval()
    x = torch.randn(6, 1, 28, 28)
    q = quantize(m, [torch.randn(16, 1, 28, 28)], backend="onnxruntime", threads=1)
    assert isinstance(q, QuantizedModel) and not q.training and m.training is False
    with torch.no_grad():
        ref = m(x)
    y = q(x)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert _rel_err(y, ref) < REL_TOL and (y.argmax(1) == ref.argmax(1)).sum() >= 5
    q(torch.randn(1, 1, 28, 28))                              # dynamic batch
    path = q.save(tmp_path / "m.onnx")
    assert torch.equal(load_quantized(path, threads=1)(x), y)


def test_parity_error_by_hand():
    """Mean over the images of ||q(x_i) - f(x_i)|| / ||f(x_i)||: zero outputs give 1, a doubled output 1, a wrong
    image among four 1/4 (the per-image mean: one large image cannot hide the others)."""
    f = nn.Identity()
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [6.0, 8.0]])
    assert parity_error(f, f, x) == 0
    assert parity_error(lambda t: torch.zeros_like(t), f, x) == pytest.approx(1.0)
    assert parity_error(lambda t: 2 * t, f, x) == pytest.approx(1.0)
    assert parity_error(lambda t: t * torch.tensor([[1.0], [1.0], [1.0], [0.0]]), f, x) == pytest.approx(0.25)


@needs_ort
def test_a_quantized_model_that_disagrees_with_float_is_refused():
    """One outlier pixel in the calibration batch sets onnxruntime's min/max input range to [-1e4, 1e4] (scale ~78),
    so every ordinary pixel (|x| ~ 1) rounds to 0 and the INT8 net returns its bias logits: a silently wrong model
    before the parity check. quantize() now raises; max_rel_err=None hands it back (to measure a failure)."""
    m, calib, _ = _tiny()
    bad = [calib[0].clone()]
    bad[0][0, 0, 0, 0] = 1e4
    with pytest.raises(ConfigError, match=r"disagrees with float.*backend='pt2e'.*max_rel_err=None"):
        quantize(m, bad, backend="onnxruntime", threads=1)
    q = quantize(m, bad, backend="onnxruntime", threads=1, max_rel_err=None)
    assert parity_error(q, m, bad[0][1:]) > 0.5 and "parity_rel_err" not in q.info
    good = quantize(m, calib, backend="onnxruntime", threads=1)
    assert good.info["parity_rel_err"] == pytest.approx(parity_error(good, m, calib[0])) and \
        good.info["parity_rel_err"] < 0.1


@pytest.mark.slow
@needs_torchao
def test_pt2e_refuses_a_random_init_mobilenetv2_whose_logits_fall_below_the_scale_floor():
    """The benchmark's silent 'top-1 agree 0.00': a random-init MobileNetV2 in eval mode has logits of ~1e-9, below
    the PT2E x86 scale floor (eps 2**-12), so its INT8 logits were all zero; onnxruntime (no floor) keeps them."""
    torch.manual_seed(0)
    m = blockzoo.create_model("mobilenetv2_100_small", num_classes=10, in_chans=1).eval()
    calib = [torch.randn(8, 1, 28, 28)]
    with torch.no_grad():
        assert m(calib[0]).abs().max() < 1e-6
    with pytest.raises(ConfigError, match="backend='onnxruntime'"):
        quantize(m, calib, backend="pt2e")
    assert quantize(m, calib, backend="onnxruntime", threads=1).info["parity_rel_err"] < 0.2


@needs_ort
def test_onnx_weights_are_int8_per_channel_or_per_tensor_with_the_papers_scale():
    """BN folded into the conv, then per-channel symmetric weights: one scale per output channel, scale =
    max|w_c| / 127 of the folded weight, zero point 0; per-tensor: one scale for the layer, max|w| / 127."""
    import onnx
    from onnx import numpy_helper

    m, calib, _ = _tiny()
    folded = []   # BN folded by hand: w_c * gamma_c / sqrt(var_c + eps)
    for conv, bn in ((m.features[0], m.features[1]), (m.features[3], m.features[4])):
        folded.append(conv.weight.detach() * (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().view(-1, 1, 1, 1))
    for per_channel in (True, False):
        q = quantize(m, calib, backend="onnxruntime", per_channel=per_channel, threads=1)
        graph = onnx.load_model_from_string(q.onnx_bytes).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        w8 = [(n, v) for n, v in inits.items() if v.dtype.name == "int8" and v.ndim == 4]
        assert len(w8) == 2                                    # both convs' weights stored as int8
        deq = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
        for (name, w), wf in zip(sorted(w8, key=lambda t: t[1].shape[1]), folded):   # conv 1 has 1 input channel
            scale = inits[deq[name].input[1]]
            expect = wf.abs().amax(dim=(1, 2, 3)) / 127
            if not per_channel:
                expect = expect.max()
            assert scale.shape == tuple(expect.shape)
            torch.testing.assert_close(torch.from_numpy(scale).float(), expect, rtol=1e-5, atol=1e-7)
            assert int(abs(w).max()) == 127                 # the largest weight maps to +-127


@pytest.mark.slow
@needs_torchao
def test_pt2e_scheme_is_honoured_and_agrees_with_float(tmp_path):
    m, calib, x = _tiny()
    with torch.no_grad():
        ref = m(x)
    ops = {}
    for per_channel in (True, False):
        q = quantize(m, calib, backend="pt2e", per_channel=per_channel)
        assert _rel_err(q(x), ref) < REL_TOL
        ops[per_channel] = {str(n.target) for n in q.program.graph.nodes if n.op == "call_function"}
        # only the int8 weights are kept (the float ones they replace are dropped)
        assert {t.dtype for t in q.program.state_dict.values() if t.ndim == 4} == {torch.int8}
    assert any("dequantize_per_channel" in o for o in ops[True])
    assert not any("dequantize_per_channel" in o for o in ops[False])
    # the saved program holds the graph as JSON and the weights as raw bytes: no pickled example inputs
    path = q.save(tmp_path / "m.pt2")
    with zipfile.ZipFile(path) as z:
        assert not any(n.endswith(".pkl") for n in z.namelist())
    torch.testing.assert_close(load_quantized(path, backend="pt2e")(x), q(x))


@needs_torchao
def test_quantization_config_matches_the_paper():
    cfg = quantization_config()
    assert (cfg.input_activation.dtype, cfg.input_activation.qscheme) == (torch.uint8, torch.per_tensor_affine)
    assert (cfg.input_activation.quant_min, cfg.input_activation.quant_max) == (0, 255)
    w = cfg.weight
    assert (w.dtype, w.qscheme, w.ch_axis, w.quant_min, w.quant_max) == (torch.int8, torch.per_channel_symmetric, 0,
                                                                          -128, 127)
    w4 = quantization_config(weight_bits=4, qat=True).weight
    assert (w4.quant_min, w4.quant_max, w4.qscheme) == (-8, 7, torch.per_channel_symmetric)
    assert quantization_config(per_channel=False).weight.qscheme == torch.per_tensor_symmetric


@pytest.mark.slow
@needs_torchao
def test_qat_trains_evaluates_and_converts():
    m, calib, x = _tiny()
    m.train()
    prepared = prepare_qat(m, calib[0], weight_bits=8)
    opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
    loss = nn.functional.cross_entropy(prepared(calib[0]), torch.arange(8) % 4)
    loss.backward()
    assert all(p.grad is not None for p in prepared.parameters() if p.requires_grad)   # straight-through
    opt.step()
    batches = [(calib[1], torch.arange(8) % 4)]
    fake = evaluate(prepared, batches)                   # train()/eval() allowed on the QAT graph
    q = convert_qat(prepared, x, backend="pt2e")
    assert evaluate(q, batches)["acc"] == pytest.approx(fake["acc"], abs=0.26)
    prepared.eval()
    with torch.no_grad():
        assert _rel_err(q(x), prepared(x)) < REL_TOL
    assert q.info["qat"] and q.info["weight_bits"] == 8


@pytest.mark.slow
@needs_torchao
def test_four_bit_weights_take_at_most_16_levels_per_channel():
    m, calib, _ = _tiny()
    q = quantize(m, calib, backend="pt2e", weight_bits=4)
    ws = [t for t in q.program.state_dict.values() if t.ndim == 4]
    assert ws and all(int(w.min()) >= -8 and int(w.max()) <= 7 for w in ws)
    assert all(len(torch.unique(w[c])) <= 16 for w in ws for c in range(w.shape[0]))


def test_evaluate_runs_an_exported_graph():
    """torch.export graphs reject .eval(): evaluate() switches them with move_exported_model_to_eval instead."""
    m, calib, _ = _tiny()
    graph = torch.export.export(m, (calib[0],)).module()
    with pytest.raises(NotImplementedError):
        graph.eval()
    batches = [(calib[0], torch.arange(8) % 4), (calib[1], torch.arange(8) % 4)]
    assert evaluate(graph, batches) == evaluate(m, batches)


@needs_ort
def test_bad_options_raise_config_error():
    m, calib, _ = _tiny()
    with pytest.raises(ConfigError, match="backend"):
        quantize(m, calib, backend="tflite")
    with pytest.raises(ConfigError, match="weight_bits"):
        quantize(m, calib, weight_bits=3)
    with pytest.raises(ConfigError, match="calibration"):
        quantize(m, [], backend="onnxruntime")
    with pytest.raises(ConfigError, match="per_channel"):
        quantize(m, calib, per_channel="yes")
    with pytest.raises(ConfigError, match="8 bits"):
        quantize(m, calib, backend="onnxruntime", weight_bits=4)
    with pytest.raises(ConfigError, match=r"\.onnx or \.pt2"):
        load_quantized("model.pkl")
    with pytest.raises(ConfigError, match="max_rel_err"):
        quantize(m, calib, max_rel_err=0)


@needs_ort
def test_quantized_model_is_inference_only_and_saved_under_its_suffix(tmp_path):
    m, calib, x = _tiny()
    q = quantize(m, calib, threads=1)
    with pytest.raises(ConfigError, match="inference only"):
        q.train()
    assert q.eval() is q
    with pytest.raises(ConfigError, match=r"\.onnx"):
        q.save(tmp_path / "m.pt2")
    assert set(latency_ms(q, x, warmup=1, iters=2)) >= {"median", "min"}


class TwoConvs(nn.Module):
    """Two parallel 3x3 convs summed; ``fuse()`` (the deploy protocol) merges them into one conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)

    def fuse(self) -> nn.Module:
        c = nn.Conv2d(1, 4, 3, padding=1)
        c.weight.data = self.a.weight + self.b.weight
        c.bias.data = self.a.bias + self.b.bias
        return c


def test_export_of_the_deploy_form_merges_blocks_and_matches_eager(tmp_path):
    from blockzoo.deploy import export_model

    torch.manual_seed(0)
    m = nn.Sequential(TwoConvs(), nn.ReLU()).eval()
    x = torch.randn(2, 1, 8, 8)

    def convs(deploy: bool) -> int:
        res = export_model(m, tmp_path / f"{deploy}.pt2", format="torch-export", example=x, deploy=deploy)
        assert res["ok"]                                   # the written file against the eager original
        return sum("conv2d" in str(n.target) for n in torch.export.load(res["path"]).graph.nodes)
    assert (convs(False), convs(True)) == (2, 1)
    assert isinstance(m[0], TwoConvs)                      # the model itself is unchanged


@pytest.mark.slow
@needs_torchao
def test_inductor_backend_compiles_each_batch_size_and_agrees_with_float():
    torch.manual_seed(0)
    m = blockzoo.create_model("resnet20", num_classes=10, in_chans=1).eval()
    q = quantize(m, [torch.randn(8, 1, 28, 28)], backend="inductor")
    for b in (1, 4):
        x = torch.randn(b, 1, 28, 28)
        with torch.no_grad():
            assert _rel_err(q(x), m(x)) < REL_TOL
