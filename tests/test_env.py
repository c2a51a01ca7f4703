"""blockzoo.env: native bf16 detection and the ``auto`` precision built on it."""
from __future__ import annotations

import torch

from blockzoo import env
from blockzoo.train import trainer


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    """bf16 counts as native on a CPU only with AVX512-BF16 or AMX tiles; a plain AVX-512 CPU emulates it."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not env.native_bf16("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert env.native_bf16("cpu") and env.native_bf16(torch.device("cpu"))
    assert not env.native_bf16("meta")


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "native_bf16", lambda dev: False)
    assert trainer.amp_settings("auto", cpu) == (False, None, False)                 # fp32: bf16 would be emulated
    assert trainer.amp_settings("bf16", cpu) == (True, torch.bfloat16, False)        # explicit bf16 is still bf16
    monkeypatch.setattr(trainer, "native_bf16", lambda dev: True)
    assert trainer.amp_settings("auto", cpu) == (True, torch.bfloat16, False)
    assert trainer.amp_settings("auto", cpu) == trainer.amp_settings("amp", cpu)
