"""benchmarks/claims/connection_hyper_vit.py (S001 in a ViT, issue 13's connection claim runs): the model the script
trains (the variants differ only in their connections, whose static weights start at the residual) and its smoke mode
end to end (synthetic data; writes a claims-lab verdict). The verdict rule is connection_hyper.py's (tested there)."""
import json
from pathlib import Path

import pytest
import torch

from blockzoo.blocks.connection.hyper import HyperConnection
from blockzoo.report.verdicts import load_verdicts
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "claims" / "connection_hyper_vit.py"


class _Data:
    num_classes, in_chans = 10, 1


def test_variants_share_everything_but_the_connections():
    s = load_script(SCRIPT)
    assert s.RULE == load_script(SCRIPT.parent / "connection_hyper.py").RULE
    models = {}
    for key, connection in s.VARIANTS.items():
        torch.manual_seed(0)
        models[key] = s._vit(_Data, connection, smoke=False)
    ref = models["residual"].state_dict()
    sd = models["hc"].state_dict()
    assert {k: v for k, v in sd.items() if ".merges." not in k}.keys() == ref.keys()
    assert all(torch.equal(sd[k], v) for k, v in ref.items())   # the same initial weights per seed
    n = [hc.streams for hc in models["hc"].modules() if isinstance(hc, HyperConnection)]
    assert n == [2] * 2 * s.VIT["depth"] and models["hc"].patch_embed.grid_size == (4, 4)


@pytest.mark.slow
def test_smoke_run_writes_a_verdict(tmp_path):
    assert load_script(SCRIPT).main(["--smoke", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    assert [r["name"] for r in load_verdicts(tmp_path)] == ["connection_hyper_vit"]
    rec = json.loads((tmp_path / "connection_hyper_vit.json").read_text())
    assert rec["verdict"] == "inconclusive" and rec["summary"].startswith("SMOKE RUN")   # a smoke run decides nothing
    assert rec["paper"]["id"] == "S001" and set(rec["results"]["runs"]) == {"residual", "hc"}
