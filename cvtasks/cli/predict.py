"""``python -m cvtasks predict ckpt=PATH input=FILE|FOLDER|GLOB output=DIR``.

Runs a trained checkpoint of any task on images of any size: each image is resized to the
model's input and normalized as in training, predictions come back in pixels of the original
image. Writes ``predictions.jsonl`` (one line per image: the task's per-image outputs plus
``path``, as the task's view writes it), ``pictures/<name>.png`` (the result drawn on the image
by the task's view; none for a task without a picture), ``errors.jsonl`` (files that could not
be read, each by name) and, for segmentation, ``masks/<name>.png``. Siamese models add
each image's nearest gallery identities (``gallery=DIR``; default: the other inputs) and, with
``pairs=FILE``, ``pairs.jsonl`` and a picture per pair. Segmentation and detection models take
``tile=SIZE overlap=F``: windows of the training size over each image at its native resolution,
blended or merged (:mod:`cvtasks.tiling`), instead of one resize of the whole image.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader

from cvtasks.cli.common import load_trained, run_command, save_picture, write_lines
from cvtasks.cli.inputs import find_inputs, loader, picture_names
from cvtasks.cli.outputs import refuse_output_inside_input
from cvtasks.cli.tiles import TiledPredictor, native_loader, tiling_from
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.data.images import read_image
from cvtasks.inference import Predictor
from cvtasks.viz.views import RecordContext, view_for

log = logging.getLogger(__name__)


def run_batches(
    predictor: Predictor | TiledPredictor,
    batches: DataLoader,
    on_result: Callable[[dict[str, Any]], None],
) -> list[tuple[str, str]]:
    """Predict every batch (with a progress bar); returns the unreadable files and why."""
    errors: list[tuple[str, str]] = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task("predict", total=len(batches.dataset))
        for batch in batches:
            bad = batch.pop("errors")
            errors.extend(bad)
            if "image" in batch:  # not every task echoes the path: results are in batch order
                for path, result in zip(batch["path"], predictor.predict(batch)):
                    on_result({**result, "path": path})
            progress.advance(bar, len(bad) + len(batch.get("path", ())))
    return errors


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Run the ``predict`` command; returns counts of what was written."""
    model = load_trained(cfg.ckpt, cfg.get("expect_task"))
    tiling = tiling_from(cfg, model.task, model.task_name)
    images, skipped = find_inputs(str(cfg.input))
    for key in ("input", "gallery"):
        if cfg.get(key):
            refuse_output_inside_input(cfg.output, key, str(cfg.get(key)))
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(
        model.task, cfg.device, cfg.compile, str(cfg.precision), tta=cfg.get("tta")
    )
    log.info("predicting %d images with %s on %s", len(images), model.task_name, predictor.device)
    names = picture_names(images)
    view = view_for(predictor.task)
    records: list[dict[str, Any]] = []

    def on_result(result: dict[str, Any]) -> None:
        path = str(result["path"])
        record = view.record(result, RecordContext(output, names[path]))
        records.append({"path": path, **{k: v for k, v in record.items() if k != "path"}})
        if cfg.pictures and not is_pair_task(predictor):
            image = Image.fromarray(read_image(path))
            picture = view.picture(image, result)
            if picture is not None:  # a task without a picture of its own gets none
                save_picture(picture, output / "pictures" / f"{names[path]}.png")

    if tiling is None:
        errors = run_batches(predictor, loader(images, model, cfg), on_result)
    else:  # windows of each image at its native resolution
        errors = run_batches(
            TiledPredictor(predictor, tiling), native_loader(images, model), on_result
        )
    if is_pair_task(predictor) and records:
        from cvtasks.cli.search import search_and_draw

        search_and_draw(predictor, model, records, names, cfg, output)
    write_lines(output / "predictions.jsonl", records)
    failures = skipped + errors
    write_lines(output / "errors.jsonl", [{"path": p, "error": e} for p, e in failures])
    for path, reason in failures:
        log.warning("skipped %s: %s", path, reason)
    summary = {"predicted": len(records), "skipped": len(failures), "output": str(output)}
    print(
        f"predicted {len(records)} images, skipped {len(failures)}"
        + (f" ({', '.join(Path(p).name for p, _ in failures)})" if failures else "")
        + f"; results in {output.resolve()}"
    )
    if not records:
        raise ValueError(f"input={cfg.input}: no image could be read; see {output}/errors.jsonl")
    return summary


def is_pair_task(predictor: Predictor) -> bool:
    """Whether the task compares embeddings (siamese): results need the whole set first."""
    return hasattr(predictor.task, "cross_score")


@hydra.main(config_path=str(CONFIG_DIR), config_name="predict", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_command(predict, cfg)


def main() -> None:
    """Console entry point (``python -m cvtasks predict key=value ...``)."""
    setup_hydra()
    log.debug("argv: %s", sys.argv)
    _hydra_main()
