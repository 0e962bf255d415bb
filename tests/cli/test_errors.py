"""One-line error messages: worker tracebacks trimmed, unknown keys named with the allowed ones."""

import logging

import pytest

from cvtasks.cli.errors import accepted_keywords, log_trace_to_files, one_line, unknown_key_error
from cvtasks.data.image_folder import ImageFolderDataModule
from cvtasks.data.images import BadImageError


def test_one_line_keeps_the_message_of_an_error_from_a_dataloader_worker():
    worker = BadImageError(
        "Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\ncvtasks.data.images.BadImageError: cannot '
        "read image /data/a/1.png: truncated"
    )
    assert one_line(worker) == "cannot read image /data/a/1.png: truncated"
    assert one_line(KeyError("Unknown backbone 'x'")) == "Unknown backbone 'x'"
    assert one_line(ValueError("two\nlines")) == "two\nlines"


def test_accepted_keywords_follow_kwargs_up_the_bases():
    keys = accepted_keywords(ImageFolderDataModule)
    assert {"root", "val_fraction", "batch_size", "image_size", "on_bad_image"} <= set(keys)

    def passes_on(a, **kwargs):
        return a

    assert accepted_keywords(passes_on) is None


def test_an_unknown_data_key_is_named_with_close_matches_and_the_allowed_keys(compose_train):
    cfg = compose_train("+data.batch_sise=4")
    err = TypeError("VisionDataModule.__init__() got an unexpected keyword argument 'batch_sise'")
    message = str(unknown_key_error(err, cfg))
    assert message.startswith("data.batch_sise: unknown key 'batch_sise' (data 'digits' takes")
    assert "Did you mean: batch_size" in message and "Allowed keys: augment, batch_size" in message


def test_a_class_factorys_own_keywords_are_the_allowed_ones(compose_train):
    cfg = compose_train("data=image_folder", "data.root=x", "+data.val_frac=0.1")
    err = TypeError("VisionDataModule.__init__() got an unexpected keyword argument 'val_frac'")
    message = str(unknown_key_error(err, cfg))
    assert "Did you mean: val_fraction" in message and "prefetch_factor" in message


def test_an_unknown_head_key_is_named_at_its_depth(compose_train):
    cfg = compose_train("+task.head.dropuot=0.1")
    err = TypeError("linear_head() got an unexpected keyword argument 'dropuot'")
    message = str(unknown_key_error(err, cfg))
    assert message.startswith("task.head.dropuot: unknown key 'dropuot' (task.head 'linear'")
    assert "Did you mean: dropout?" in message


def test_other_type_errors_are_left_alone(compose_train):
    cfg = compose_train()
    assert unknown_key_error(TypeError("unsupported operand"), cfg) is None
    assert unknown_key_error(TypeError("got an unexpected keyword argument 'zz'"), cfg) is None


def test_the_traceback_goes_to_the_log_files_only(tmp_path):
    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        try:
            raise ValueError("the dataset folder does not exist")
        except ValueError as err:
            assert log_trace_to_files(err) == [str(tmp_path / "train.log")]
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert "Traceback (most recent call last)" in text and "does not exist" in text


@pytest.fixture(autouse=True)
def _no_file_handlers_leak():
    before = list(logging.getLogger().handlers)
    yield
    assert logging.getLogger().handlers == before
