"""training/size_table.py: refuses bad arguments with a clear message."""
from pathlib import Path

import pytest
from conftest import load_training_script

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_training_script("size_table")


def test_bad_size_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(["--size", "no-equals-sign"])
    assert e.value.code == 2 and "NAME=CONFIG" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {variant: mixste, mixste: {depth: four}}\n")
    assert _script().main(["--size", f"x={bad}", "--rounds", "1"]) == 2
    assert "model.mixste.depth: expected int" in capsys.readouterr().err


def test_validation_columns_come_from_the_run_log(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,train_loss,val_mpjpe_mm,val_p_mpjpe_mm,lr,seconds\n"
                                      "0,1,150.0,110.0,0.001,1\n1,1,120.0,90.0,0.001,1\n")
    at, best = _script().validation_at(tmp_path, 2)
    assert at == "120.0 / 90.0" and best == "120.0 (epoch 2 of 2)"
    assert _script().validation_at(tmp_path, 5)[0] == "(only 2 epochs)"
    assert _script().validation_at(None, 1) == ("-", "-")
