import pytest

from cvtasks.__main__ import main


def test_list_backbones_tasks_datasets(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "timm/<model_name>" in out
    assert main(["list", "tasks"]) == 0
    assert "classification" in capsys.readouterr().out
    assert main(["list", "datasets", "dig*"]) == 0
    assert capsys.readouterr().out.split()[0] == "digits"


def test_list_unknown_kind_and_unknown_command(capsys):
    assert main(["list", "bakbones"]) == 2
    assert "backbones" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize("argv", [[], ["--help"]])
def test_usage(argv, capsys):
    main(argv)
    assert "usage" in capsys.readouterr().out


def test_summary_command(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "6x28x28" in out and "total" in out
    assert main(["summary", "lenet6"]) == 2
    assert "Did you mean: lenet5" in capsys.readouterr().err
