"""blockzoo.report.html: compare's self-contained report.html (leaderboard, paired statistics, trade-off plot and
training curves embedded as PNG, budget, command, machine); a slow test renders it in headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from blockzoo.cli import main
from blockzoo.report.compare import _safe, write_reports
from blockzoo.report.html import REPORT_FILE, write_html_report

CHROMIUM = "/usr/bin/chromium"


def variant(label: str, acc: list[float], diff: float, p: float | None, folder: Path) -> dict:
    runs = []
    for seed, a in enumerate(acc):
        run_dir = folder / "runs" / _safe(label) / f"seed{seed}-abcd1234"   # as compare names it
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(
            {"epoch": e, "step": 2 * e, "train_loss": 2 / e, "train_acc": a / 2 * e, "test_loss": 2.1 / e,
             "test_acc": a / 2 * e, "lr": 0.1}) + "\n" for e in (1, 2)))
        runs.append({"seed": seed, "config_hash": "abcd1234",
                     "run_dir": f"somewhere/runs/{_safe(label)}/{run_dir.name}"})
    m = sum(acc) / len(acc)
    return {"label": label, "slots": {}, "params": 1000, "macs": 2_000_000, "latency_ms": 0.5, "latency_iqr_ms": 0.1,
            "latency_batch": 1, "latency_threads": 1, "uncounted_ops": {}, "seeds": [0, 1], "runs": runs,
            "test_acc": acc, "test_acc_mean": m, "test_acc_std": 0.01, "test_acc_min": min(acc),
            "test_acc_max": max(acc), "train_time_s_mean": 1.5, "train_img_per_s_mean": 300.0,
            "vs_baseline": {"n": 2, "mean_diff": diff, "std_diff": 0.005, "t": 4.0 if p else float("nan"),
                            "p_value": p}}


def fake_results(folder: Path) -> dict:
    return {
        "config": {"command": "blockzoo compare resnet20 --vary 'attn=none,<b>eca</b>'", "model_kwargs": {},
                   "fixed": {"norm": "bn"}},
        "machine": {"cpu": "Test CPU 9000", "threads": 2, "torch": "2.x", "python": "3.11", "cuda": None},
        "model": "resnet20", "data": "synthetic", "train_images": 32, "test_images": 256, "image_size": [32, 32],
        "started": "2026-12-01T10:00:00", "finished": "2026-12-01T10:01:00",
        "variants": [variant("attn=none", [0.50, 0.52], 0.0, None, folder),
                     variant("attn=<b>eca</b>", [0.55, 0.58], 0.055, 0.0391, folder)],
        "budget": {"data": "synthetic", "subset": 32, "epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.0125,
                   "weight_decay": 5e-4, "schedule": "onecycle", "label_smoothing": 0.1, "precision": "fp32",
                   "channels_last": False, "augment": True, "seeds": [0, 1]},
    }


class Doc(HTMLParser):
    """Collects the tags and their attributes, and the text of table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self._cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._cell = tag in ("td", "th")
        if self._cell:
            self.cells.append("")

    def handle_endtag(self, tag):
        self._cell = self._cell and tag not in ("td", "th")

    def handle_data(self, data):
        if self._cell:
            self.cells[-1] += data


def test_report_is_self_contained_with_table_stats_plots_budget_command_machine(tmp_path):
    results = fake_results(tmp_path)
    write_reports(results, tmp_path)                       # compare's writer also writes report.html
    text = (tmp_path / REPORT_FILE).read_text()
    doc = Doc()
    doc.feed(text)
    # no external resource: no link, no script, every image an inline PNG
    assert not [t for t, _ in doc.tags if t in ("script", "link", "iframe", "object")]
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "url(" not in text
    imgs = {a["id"]: a["src"] for t, a in doc.tags if t == "img"}
    assert set(imgs) == {"tradeoff", "curves"}
    for src in imgs.values():
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 500
    assert base64.b64decode(imgs["tradeoff"].split(",", 1)[1]) == (tmp_path / "tradeoff.png").read_bytes()
    # the leaderboard (sorted by mean accuracy), mean ± std, paired difference and p
    cells = doc.cells
    assert "attn=<b>eca</b>" in cells and "attn=none (baseline)" in cells     # escaped, shown literally
    assert cells.index("attn=<b>eca</b>") < cells.index("attn=none (baseline)")
    assert "56.50 ± 1.00" in cells and "+5.50 ± 0.50" in cells and "0.039" in cells
    assert "+5.500" in cells and "0.0391" in cells                  # the paired statistics table
    for setting in ("epochs", "2", "seeds", "0, 1", "training images", "32 (subset)", "every variant: norm", "bn",
                    "Test CPU 9000", "none"):
        assert setting in cells, setting
    assert "blockzoo compare resnet20 --vary &#x27;attn=none,&lt;b&gt;eca&lt;/b&gt;&#x27;" in text


def test_only_a_baseline_and_no_command(tmp_path):
    results = fake_results(tmp_path)
    results["variants"] = results["variants"][:1]
    results["config"]["command"] = ""
    text = write_html_report(results, tmp_path).read_text()        # no tradeoff.png: said, not broken
    assert "nothing to pair" in text and "no command" in text and "trade-off plot" in text
    assert text.count("<img ") == 1


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = tmp_path / "cmp"
    assert main(["compare", "resnet20", "--vary", "attn=none,eca", "--seeds", "2", "--data", "synthetic",
                 "--subset", "32", "--epochs", "1", "--batch-size", "16", "--no-progress", "--precision", "fp32",
                 "--no-channels-last", "--threads", "1", "--out", str(out)]) == 0
    # a copy with a probe that writes each image's decoded width into the page once it has loaded
    probe = tmp_path / "probe.html"
    js = ('<script>window.addEventListener("load", function () { var d = document.createElement("div"); '
          'd.id = "probe"; d.textContent = Array.from(document.images).map(function (i) { return i.id + "=" + '
          'i.naturalWidth; }).join(","); document.body.appendChild(d); });</script>')
    probe.write_text((out / REPORT_FILE).read_text().replace("</body>", js + "</body>"))
    shutil.copy(out / REPORT_FILE, tmp_path / "copy.html")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    widths = dict(kv.split("=") for kv in re.search(r'<div id="probe">([^<]*)</div>', dom).group(1).split(","))
    assert set(widths) == {"tradeoff", "curves"} and all(int(w) > 0 for w in widths.values()), widths
    rows = re.search(r'<table id="leaderboard">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert rows.count("<tr") == 2 and "attn=none (baseline)" in rows and "attn=eca" in rows
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--window-size=1200,2000", f"--screenshot={shot}", (tmp_path / "copy.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.size == (1200, 2000) and hi - lo > 100   # it painted something
