"""blockzoo.weights.hub: pretrained=True finds timm's weights in the cache without network, downloads them once
(atomically) when it can, and fails with one clear line naming the URL and checkpoint_path= when the hub is not
reachable; models without published weights or timm counterpart say so."""
from __future__ import annotations

import io
import sys
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import save

import blockzoo
from blockzoo.errors import CheckpointError, ConfigError
from blockzoo.weights import hub


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cache, no huggingface_hub, and a network that records and refuses every request."""
    monkeypatch.setenv("BLOCKZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)   # `import huggingface_hub` raises ImportError
    requests = []

    def refuse(url, timeout=None):
        requests.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return requests


@pytest.fixture
def resnet18_file(timm_layout, timm_layout_state) -> bytes:
    return save(timm_layout_state(timm_layout("resnet18")))


def test_an_unreachable_hub_gives_one_clear_line(offline):
    with pytest.raises(CheckpointError) as e:
        blockzoo.create_model("resnet18", pretrained=True)
    msg = str(e.value)
    url = "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors"
    assert offline == [url]
    assert "\n" not in msg and url in msg and "not reachable" in msg and "checkpoint_path=" in msg
    assert not hub.cache_dir().exists() or not any(hub.cache_dir().iterdir())   # no partial file left behind


def test_cached_weights_load_without_network(offline, resnet18_file):
    hub.cache_dir().mkdir(parents=True)
    (hub.cache_dir() / "resnet18.a1_in1k.safetensors").write_bytes(resnet18_file)
    model = blockzoo.create_model("resnet18", pretrained=True)
    assert offline == []
    ref = blockzoo.create_model("resnet18", checkpoint_path=str(hub.cache_dir() / "resnet18.a1_in1k.safetensors"))
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())


def test_weights_are_downloaded_once_into_the_cache(offline, monkeypatch, resnet18_file):
    def serve(url, timeout=None):
        offline.append(url)
        return io.BytesIO(resnet18_file)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    blockzoo.create_model("resnet18", pretrained=True)
    blockzoo.create_model("resnet18", pretrained=True)
    assert len(offline) == 1
    assert [p.name for p in hub.cache_dir().iterdir()] == ["resnet18.a1_in1k.safetensors"]


def test_models_without_published_weights_say_so(offline):
    with pytest.raises(ConfigError, match="timm publishes no weights for timm's mobilenetv2_035"):
        blockzoo.create_model("mobilenetv2_035", pretrained=True)
    with pytest.raises(ConfigError, match="timm registers no model"):
        blockzoo.create_model("ecaresnet18", pretrained=True)
    with pytest.raises(ConfigError, match="'resnet20' has no timm counterpart"):
        blockzoo.create_model("resnet20", pretrained=True)
    assert offline == []


@pytest.mark.parametrize("num_classes", [10, 0])
def test_another_class_count_keeps_its_own_classifier_as_in_timm(offline, resnet18_file, num_classes):
    hub.cache_dir().mkdir(parents=True)
    (hub.cache_dir() / "resnet18.a1_in1k.safetensors").write_bytes(resnet18_file)
    torch.manual_seed(3)
    model = blockzoo.create_model("resnet18", num_classes=num_classes, pretrained=True)
    torch.manual_seed(3)
    fresh = blockzoo.create_model("resnet18", num_classes=num_classes)
    full = blockzoo.create_model("resnet18", pretrained=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, (fresh if k.startswith("fc.") else full).state_dict()[k]), k
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, num_classes or 512)
