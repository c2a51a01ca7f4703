"""CPU speed of blockzoo next to the papers' official PyTorch code, for the architectures timm does not have.

    .venv/bin/python benchmarks/speed_vs_official.py --threads 1            # every architecture whose code is here
    .venv/bin/python benchmarks/speed_vs_official.py --models hornet_tiny_7x7,resnet50_ibn_a --reps 9
    .venv/bin/python benchmarks/speed_vs_official.py --smoke                # tiny sizes (the test runs this)

The same protocol as ``speed_vs_timm.py`` (whose timing and summary code this script reuses): the blockzoo model and
the official model (same parameter count, asserted; random weights) are timed rep by rep, interleaved, in eval fp32,
eval bf16 and a training step; the ratio is the median of the per-rep ratios official time / blockzoo time (> 1:
blockzoo faster).

Where the official code comes from: the repositories named in :data:`OFFICIAL`, read from local snapshots (``--mirror``,
default ``$BLOCKZOO_MIRROR`` or ``/work/.mirror``: the project's ``fetch`` tool puts snapshots there as
``owner+name/repo``, a bare git directory). The files are extracted with ``git show`` into a temporary folder and
imported from there; nothing of them enters the package. Their imports: torch, timm (the optional oracle, through
``benchmarks/timm_shim``), einops (FcaFormer, SReT: ``pip install einops``) and ``pkg_resources`` (TransNeXt, only to
look for its CUDA extension: a stub that reports it missing stands in, so the official plain-PyTorch path is the one
timed, as on any CPU). An architecture whose snapshot or dependency is missing is skipped with the reason, listed in
the results. Architectures whose official code needs CUDA-only or heavy dependencies, or has no official PyTorch
release, are not in the table: UniRepLKNet and LSNet (timm-style ports exist upstream but were not snapshotted here),
SpaRTAN, MGIC, FMViT (no code released) -- the results say so.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_vs_timm as svt  # noqa: E402  (the shared timing protocol)
from blockzoo.env import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent

#: blockzoo name -> (repository, files or folders to extract, module to import, builder, builder kwargs)
OFFICIAL: dict[str, tuple[str, tuple[str, ...], str, str, dict[str, Any]]] = {
    "hornet_tiny_7x7": ("raoyongming/HorNet", ("hornet.py",), "hornet", "hornet_tiny_7x7", {}),
    "hornet_tiny_gf": ("raoyongming/HorNet", ("hornet.py",), "hornet", "hornet_tiny_gf", {}),
    "g_ghost_regnetx_032": ("huawei-noah/Efficient-AI-Backbones", ("g_ghost_pytorch/g_ghost_regnet.py",),
                            "g_ghost_regnet", "g_ghost_regnetx_032", {}),
    "resnet50_ibn_a": ("XingangPan/IBN-Net", ("ibnnet",), "ibnnet.resnet_ibn", "resnet50_ibn_a", {}),
    "resnet50_ibn_b": ("XingangPan/IBN-Net", ("ibnnet",), "ibnnet.resnet_ibn", "resnet50_ibn_b", {}),
    "simplenetv1_5m_m1": ("Coderx7/SimpleNet_Pytorch", ("imagenet/simplenet.py",), "simplenet", "simplenetv1_5m_m1",
                          {}),
    "fcaformer_l1": ("hkzhang-git/FcaFormer", ("image_classification/models/fcaformer.py",), "fcaformer",
                     "fcaformer_l1", {}),
    "sret_t": ("szq0214/SReT", ("SReT.py",), "SReT", "SReT_T", {}),
    "transnext_micro": ("DaiShiResearch/TransNeXt",
                        ("classification/transnext.py", "classification/attention_native.py"), "transnext",
                        "transnext_micro", {}),
}
NOT_TIMED = {"unireplknet_*, lsnet_*": "official code not snapshotted here (their repos need extra set-up)",
             "spartan*, mgic*": "no official PyTorch code used here", "fmvit": "not implemented (no code released)"}
SMOKE_MODELS = ("g_ghost_regnetx_032",)
#: official models whose conv biases right before a BN are dropped (redundant; blockzoo's conv units have none: see
#: blockzoo/models/simplenet.py), so that both compute the same function class with the same parameter count
STRIP_CONV_BIAS = {"simplenetv1_5m_m1"}


def mirror_dir(root: Path, repo: str) -> Path | None:
    """The bare git directory of ``repo``'s snapshot under ``root``, or None."""
    base = root / repo.replace("/", "+")
    for d in (base / "repo", base):
        if (d / "HEAD").is_file():
            return d
    return None


def extract(git_dir: Path, paths: tuple[str, ...], dest: Path) -> None:
    """``git show`` each file (a folder: every file under it) of the snapshot's HEAD into ``dest``, flattening the
    leading folders of single files (so ``models/x.py`` imports as ``x``) and keeping a folder's name (a package)."""
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "--name-only", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.split()
    for p in paths:
        files = [f for f in listing if f == p or f.startswith(p.rstrip("/") + "/")]
        if not files:
            raise FileNotFoundError(f"{p} is not in the snapshot {git_dir}")
        for f in files:
            rel = Path(f).name if f == p else Path(Path(p).name) / Path(f).relative_to(p)
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{f}"], check=True,
                                           capture_output=True).stdout)


def _stub_pkg_resources() -> None:
    """TransNeXt's official code asks pkg_resources whether its CUDA extension is installed; answer "no"."""
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        return
    mod = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):
        pass

    def get_distribution(name: str) -> None:
        raise DistributionNotFound(name)

    mod.DistributionNotFound, mod.get_distribution = DistributionNotFound, get_distribution
    sys.modules["pkg_resources"] = mod


def build_official(name: str, root: Path, work: Path) -> torch.nn.Module:
    """The official model of ``name``, built from the snapshot (raises with the reason if it cannot be)."""
    repo, paths, module, builder, kw = OFFICIAL[name]
    git_dir = mirror_dir(root, repo)
    if git_dir is None:
        raise FileNotFoundError(f"no snapshot of {repo} under {root} (fetch github:{repo})")
    dest = work / repo.replace("/", "+")
    if not dest.exists():
        extract(git_dir, paths, dest)
    svt.import_timm()                              # the official files import timm.models.layers / registry
    _stub_pkg_resources()
    if str(dest) not in sys.path:
        sys.path.insert(0, str(dest))
    return getattr(importlib.import_module(module), builder)(**kw)


def build_pair(name: str, root: Path, work: Path, num_classes: int | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    from blockzoo.registry import create_model
    torch.manual_seed(0)
    off = build_official(name, root, work)
    kw = {} if num_classes is None else {"num_classes": num_classes}
    torch.manual_seed(0)
    bz = create_model(name, **kw)
    if num_classes is not None:
        off.reset_classifier(num_classes) if hasattr(off, "reset_classifier") else None
    if name in STRIP_CONV_BIAS:
        for m in off.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias = None
    if num_classes is None and svt.n_params(bz) != svt.n_params(off):
        raise AssertionError(f"{name}: blockzoo has {svt.n_params(bz):,} parameters, the official code "
                             f"{svt.n_params(off):,}: not the same architecture")
    return bz, off


def render(res: dict[str, Any]) -> str:
    text = svt.render({**res, "timm_version": "?"})
    text = text.replace("# blockzoo vs timm ?: CPU speed, same architectures, interleaved",
                        "# blockzoo vs the official code: CPU speed, same architectures, interleaved")
    text = text.replace("timm time / blockzoo time", "official time / blockzoo time").replace("bz / timm", "bz / off.")
    skipped = [f"- {n}: {why}" for n, why in res["skipped"].items()]
    return text + ("\nNot timed:\n" + "\n".join(skipped) + "\n" if skipped else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help=f"comma-separated, from {', '.join(OFFICIAL)} (default: all)")
    ap.add_argument("--mirror", type=Path, default=Path(os.environ.get("BLOCKZOO_MIRROR", "/work/.mirror")),
                    help="folder of the repository snapshots (owner+name/repo)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one model, 2 reps: checks the script runs")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.img, args.reps, args.warmup, args.threads = 2, 64, 2, 1, 1
    names = args.models.split(",") if args.models else list(SMOKE_MODELS if args.smoke else OFFICIAL)
    unknown = [n for n in names if n not in OFFICIAL]
    if unknown:
        raise SystemExit(f"no official code listed for {', '.join(unknown)}; choose from {', '.join(OFFICIAL)}")
    torch.set_num_threads(args.threads)
    modes = svt.MODES
    res: dict[str, Any] = dict(command=shlex.join(["python", *sys.argv]), machine=machine(args.threads),
                               load_before=svt._load(), modes=list(modes), models={},
                               skipped={k: v for k, v in NOT_TIMED.items()} if not args.smoke else {},
                               args={k: getattr(args, k) for k in ("batch", "img", "threads", "reps", "warmup")},
                               sources={n: f"github.com/{OFFICIAL[n][0]}" for n in names})
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"speed_vs_official{args.tag}"
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            try:
                bz, off = build_pair(name, args.mirror, Path(work), 10 if args.smoke else None)
            except (ImportError, FileNotFoundError, subprocess.CalledProcessError) as e:
                res["skipped"][name] = f"{type(e).__name__}: {e}"
                print(f"{name:22s} skipped: {e}", flush=True)
                continue
            r = svt.time_pair(bz, off, modes, args.batch, args.img, args.reps, args.warmup)
            res["models"][name] = {"params": svt.n_params(bz), **r}
            print(f"{name:22s} " + "  ".join(f"{m} {r[m]['ratio']:.2f} [{r[m]['paired_p25']:.2f}-"
                                              f"{r[m]['paired_p75']:.2f}]" for m in modes), flush=True)
            del bz, off
            svt.add_geomean(res)
            res["load_after"] = svt._load()
            res["written"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            Path(f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
            Path(f"{stem}.md").write_text(render(res), encoding="utf-8")
    if not res["models"]:
        print("no architecture could be timed: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items()))
        return 1
    print("geometric mean: " + ", ".join(f"{k} {v:.3f}" for k, v in res["geomean"].items()))
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
