"""blockzoo.data.cli: `blockzoo data fetch`."""
from __future__ import annotations

from blockzoo.data import cli as data_cli
from helpers import _write_fake_idx


def test_cli_fetch(tmp_path, capsys, offline):
    assert data_cli.main(["fetch", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "curl -fLO https://ossci-datasets.s3.amazonaws.com/mnist/$f" in err
    _write_fake_idx(tmp_path / "mnist")
    assert data_cli.main(["fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mnist")
    offline.clear()
    assert data_cli.main(["fetch", "cifar10", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert "download disabled" in capsys.readouterr().err and offline == []
