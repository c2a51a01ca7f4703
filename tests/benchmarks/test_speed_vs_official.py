"""benchmarks/speed_vs_official.py: extraction of official files from a snapshot, and the smoke run end to end
(skipped where no snapshot of the official repository is on this machine). No timing is checked."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "speed_vs_official.py"
sys.path.insert(0, str(SCRIPT.parent))
import speed_vs_official as svo  # noqa: E402

MIRROR = Path(os.environ.get("BLOCKZOO_MIRROR", "/work/.mirror"))


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_extract_flattens_files_and_keeps_packages(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "models").mkdir()
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    (src / "models" / "net.py").write_text("Y = 2\n")
    _git("init", "-q", cwd=src)
    _git("add", ".", cwd=src)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=src)
    out = tmp_path / "out"
    svo.extract(src / ".git", ("pkg", "models/net.py"), out)
    assert (out / "pkg" / "__init__.py").read_text() == "X = 1\n" and (out / "net.py").read_text() == "Y = 2\n"
    with pytest.raises(FileNotFoundError, match="missing.py is not in the snapshot"):
        svo.extract(src / ".git", ("missing.py",), out)
    assert svo.mirror_dir(tmp_path, "no/such") is None


@pytest.mark.skipif(svo.mirror_dir(MIRROR, svo.OFFICIAL[svo.SMOKE_MODELS[0]][0]) is None,
                    reason="no snapshot of the official G-GhostNet code on this machine")
def test_smoke_run(tmp_path):
    r = subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "speed_vs_official.json").read_text())
    assert list(res["models"]) == list(svo.SMOKE_MODELS)
    assert "official time / blockzoo time" in (tmp_path / "speed_vs_official.md").read_text()
