"""The command line (blockzoo.cli, blockzoo.data.cli): --help everywhere, smoke runs, and every failure as one clear
line with the documented exit status (2 user error, 1 internal error / NaN loss, 130 interrupted)."""
import json
import shlex
import subprocess
import sys

import pytest
import torch

import blockzoo.train
from blockzoo import ConfigError, create_model
from blockzoo.cli import _esc, _print_info, main
from blockzoo.data import cli as data_cli
from blockzoo.train import NonFiniteLossError
from blockzoo.train.config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig

TINY_TRAIN = ["--data", "synthetic", "--subset", "32", "--epochs", "1", "--batch-size", "32", "--no-progress",
              "--precision", "fp32", "--no-channels-last"]


def one_error_line(err: str, prefix: str = "error: ") -> str:
    """stderr holds exactly one line, starting with ``prefix``, and no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


# ------------------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("cmd", [[], ["list"], ["info"], ["profile"], ["train"], ["compare"], ["docs"], ["claims"],
                                 ["data"], ["data", "fetch"], ["data", "list"], ["data", "bench"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_recipe_sets_the_defaults_of_the_flags_not_given():
    from blockzoo.cli import _train_kwargs, build_parser
    from blockzoo.train.config import RECIPES
    p = build_parser()
    fast = _train_kwargs(p.parse_args(["train", "speednet", "--recipe", "fast", "--label-smoothing", "0.1",
                                       "--no-lookahead"]))
    assert fast["label_smoothing"] == 0.1 and fast["lookahead"] is False      # given explicitly (= the defaults)
    assert all(fast[k] == v for k, v in RECIPES["fast"].items() if k not in ("label_smoothing", "lookahead"))
    plain = _train_kwargs(p.parse_args(["compare", "resnet20", "--vary", "attn=none,se"]), compare=True)
    assert plain == {k: v for k, v in TrainConfig().to_dict().items() if k in plain}


def test_train_help_one_default_each_with_description_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())   # argparse wraps lines
    for choices in (OPTIMIZERS, SCHEDULES, PRECISIONS):
        assert "{" + ",".join(choices) + "}" in text
    assert text.count("(default: sgd)") == 1 and "(default: None)" not in text and "default: 10)" in text
    assert "--nesterov, --no-nesterov Nesterov momentum (sgd) (default: on)" in text
    # every field has a description; every generated flag carries it and shows its default once
    assert all(f.metadata["help"] for f in TrainConfig.__dataclass_fields__.values())
    from blockzoo.cli import build_parser
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.dest in {f.name for f in TrainConfig.__dataclass_fields__.values()}:
            field = TrainConfig.__dataclass_fields__[action.dest]
            assert action.help.startswith(field.metadata["help"]), action.dest
            assert action.help.count("default") <= 1 + field.metadata["help"].count("default"), action.help


def test_data_cli_is_blockzoo_data(capsys, monkeypatch):
    assert data_cli.main(["list"]) == 0
    assert "fashion-mnist" in capsys.readouterr().out
    assert data_cli.main(["fetch", "nope"]) == 2
    assert "invalid choice: 'nope'" in one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(sys, "argv", ["python -m blockzoo.data", "bench", "synthetic", "--epochs", "0"])
    assert data_cli.main() == 2   # sys.argv by default
    assert "--epochs: expected an integer >= 1" in one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------------------- smoke
def test_cli_smoke(capsys, tmp_path):
    assert main(["list", "blocks", "--slot", "attn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"se", "eca", "coord"} <= {b["name"] for b in out["blocks"]}
    assert main(["info", "eca", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper"]["arxiv"] == "1910.03151"
    assert main(["profile", "resnet20", "--input", "1,28,28", "--set", "attn=eca", "--no-latency", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["params"] == 269_461 and rep["macs"] > 0
    assert main(["profile", "eca", "--channels", "64", "--input", "64,8,8", "--no-latency", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 3
    assert main(["profile", "se(reduction=8)", "--channels", "64", "--no-latency", "--json"]) == 0  # inline options
    assert json.loads(capsys.readouterr().out)["params"] == 64 * 8 + 8 + 8 * 64 + 64
    out_dir = tmp_path / "run [/x]"     # rich markup in a user string is printed literally
    assert main(["train", "resnet20", *TINY_TRAIN, "--out", str(out_dir)]) == 0
    assert (out_dir / "result.json").exists()
    assert f"results in {out_dir}" in " ".join(capsys.readouterr().out.split())


def test_python_m_blockzoo_runs():
    r = subprocess.run([sys.executable, "-m", "blockzoo", "list", "models", "resnet2*", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "resnet20" in r.stdout


# ---------------------------------------------------------------------------------------------------- user errors
def test_cli_errors_are_one_clear_line(capsys):
    assert main(["info", "ecaa"]) == 2
    assert "Did you mean: eca" in one_error_line(capsys.readouterr().err)
    assert main(["profile", "resnet20", "--set", "attn=bn", "--no-latency"]) == 2
    assert "cannot go into the 'attn' slot" in one_error_line(capsys.readouterr().err)
    assert main(["train", "resnet20", "--data", "nope", "--epochs", "1", "--no-progress"]) == 2
    assert "nope" in one_error_line(capsys.readouterr().err)


BAD_INPUTS = [
    (["compare", "resnet20", "--vary", "attn=none,se", "--seeds", "3:1"], "'3:1' gives no seed"),
    (["compare", "resnet20", "--vary", "attn=none,se", "--seeds", "abc"], "--seeds: expected N"),
    (["compare", "resnet20", "--vary", "attn=none,se", "--seeds", "0"], "'0' gives no seed"),
    (["compare", "resnet20", "--vary", "attn=none,se", "--seeds", "1,1"], "seeds must be distinct"),
    (["compare", "resnet20", "--vary", "attn=none,se", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["profile", "resnet20", "--num-classes", "-3"], "--num-classes: expected an integer >= 0, got '-3'"),
    (["train", "resnet20", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["train", "resnet20", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["train", "resnet20", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["train", "resnet20", "--weight-decay", "inf"], "--weight-decay must be a finite number >= 0"),
    (["train", "resnet20", "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["train", "resnet20", "--epochs", "two"], "--epochs: invalid int value: 'two'"),
    (["train", "resnet20", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["train", "resnet20", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["train", "resnet20", "--optimizer", "adam"], "--optimizer: invalid choice: 'adam'"),
    (["train", "resnet20", "--set", "attn"], "--set expects SLOT=BLOCK"),
    (["train", "resnet20", "--model-arg", "in_chans=3"], "in_chans is set by the dataset"),
    (["train", "resnet20", "--model-arg", "2=x"], "--model-arg expects KEY=VALUE"),
    (["train", "resnet20", "--device", "warp"], "--device 'warp' is not a device"),
    (["train", "resnet20", "--resume", "--overwrite"], "contradict"),
    (["profile", "resnet20", "--input=-1,32,32"], "--input: expected C,H,W"),
    (["profile", "resnet20", "--input", "3,0,32"], "--input: expected C,H,W"),
    (["profile", "resnet20", "--input", "3,32"], "--input: expected C,H,W"),
    (["profile", "resnet20", "--threads", "0"], "--threads: expected an integer >= 1, got '0'"),
    (["profile", "resnet20", "--batch-size", "0"], "--batch-size: expected an integer >= 1, got '0'"),
    (["profile", "resnet20", "--model-arg", "num_classes=3"], "num_classes is set by --num-classes"),
    (["profile", "eca", "--set", "attn=se"], "--set and --model-arg apply to models"),
    (["profile", "se(reduction=0)"], "reduction must be a finite number > 0, got 0"),
    (["profile", "eca", "--channels", "32", "--input", "64,8,8"], "--channels 32 contradicts --input"),
    (["list", "--slot", "nope"], "unknown slot 'nope'"),
    (["data", "bench", "--threads", "0"], "--threads: expected an integer >= 1"),
    (["nope"], "invalid choice: 'nope'"),
]


@pytest.fixture
def nothing_runs(monkeypatch):
    """A bad input must fail before any work: training, comparing or profiling here is a failure (exit 1)."""
    def boom(*args, **kwargs):
        raise AssertionError("work started despite a bad input")
    for target in ("blockzoo.train.train", "blockzoo.report.compare.run_compare", "blockzoo.profile.profile_model",
                   "blockzoo.data.cli.bench_loader"):
        monkeypatch.setattr(target, boom)


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(argv, message, capsys, nothing_runs):
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_unwritable_out_fails_before_training(tmp_path, capsys, nothing_runs):
    (tmp_path / "a-file").write_text("x")
    assert main(["train", "resnet20", *TINY_TRAIN, "--out", str(tmp_path / "a-file" / "run")]) == 2
    assert "is a file, not a folder; choose another --out" in one_error_line(capsys.readouterr().err)
    assert main(["compare", "resnet20", "--vary", "attn=none,se", *TINY_TRAIN,
                 "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    if sys.platform.startswith("linux"):   # no file can be created in /proc, not even by root
        assert main(["train", "resnet20", *TINY_TRAIN, "--out", "/proc/blockzoo-run"]) == 2
        assert "--out /proc/blockzoo-run is not writable" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == [tmp_path / "a-file"]   # the probe leaves nothing behind


def test_cuda_device_without_cuda(monkeypatch, capsys, nothing_runs):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in (["train", "resnet20", "--device", "cuda"], ["profile", "resnet20", "--device", "cuda:0"],
                 ["compare", "resnet20", "--vary", "attn=none,se", "--device", "cuda"]):
        assert main(argv) == 2
        assert "CUDA is not available" in one_error_line(capsys.readouterr().err)


def test_unknown_model_option_is_one_clear_line(capsys, nothing_runs):
    assert main(["profile", "resnet20", "--no-latency", "--model-arg", "attn_stage=(2,)"]) == 2
    assert "has no option 'attn_stage'" in one_error_line(capsys.readouterr().err)
    # train checks --model-arg against the constructor's options before loading data or training, listing them
    assert main(["train", "resnet20", *TINY_TRAIN, "--model-arg", "attn_stage=(2,)"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "has no option 'attn_stage'" in err and "zero_init_last" in err
    assert main(["compare", "resnet20", "--vary", "attn=none,eca", *TINY_TRAIN, "--model-arg", "drop_rat=0.1"]) == 2
    assert "has no option 'drop_rat'" in one_error_line(capsys.readouterr().err)
    # a misspelt *block* option is not blamed on the model
    with pytest.raises(ConfigError, match="block 'se' has no option 'reductoin'"):
        create_model("resnet20", attn="se(reductoin=8)")


def test_list_pattern_that_matches_nothing_says_so(capsys):
    """Exit status 0 (an empty listing is an answer), the note on stderr with close names; --json stays JSON."""
    assert main(["list", "zzz*"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and one_error_line(err, "no blocks or models match 'zzz*'")
    assert main(["list", "resnt"]) == 0
    err = one_error_line(capsys.readouterr().err, "no blocks or models match")
    assert "close names: resnet" in err and "'*resnt*'" in err
    assert main(["list", "blocks", "sse", "--slot", "mixer", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"blocks": []} and "of slot 'mixer'" in err
    assert main(["list", "x[/y]"]) == 0   # rich markup in the pattern
    assert "match 'x[/y]'" in capsys.readouterr().err


def test_list_info_claims_show_paper_titles(capsys):
    assert main(["list", "blocks", "--slot", "attn", "--json"]) == 0
    papers = {b["name"]: b["paper"] for b in json.loads(capsys.readouterr().out)["blocks"]}
    assert papers["eca"] == "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks (2020) [S003]"
    assert papers["se"] == "Squeeze-and-Excitation Networks (2018)"
    assert main(["info", "eca"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "paper: Wang et al., ECA-Net: Efficient Channel Attention" in text and "(CVPR 2020)" in text
    assert "arXiv:1910.03151 [S003]" in text
    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["paper"] is None or "(" in r["paper"] for r in rows)
    assert not any(r["paper"].startswith("S0") for r in rows if r["paper"])


def test_rich_markup_in_strings_is_printed_literally(capsys):
    info = {"name": "x[/y]", "kind": "block", "slot": "attn", "summary": "[bold]not bold[/] [/z]", "paper": None,
            "requires": {"layout": "NCHW", "min_size": 1, "keeps_channels": True, "fixed_resolution": False},
            "notes": "[/]", "claims": [{"status": "tested", "text": "[red]x", "check": None}], "usage": ""}
    _print_info(info)
    out = capsys.readouterr().out
    assert "x[/y] (block, slot attn)" in out and "[bold]not bold[/] [/z]" in out and "notes: [/]" in out
    assert _esc("a[/b]") == "a\\[/b]"


# ------------------------------------------------------------------------------------------ other failure kinds
def test_internal_error_is_one_line_exit_1_traceback_with_debug(monkeypatch, capsys):
    def broken(a):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr("blockzoo.cli.cmd_info", broken)
    monkeypatch.delenv("BLOCKZOO_DEBUG", raising=False)
    assert main(["info", "eca"]) == 1
    assert one_error_line(capsys.readouterr().err, "internal error: ") == (
        "internal error: ZeroDivisionError: division by zero (BLOCKZOO_DEBUG=1 shows the traceback; please "
        "report it)")
    monkeypatch.setenv("BLOCKZOO_DEBUG", "1")
    assert main(["info", "eca"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("internal error: ZeroDivisionError")
    monkeypatch.undo()
    monkeypatch.setenv("BLOCKZOO_DEBUG", "1")
    assert main(["info", "ecaa"]) == 2   # a user error keeps its status; the traceback only with the variable
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: unknown block or model 'ecaa'")


def test_nonfinite_loss_exits_1(monkeypatch, capsys):
    def diverges(cfg, **kw):
        raise NonFiniteLossError("non-finite training loss (nan) at epoch 1; lower --lr", epoch=1, step=1,
                                 global_step=1, lr=9.0, loss=float("nan"), checkpoint=None)
    monkeypatch.setattr(blockzoo.train, "train", diverges)
    assert main(["train", "resnet20", *TINY_TRAIN]) == 1
    assert "non-finite training loss" in one_error_line(capsys.readouterr().err)


def test_out_of_memory_names_input_and_batch_size(monkeypatch, capsys):
    def cpu_oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 123456789 bytes.")
    monkeypatch.setattr("blockzoo.profile.profile_model", cpu_oom)
    assert main(["profile", "resnet20", "--input", "3,64,64", "--batch-size", "8", "--no-latency"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "out of memory (tried to allocate 123456789 bytes) with input 3x64x64 at batch size 8" in err
    assert "--batch-size" in err and "--input" in err

    def gpu_oom(cfg, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(blockzoo.train, "train", gpu_oom)
    assert main(["train", "resnet20", *TINY_TRAIN]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert ("out of memory (tried to allocate 2.00 GiB) with training batch size 32 (eval 64) on synthetic; use a "
            "smaller --batch-size") in err


def test_ctrl_c_prints_the_exact_command_that_continues(tmp_path, monkeypatch, capsys):
    """Ctrl-C after epoch 1 of 2: the printed command (shell-quoted) continues the run from its checkpoint."""
    real_train = blockzoo.train.train

    def interrupted_after_epoch_1(cfg, **kwargs):
        def stop(metrics):
            raise KeyboardInterrupt
        return real_train(cfg, on_epoch_end=stop, **kwargs)

    out = tmp_path / "my run"
    argv = ["train", "resnet20", *TINY_TRAIN, "--epochs", "2", "--deterministic", "--threads", "1",
            "--out", str(out), "--overwrite"]
    monkeypatch.setattr(blockzoo.train, "train", interrupted_after_epoch_1)
    assert main(argv) == 130
    line = one_error_line(capsys.readouterr().err, "interrupted: ")
    head, command = line.split("; continue with: ")
    assert head == "interrupted: the last checkpoint (epoch 1) is kept"
    again = shlex.split(command)
    assert again == ["blockzoo"] + [x for x in argv if x != "--overwrite"]   # --overwrite would start over
    monkeypatch.setattr(blockzoo.train, "train", real_train)
    assert main(again[1:]) == 0
    capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_from_epoch"] == 1 and result["epochs_completed"] == 2


def test_ctrl_c_before_any_work_and_in_compare(tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("blockzoo.cli.cmd_info", interrupt)
    assert main(["info", "eca"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    monkeypatch.setattr(blockzoo.train, "train", interrupt)
    argv = ["train", "resnet20", *TINY_TRAIN, "--out", str(tmp_path / "r")]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == (f"interrupted before the first checkpoint; start again with: "
                                               f"blockzoo {shlex.join(argv)}")
    monkeypatch.setattr("blockzoo.report.compare.run_compare", interrupt)
    argv = ["compare", "resnet20", "--vary", "attn=none,se(reduction=8)", *TINY_TRAIN, "--out", str(tmp_path / "c")]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().endswith(f"continue with: blockzoo {shlex.join(argv)}")
