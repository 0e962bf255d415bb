"""Bad input gets a clear error naming what is wrong and what is allowed."""

import pytest

from tests.conftest import TINY

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["task=clasification"], ["task=clasification", "Did you mean: classification"]),
        (["backbone=lenet"], ["Did you mean: lenet5", "Available backbone options"]),
        (["data=digit"], ["Did you mean: digits"]),
        (
            ["trainer=ddp-cpu"],
            ["Did you mean: ddp_cpu", "cpu, ddp, ddp_cpu, ddp_multinode, default, fsdp, gpu"],
        ),
    ],
)
def test_unknown_group_choice(train_in_process, args, expected):
    run = train_in_process(*args)
    assert run.proc.returncode == 2
    for text in expected:
        assert text in run.proc.stderr
    assert "Traceback" not in run.proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["task.name=clasification"], "Did you mean: classification"),
        (["backbone.name=lenet"], "Did you mean: lenet5"),
        (["data.name=digts"], "Did you mean: digits"),
    ],
)
def test_unknown_registry_name(train_in_process, args, expected):
    run = train_in_process(*TINY, *args)
    assert run.proc.returncode == 2
    assert expected in run.proc.stderr and "plugins" in run.proc.stderr
    assert_one_line(run)


def assert_one_line(run):
    """One ``error:`` line on stderr, no stack trace there; the trace is in the run's log."""
    errors = [line for line in run.proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.proc.stderr[-3000:]
    assert "Traceback" not in run.proc.stderr and "HYDRA_FULL_ERROR" not in run.proc.stderr


def test_missing_data_root_names_the_path(train_in_process, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    run = train_in_process(*TINY, "data=image_folder", f"data.root={missing}")
    assert run.proc.returncode == 2
    assert str(missing) in run.proc.stderr and "data.root" in run.proc.stderr
    assert_one_line(run)
    assert "Traceback (most recent call last)" in (run.run_dir / "train.log").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["data=image_folder"],
            "data.root is not set and has no default: add data.root=... to the command line",
        ),
        (["+data.batch_sise=4"], "data.batch_sise: unknown key 'batch_sise'"),
        (["+task.head.dropuot=0.5"], "task.head.dropuot: unknown key 'dropuot'"),
        (["seed=-5"], "seed=-5: must be an integer from 0 to 4294967295"),
        (["seed=4294967296"], "seed=4294967296: must be an integer from 0 to 4294967295"),
    ],
)
def test_config_mistakes_say_which_key_in_one_line(train_in_process, args, expected):
    run = train_in_process(*TINY, *args)
    assert run.proc.returncode == 2, run.output[-3000:]
    assert expected in run.proc.stderr
    assert_one_line(run)
    assert not (run.run_dir / "checkpoints").exists()


def test_an_image_smaller_than_the_backbone_can_use_warns(run_train):
    run = run_train(*TINY, "backbone=resnet18", "data.image_size=1", "data.augment=[]").check()
    assert "data.image_size=1 is smaller than backbone resnet18 can use" in run.output
    assert "use data.image_size=32 or more" in run.output


def make_folder_with_a_corrupt_image(root):
    from PIL import Image

    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 200 if cls == "a" else 0, 90)).save(
                root / cls / f"{i}.png"
            )
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return bad


IMAGE_FOLDER = [
    "data=image_folder",
    "data.image_size=16",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.augment=[]",
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "backbone=custom",
    "backbone.name=timm/resnet10t",
]


def test_corrupt_image_error_names_the_file(run_train, tmp_path):
    bad = make_folder_with_a_corrupt_image(tmp_path / "imgs")
    run = run_train(
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        *IMAGE_FOLDER,
        f"data.root={tmp_path / 'imgs'}",
    )
    assert run.proc.returncode == 1
    assert str(bad) in run.proc.stderr
    assert_one_line(run)


def test_corrupt_image_skipped_and_counted(run_train, tmp_path):
    bad = make_folder_with_a_corrupt_image(tmp_path / "imgs")
    run = run_train(
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        *IMAGE_FOLDER,
        f"data.root={tmp_path / 'imgs'}",
        "data.on_bad_image=skip",
    ).check()
    skipped = sum(v for k, v in run.metrics.items() if k.endswith("skipped_images"))
    assert skipped == 1
    assert bad.name in run.output


def test_broken_plugin_is_named_and_the_run_goes_on(run_train, tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('this plugin is broken')\n")
    run = run_train(*TINY, f"plugins=[{broken}]").check()
    assert "broken_plugin.py: RuntimeError: this plugin is broken" in run.output
