"""COCO keypoints JSON: the reader and the ``coco_keypoints`` DataModule.

A COCO keypoints file holds ``images`` (``id``, ``file_name``, optional ``width``/``height``),
``annotations`` (``image_id``, ``category_id``, ``keypoints = [x1, y1, v1, x2, ...]``, optional
``bbox = [x, y, w, h]``) and ``categories`` whose ``keypoints`` list names the points and whose
``skeleton`` joins them (1-based, as COCO writes it). ``v`` is 0 for a point not labelled, 1 for
labelled but hidden, 2 for labelled and visible. Coordinates are read as continuous pixel
positions: the image spans ``[0, width] x [0, height]``.

Left/right *flip pairs* are not part of COCO; they come from the config, else from a category's
``flip_pairs`` (names or 0-based indices, as cvtasks writes it), else from the names themselves
(``left_eye`` pairs with ``right_eye``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvtasks.data.annotations import ON_BAD_ANNOTATION, AnnotationError, AnnotationIssues
from cvtasks.data.coco_format import CocoFile, CocoImage, image_path, load_coco
from cvtasks.data.datamodule import VisionDataModule, check_choice
from cvtasks.data.image_folder import stratified_split
from cvtasks.data.keypoint_dataset import (
    KeypointDataset,
    KeypointSample,
    KeypointTransform,
    check_flip_pairs,
    empty_keypoint_targets,
    infer_flip_pairs,
    keypoint_compose_kwargs,
    resolve_pairs,
)
from cvtasks.data.scan import refuse_shared_files
from cvtasks.registry import DATASETS

SPLITS = ("train", "val", "test")


@dataclass
class CocoKeypoints:
    """What :func:`read_coco_keypoints` found in one file.

    Attributes:
        path: the JSON file.
        category: the category's name.
        keypoint_names: the names of the ``K`` points.
        skeleton: 0-based index pairs of the points to join when drawing.
        flip_pairs: 0-based ``(left, right)`` index pairs, from the file or the names.
        samples: one per usable annotation.
        skipped: annotations left out, by reason.
    """

    path: Path
    category: str
    keypoint_names: list[str]
    skeleton: list[tuple[int, int]]
    flip_pairs: list[tuple[int, int]]
    samples: list[KeypointSample] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _pick_category(coco: CocoFile, name: str | None) -> dict[str, Any]:
    with_points = [c for c in coco.categories.values() if c.get("keypoints")]
    names = [str(c["name"]) for c in with_points]
    if name is not None:
        chosen = [c for c in with_points if c["name"] == name]
        if not chosen:
            raise AnnotationError(
                f"{coco.path}: no category named {name!r} with 'keypoints'; categories with "
                f"keypoints: {', '.join(names) or '(none)'} (data.category)"
            )
        return chosen[0]
    if len(with_points) != 1:
        raise AnnotationError(
            f"{coco.path}: field 'categories' has {len(with_points)} categories with "
            f"'keypoints' ({', '.join(names) or 'none'}); "
            + ("set data.category to one of them" if with_points else "nothing to learn")
        )
    return with_points[0]


def _keypoint_problem(ann: dict[str, Any], num_points: int, category: str) -> str | None:
    """What is wrong with an annotation's ``keypoints`` field, or ``None``."""
    values = ann.get("keypoints")
    numbers = isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )
    if numbers and len(values) == 3 * num_points:
        return None
    count = len(values) if isinstance(values, list) else 0
    what = f"{count} values ({count / 3:g} points)" if numbers else "non-numbers"
    return (
        f"has {what}, but category '{category}' names {num_points} points ({3 * num_points} values)"
    )


def _sample(ann: dict[str, Any], image: CocoImage, path: Path) -> KeypointSample:
    points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    box = ann.get("bbox")
    usable = isinstance(box, list) and len(box) == 4 and box[2] > 0 and box[3] > 0
    known = image.width is not None and image.height is not None
    return KeypointSample(
        path=os.fspath(path),
        keypoints=points[:, :2].astype(np.float32),
        flags=points[:, 2].astype(np.int64),
        box=tuple(float(v) for v in box) if usable else None,
        image_id=image.id,
        size=(image.width, image.height) if known else None,
    )


def read_coco_keypoints(
    path: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    category: str | None = None,
    on_bad_annotation: str = "error",
) -> CocoKeypoints:
    """Read the annotated objects of one keypoint category from a COCO JSON file.

    The file is loaded and checked by :func:`~cvtasks.data.coco_format.load_coco`. Crowd
    annotations and annotations without any labelled point are left out (counted in
    ``skipped``). Bad annotations, a keypoint count that does not match the category or an
    ``image_id`` that no image has, raise :class:`AnnotationError` naming the file and the field,
    or with ``on_bad_annotation="skip"`` are counted in ``skipped`` and warned about once.

    Args:
        path: the JSON file.
        image_dir: the folder that ``file_name`` is relative to; a file not found there is
            looked for beside the JSON file (the layout labelling tools export).
        category: the category name; ``None`` takes the only category that has keypoints.
        on_bad_annotation: ``"error"`` or ``"skip"``.

    Returns:
        The category's point names, skeleton, flip pairs and the samples.
    """
    issues = AnnotationIssues(on_bad_annotation)
    coco = load_coco(path, issues)
    missing_image = len(issues.messages)
    cat = _pick_category(coco, category)
    names = [str(n) for n in cat["keypoints"]]
    where = f"{coco.path}: categories '{cat['name']}'"
    skeleton = resolve_pairs(cat.get("skeleton") or [], names, f"{where} 'skeleton'", base=1)
    if cat.get("flip_pairs") is not None:
        flips = resolve_pairs(cat["flip_pairs"], names, f"{where} 'flip_pairs'")
    else:
        flips = infer_flip_pairs(names)
    result = CocoKeypoints(
        coco.path, str(cat["name"]), names, skeleton, check_flip_pairs(flips, where)
    )
    if missing_image:
        result.skipped["missing_image"] = missing_image
    for image_id, anns in coco.annotations.items():
        for i, ann in anns:
            if ann["category_id"] != cat["id"]:
                continue
            problem = _keypoint_problem(ann, len(names), result.category)
            if problem is not None:
                issues.report(
                    f"{coco.where('annotations', i, 'keypoints')} (id {ann.get('id')}) {problem}"
                )
                result.skipped["keypoint_count"] += 1
                continue
            flags = np.asarray(ann["keypoints"][2::3])
            if ann.get("iscrowd") or not (flags > 0).any():
                result.skipped["crowd" if ann.get("iscrowd") else "no_labelled_points"] += 1
                continue
            image = coco.images[image_id]
            result.samples.append(_sample(ann, image, image_path(coco, image, image_dir)))
    issues.warn(coco.path)
    return result


@DATASETS.register("coco_keypoints")
class CocoKeypointsDataModule(VisionDataModule):
    """Landmarks from COCO keypoint files: one object (one annotation) per sample.

    Each split is ``{"annotations": <json>, "images": <folder that file_name is relative to>}``,
    relative to ``root``. A split set to ``None`` is carved out of train (seeded, by image).

    Args:
        root: the dataset folder.
        train: the training split (required).
        val: the validation split, or ``None``.
        test: the test split, or ``None``.
        category: the keypoint category to read (``None``: the only one).
        flip_pairs: ``[[left, right], ...]`` point names or 0-based indices; ``None`` reads them
            from the file (or from the point names).
        on_bad_annotation: ``"error"`` raises naming file and field; ``"skip"`` counts and warns.
        min_visibility: the least COCO ``v`` of a point that counts: 2 (points marked hidden
            do not count) or 1 (every labelled point, hidden ones included).
        crop_to_box: train on each object's box crop; needed when images hold several objects.
        box_padding: crop size over box size.
        val_fraction: share of train's images carved out when ``val`` is ``None``.
        test_fraction: the same for ``test``.
        split_seed: seed of the carving.
        augment: training augmentations (see :func:`~cvtasks.data.transforms.build_pipeline`).
        **kwargs: :class:`VisionDataModule` options (batch_size, image_size, ...).
    """

    target_kind = "keypoints"

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: Mapping[str, str] | None = None,
        val: Mapping[str, str] | None = None,
        test: Mapping[str, str] | None = None,
        category: str | None = None,
        flip_pairs: Sequence[Sequence[int | str]] | None = None,
        on_bad_annotation: str = "error",
        min_visibility: int = 2,
        crop_to_box: bool = False,
        box_padding: float = 1.25,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        augment: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(augment=augment, **kwargs)
        if root is None:
            raise ValueError("data.root is not set: data=coco_keypoints data.root=<dataset folder>")
        check_choice("data.on_bad_annotation", on_bad_annotation, ON_BAD_ANNOTATION)
        check_choice("data.min_visibility", min_visibility, (1, 2))
        if box_padding < 1.0:
            raise ValueError(f"data.box_padding must be >= 1, got {box_padding}")
        if train is None:
            raise ValueError("data.train needs {annotations: <json>, images: <folder>}")
        self.root = Path(root).expanduser()
        self.split_specs = {"train": train, "val": val, "test": test}
        self.category = category
        self.flip_pairs_spec = None if flip_pairs is None else [list(p) for p in flip_pairs]
        self.on_bad_annotation = on_bad_annotation
        self.min_visibility = min_visibility
        self.crop_to_box = bool(crop_to_box)
        self.box_padding = float(box_padding)
        self.fractions = {"val": float(val_fraction), "test": float(test_fraction)}
        self.split_seed = split_seed
        self._files: dict[str, CocoKeypoints] | None = None
        self._splits: dict[str, list[KeypointSample]] | None = None

    def compose_kwargs(self) -> dict[str, Any]:
        """Both pipelines move the points with the image (:class:`KeypointTransform`)."""
        return keypoint_compose_kwargs()

    def prepare_root(self) -> None:
        """Make ``root`` exist before it is read; a no-op here, built-in datasets write it."""

    def _read(self, split: str) -> CocoKeypoints:
        spec = dict(self.split_specs[split])
        missing = [k for k in ("annotations", "images") if k not in spec]
        if missing:
            raise ValueError(f"data.{split} lacks {', '.join(missing)}: {spec}")
        return read_coco_keypoints(
            self.root / spec["annotations"],
            self.root / spec["images"],
            self.category,
            self.on_bad_annotation,
        )

    @property
    def splits(self) -> dict[str, list[KeypointSample]]:
        """Samples per split (files read once, missing splits carved out of train)."""
        if self._splits is None:
            self.prepare_root()
            self._files = {s: self._read(s) for s in SPLITS if self.split_specs[s] is not None}
            train = self._files["train"]
            for split, found in self._files.items():
                if found.keypoint_names != train.keypoint_names:
                    raise AnnotationError(
                        f"{found.path}: keypoint names {found.keypoint_names} differ from "
                        f"{train.path}'s {train.keypoint_names}"
                    )
                if not found.samples:
                    raise AnnotationError(f"{found.path}: no usable annotation for {split}")
                if not self.crop_to_box:
                    self._check_one_object_per_image(found)
            self._splits = {s: f.samples for s, f in self._files.items()}
            # Objects of one image share its file, but two image entries naming one file
            # (directly or through a link) would be two samples, or in two splits; one
            # annotation file given for two splits is the config's choice.
            owners = {
                (sample.path, f"{self._files[split].path} image_id {sample.image_id}")
                for split, samples in self._splits.items()
                for sample in samples
            }
            refuse_shared_files(sorted(owners), "data", same_owner_ok=True)
            carve = {s: self.fractions[s] for s in ("val", "test") if s not in self._splits}
            if carve:
                ids = sorted({s.image_id for s in train.samples})
                parts = stratified_split({"": ids}, carve, self.split_seed)
                for split, chosen in parts.items():
                    keep = set(chosen[""])
                    self._splits[split] = [s for s in train.samples if s.image_id in keep]
                    if not self._splits[split]:
                        raise ValueError(
                            f"data.{split}_fraction={self.fractions.get(split)} of the "
                            f"{len(ids)} images of {train.path} leaves {split} empty; raise it "
                            f"or give data.{split}"
                        )
        return self._splits

    @staticmethod
    def _check_one_object_per_image(found: CocoKeypoints) -> None:
        counts = Counter(s.image_id for s in found.samples)
        image_id, count = counts.most_common(1)[0]
        if count > 1:
            raise AnnotationError(
                f"{found.path}: image_id {image_id} has {count} '{found.category}' annotations; "
                "a landmarks sample is one object, so set data.crop_to_box=true to learn from "
                "each object's box"
            )

    @property
    def info(self) -> CocoKeypoints:
        """The train file's category: point names, skeleton, flip pairs."""
        _ = self.splits
        assert self._files is not None
        return self._files["train"]

    @property
    def keypoint_names(self) -> list[str]:
        """Names of the ``K`` points."""
        return list(self.info.keypoint_names)

    @property
    def num_keypoints(self) -> int:
        """``K``."""
        return len(self.info.keypoint_names)

    @property
    def skeleton(self) -> list[tuple[int, int]]:
        """Index pairs of points joined in drawings."""
        return list(self.info.skeleton)

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        """``(left, right)`` index pairs swapped by a mirroring: the config's, else the file's."""
        if self.flip_pairs_spec is None:
            return list(self.info.flip_pairs)
        pairs = resolve_pairs(self.flip_pairs_spec, self.keypoint_names, "data.flip_pairs")
        return check_flip_pairs(pairs, "data.flip_pairs")

    @property
    def skipped_annotations(self) -> Counter[str]:
        """Annotations left out of every file read, by reason."""
        _ = self.splits
        assert self._files is not None
        return sum((f.skipped for f in self._files.values()), Counter())

    def discover_class_names(self) -> list[str]:
        """The one category read."""
        return [self.info.category]

    def setup(self, stage: str | None = None) -> None:
        """Read the files (once) and build the datasets; every stage gets all four."""
        if self.train_dataset is not None:
            return
        splits, flips = self.splits, self.flip_pairs

        def dataset(split: str, transform: Any) -> KeypointDataset:
            return KeypointDataset(
                splits[split],
                KeypointTransform(transform, flips),
                self.on_bad_image,
                cache_images=self.cache_images,
                crop_to_box=self.crop_to_box,
                box_padding=self.box_padding,
                min_visibility=self.min_visibility,
            )

        self.train_dataset = dataset("train", self.train_transform)
        self.val_dataset = dataset("val", self.eval_transform)
        self.test_dataset = dataset("test", self.eval_transform)
        self.predict_dataset = self.test_dataset

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """The base's empty batch plus zero-length keypoint targets."""
        return {
            "image": super().empty_batch()["image"],
            **empty_keypoint_targets(self.num_keypoints),
        }
