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
def test_unknown_group_choice(run_train, args, expected):
    run = run_train(*args)
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
def test_unknown_registry_name(run_train, args, expected):
    run = run_train(*TINY, *args)
    assert run.proc.returncode != 0
    assert expected in run.output and "plugins" in run.output


def test_missing_data_root_names_the_path(run_train, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    run = run_train(*TINY, "data=image_folder", f"data.root={missing}")
    assert run.proc.returncode != 0
    assert str(missing) in run.output and "data.root" in run.output


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
    assert run.proc.returncode != 0
    assert str(bad) in run.output


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
