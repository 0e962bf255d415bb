"""The default siamese dataset: procedurally drawn faces, one fixed draw of parameters per person.

Each identity is a fixed draw of shape and colour parameters: face outline (width, height,
squareness, jaw), ears, skin tone, eye spacing, height, size, shape and iris colour, eyebrows,
nose kind and size, mouth width, height, curve and lips, hair style, hairline and colour,
glasses, facial hair and a mole. Each image of that person varies what a camera varies: pose
(yaw, pitch, roll), scale and position, expression (smile, blink), lighting (brightness and a
directional gradient), colour cast, background, noise, blur and occluders. Skin, hair and iris
colours come from small shared palettes and every image gets its own colour cast, so no single
cue, colour least of all, tells people apart: the network has to combine shapes.

The images (64x64 JPEG, ten per person) are written once, deterministically, as identity folders
with LFW-style pairs files (:mod:`cvtasks.data.pairs`) and read back by
:class:`~cvtasks.data.identity_folders.IdentityFoldersDataModule`: 800 training identities, 100
validation and 100 test identities, none shared, 1000 validation and 1000 test pairs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cvtasks.data.builtin.base import builtin_root
from cvtasks.data.builtin.identities import BuiltinIdentitiesDataModule, write_identity_dataset
from cvtasks.registry import DATASETS

VERSION = "v1"  # bump whenever the written files would change
SEED = 1636
SIZE = 64
SUPER = 2  # drawn at SUPER x SIZE and box-filtered down: anti-aliased edges
DEFAULT_IDENTITIES = (800, 100, 100)  # train, val, test
DEFAULT_IMAGES = 10
PAIRS = {"val": 1000, "test": 1000}

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
SKIN = [(255, 220, 190), (240, 195, 160), (225, 175, 135), (200, 150, 110), (170, 120, 85)]
SKIN += [(140, 95, 65), (110, 75, 50), (250, 205, 175)]
HAIR = [(25, 20, 20), (70, 45, 30), (120, 80, 45), (200, 160, 90), (230, 210, 150)]
HAIR += [(160, 70, 40), (150, 150, 150), (235, 235, 235)]
IRIS = [(60, 40, 25), (50, 90, 150), (70, 120, 70), (110, 110, 120), (20, 20, 20)]
LIPS = [(180, 80, 80), (150, 70, 70), (200, 110, 110), (120, 60, 60)]
FRAMES = [(20, 20, 20), (90, 50, 30), (200, 170, 60), (160, 30, 30)]


def _colour(rng: np.random.Generator, palette: Sequence[RGB], spread: float) -> RGBA:
    """A palette colour with a little per-person jitter, opaque."""
    base = palette[rng.integers(len(palette))]
    return (*(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in base), 255)


def draw_identity(rng: np.random.Generator) -> dict[str, Any]:
    """One person's fixed parameters (lengths in units of half the image width)."""
    u = rng.uniform
    return {
        "skin": _colour(rng, SKIN, 10),
        "face_w": u(0.38, 0.60),
        "face_h": u(0.50, 0.72),
        "square": u(2.0, 4.0),  # superellipse exponent: 2 is an ellipse, larger is squarer
        "jaw": u(0.0, 0.45),  # how much the lower half narrows towards the chin
        "ear": u(0.05, 0.13),
        "eye_dx": u(0.13, 0.30),  # half the distance between the eyes
        "eye_y": u(-0.22, -0.04),
        "eye_r": u(0.05, 0.095),
        "eye_ratio": u(0.35, 0.9),  # height / width
        "iris": _colour(rng, IRIS, 10),
        "brow_gap": u(0.07, 0.15),
        "brow_thick": u(0.015, 0.05),
        "brow_tilt": u(-0.45, 0.45),
        "brow_len": u(0.07, 0.14),
        "nose_kind": int(rng.integers(3)),  # triangle | hooked line | round tip
        "nose_len": u(0.08, 0.26),
        "nose_w": u(0.04, 0.11),
        "mouth_w": u(0.08, 0.30),
        "mouth_y": u(0.24, 0.42),
        "mouth_curve": u(-0.06, 0.08),  # frown < 0 < smile
        "lip": u(0.015, 0.05),
        "lip_colour": _colour(rng, LIPS, 12),
        "hair_style": int(rng.integers(6)),  # bald | cap | bob | long | fringe | spikes
        "hairline": u(0.35, 0.75),
        "hair": _colour(rng, HAIR, 12),
        "glasses": int(rng.choice(3, p=[0.5, 0.25, 0.25])),  # none | round | square
        "frame": _colour(rng, FRAMES, 0),
        "beard": int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15])),  # none | moustache | full | goatee
        "mole": (u(-0.35, 0.35), u(-0.1, 0.45)) if rng.random() < 0.3 else None,
    }


def _outline(p: dict[str, Any], cx: float, n: int = 48) -> np.ndarray:
    """Face outline ``[n, 2]``: a superellipse whose lower half narrows to the chin by ``jaw``."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = p["face_w"] * np.sign(c) * np.abs(c) ** (2 / p["square"])
    y = p["face_h"] * np.sign(s) * np.abs(s) ** (2 / p["square"])
    x *= 1 - p["jaw"] * np.where(y > 0, y / p["face_h"], 0.0) ** 2
    return np.stack([cx + x, y], axis=1)


class _Canvas:
    """An RGBA layer drawn in unit coordinates: (-1, -1) is the top left, (1, 1) bottom right."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, x: float, y: float) -> tuple[float, float]:
        return ((x + 1) * self.size / 2, (y + 1) * self.size / 2)

    def width(self, width: float) -> int:
        return max(1, round(width * self.size / 2))

    def ellipse(
        self, x: float, y: float, rx: float, ry: float, fill: RGBA, ring: float = 0
    ) -> None:
        box = (*self.px(x - rx, y - ry), *self.px(x + rx, y + ry))
        if ring:
            self.draw.ellipse(box, outline=fill, width=self.width(ring))
        else:
            self.draw.ellipse(box, fill=fill)

    def polygon(self, points: Sequence[Sequence[float]] | np.ndarray, fill: RGBA) -> None:
        self.draw.polygon([self.px(float(x), float(y)) for x, y in points], fill=fill)

    def line(self, points: Sequence[Sequence[float]], fill: RGBA, width: float) -> None:
        self.draw.line([self.px(x, y) for x, y in points], fill=fill, width=self.width(width))


def _hair(c: _Canvas, p: dict[str, Any], cx: float, front: bool) -> None:
    """Hair behind the face (bob, long) or over it (cap, fringe, spikes)."""
    style, hair, fw, fh = p["hair_style"], p["hair"], p["face_w"], p["face_h"]
    if not front and style in (2, 3):
        depth = fh * 0.55 if style == 2 else 1.2
        top, w0, w1 = -fh * 0.5, fw * 1.12, fw * 1.18
        c.polygon([(cx - w0, top), (cx + w0, top), (cx + w1, depth), (cx - w1, depth)], hair)
        c.ellipse(cx, -fh * 0.45, fw * 1.12, fh * 0.62, hair)
    if front and style != 0:
        line = -fh * p["hairline"]
        c.polygon([(cx + x, min(y, line)) for x, y in _outline(p, 0.0) if y < 0], hair)
        c.ellipse(cx, -fh * 0.98, fw * 0.98, fh * 0.25, hair)
        if style == 4:
            c.ellipse(cx - fw * 0.25, line, fw * 0.55, fh * 0.22, hair)
        if style == 5:
            for k in range(5):
                x = cx + fw * (-0.7 + 0.35 * k)
                c.polygon([(x - 0.08, -fh * 0.9), (x + 0.08, -fh * 0.9), (x, -fh * 1.35)], hair)


def _lower_face(c: _Canvas, p: dict[str, Any], fx: float, fy: float, smile: float) -> None:
    """Beard, mouth (its curve shifted by this image's ``smile``), moustache and nose."""
    hair, mw, my = p["hair"], p["mouth_w"], p["mouth_y"] + fy
    if p["beard"] == 2:
        cut = p["mouth_y"] - 0.1
        c.polygon([(fx + x, max(y, cut)) for x, y in _outline(p, 0.0) if y > 0.05], hair)
    if p["beard"] == 3:
        c.ellipse(fx, p["mouth_y"] + 0.14, mw * 0.5, 0.08, hair)
    curve = p["mouth_curve"] + smile
    mouth = [(fx + x, my + curve * (1 - (x / mw) ** 2)) for x in np.linspace(-mw, mw, 9)]
    c.line(mouth, p["lip_colour"], p["lip"])
    if p["beard"] == 1:
        c.line([(fx - mw, my - 0.06), (fx + mw, my - 0.06)], hair, 0.05)
    top, nl, nw = p["eye_y"] + 0.08 + fy, p["nose_len"], p["nose_w"]
    shade = (*(int(v * 0.8) for v in p["skin"][:3]), 255)
    if p["nose_kind"] == 0:
        c.polygon([(fx, top), (fx - nw, top + nl), (fx + nw, top + nl)], shade)
    elif p["nose_kind"] == 1:
        c.line([(fx, top), (fx + nw * 0.5, top + nl), (fx - nw * 0.3, top + nl)], shade, 0.02)
    else:
        c.ellipse(fx, top + nl * 0.8, nw, nl * 0.3, shade)


def _eyes(c: _Canvas, p: dict[str, Any], fx: float, fy: float, yaw: float, open_: float) -> None:
    """Eyes (the far one narrower when the head turns), brows and glasses."""
    ey = p["eye_y"] + fy
    for side in (-1, 1):
        ex = fx + side * p["eye_dx"] * (1 - 0.15 * abs(yaw))
        rx, ry = p["eye_r"] * (1 - 0.6 * side * yaw), p["eye_r"] * p["eye_ratio"] * open_
        c.ellipse(ex, ey, rx, ry, (245, 245, 245, 255))
        c.ellipse(ex + yaw * 0.03, ey, min(rx, ry) * 0.8, ry * 0.9, p["iris"])
        c.ellipse(ex + yaw * 0.03, ey, min(rx, ry) * 0.35, ry * 0.4, (10, 10, 10, 255))
        by, tilt, bl = ey - p["brow_gap"], side * p["brow_tilt"] * 0.5, p["brow_len"]
        c.line([(ex - bl, by + tilt * bl), (ex + bl, by - tilt * bl)], p["hair"], p["brow_thick"])
        r = p["eye_r"] * 1.5
        if p["glasses"] == 1:
            c.ellipse(ex, ey, r, r * 0.85, p["frame"], ring=0.025)
        elif p["glasses"] == 2:
            h = r * 0.8
            rim = [(ex - r, ey - h), (ex + r, ey - h), (ex + r, ey + h), (ex - r, ey + h)]
            c.line([*rim, rim[0]], p["frame"], 0.025)
    if p["glasses"]:
        gap = p["eye_dx"] - p["eye_r"] * 1.5
        c.line([(fx - gap, ey), (fx + gap, ey)], p["frame"], 0.025)


def render_face(p: dict[str, Any], rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One image of the person ``p``, with this image's pose, light and clutter from ``rng``.

    Returns:
        ``uint8`` RGB array ``(size, size, 3)``.
    """
    u = rng.uniform
    big = size * SUPER
    yaw, pitch = u(-0.35, 0.35), u(-0.15, 0.15)
    cx, fx, fy = yaw * 0.05, yaw * 0.22, pitch * 0.15  # a turned head shifts its features most
    c = _Canvas(big)
    _hair(c, p, cx, front=False)
    for side in (-1, 1):
        ear_x = side * p["face_w"] * (1 - 0.2 * side * yaw)
        c.ellipse(ear_x, p["eye_y"] + 0.08, p["ear"] * 0.7, p["ear"], p["skin"])
    c.polygon(_outline(p, cx), p["skin"])
    _lower_face(c, p, fx, fy, smile=u(-0.03, 0.03))
    _eyes(c, p, fx, fy, yaw, open_=0.15 if rng.random() < 0.05 else u(0.7, 1.1))
    if p["mole"]:
        c.ellipse(fx + p["mole"][0], p["mole"][1] + fy, 0.022, 0.022, (60, 40, 30, 255))
    _hair(c, p, cx, front=True)

    # roll, scale and shift as one affine map of the face layer (PIL wants output -> input)
    angle, scale = math.radians(u(-15, 15)), u(1.05, 1.3)
    tx, ty = u(-0.08, 0.08, 2) * big / 2
    cos, sin, mid = math.cos(angle) / scale, math.sin(angle) / scale, big / 2
    inverse = (cos, sin, mid - cos * (mid + tx) - sin * (mid + ty))
    inverse += (-sin, cos, mid + sin * (mid + tx) - cos * (mid + ty))
    face = c.image.transform((big, big), Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR)
    image = _background(rng, big)
    image.alpha_composite(face)
    _occluder(rng, image)
    image = image.convert("RGB").reduce(SUPER)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(u(0.3, 0.9)))
    return _light(rng, np.asarray(image, dtype=np.float32))


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A flat colour, a gradient, stripes, or a gradient with clutter blobs."""
    base = rng.uniform(0, 255, 3).astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:
        pixels = np.broadcast_to(base, (size, size, 3))
    else:
        ramp = np.linspace(-1, 1, size, dtype=np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        t = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
        if kind == 2:
            t = np.sin(t * rng.uniform(4, 14))
        other = rng.uniform(0, 255, 3).astype(np.float32)
        pixels = base + (other - base) * (0.5 + 0.5 * t[..., None])
    image = Image.fromarray(pixels.astype(np.uint8)).convert("RGBA")
    if kind == 3:
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(2, 6)):
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(4, size / 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 256, 3).tolist()))
    return image


def _occluder(rng: np.random.Generator, image: Image.Image) -> None:
    """With probability 0.2, cover part of the face with a bar or a blob (a hand, a cup ...)."""
    if rng.random() >= 0.2:
        return
    size, draw = image.size[0], ImageDraw.Draw(image)
    colour = tuple(rng.integers(0, 256, 3).tolist())
    x, y = rng.uniform(0.25, 0.75, 2) * size
    w, h = rng.uniform(0.1, 0.28, 2) * size
    if rng.random() < 0.5:
        draw.rectangle((x - w / 2, y - h / 4, x + w / 2, y + h / 4), fill=colour)
    else:
        draw.ellipse((x - w / 2, y - h / 2, x + w / 2, y + h / 2), fill=colour)


def _light(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Brightness, a directional light gradient, a colour cast and sensor noise."""
    size = pixels.shape[0]
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    gain = rng.uniform(0.75, 1.25) * (1 + rng.uniform(0, 0.3) * gradient)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32) * rng.uniform(2, 10)
    return np.clip(pixels * gain[..., None] * cast + noise, 0, 255).astype(np.uint8)


def dataset_dir_name(identities: Sequence[int], images: int) -> str:
    """The cache folder name; non-default sizes get their own folder.

    Raises:
        ValueError: not 3 identity counts >= 2, or fewer than 2 images per identity.
    """
    if len(identities) != 3 or min(identities) < 2 or images < 2:
        raise ValueError(
            f"data.identities must be 3 counts >= 2 and data.images_per_person >= 2, got "
            f"{list(identities)} and {images}"
        )
    if tuple(identities) == DEFAULT_IDENTITIES and images == DEFAULT_IMAGES:
        return f"synthetic-identities-{VERSION}"
    train, val, test = identities
    return f"synthetic-identities-{VERSION}-{train}-{val}-{test}x{images}"


def _faces(person: int, images: int) -> Iterator[Image.Image]:
    """Images ``1..images`` of person ``person``, drawn from seeds ``(SEED, person[, i])``."""
    params = draw_identity(np.random.default_rng([SEED, person]))
    for i in range(1, images + 1):
        yield Image.fromarray(render_face(params, np.random.default_rng([SEED, person, i])))


def write_synthetic_identities(
    root: str | os.PathLike[str],
    identities: Sequence[int] = DEFAULT_IDENTITIES,
    images: int = DEFAULT_IMAGES,
) -> Path:
    """Write the faces under ``root`` unless they are there already.

    Layout: ``{train,val,test}/<person>/<person>_0001.jpg`` plus ``val_pairs.txt`` and
    ``test_pairs.txt`` in LFW's form (10 folds), written in one step by
    :func:`~cvtasks.data.builtin.identities.write_identity_dataset`. Person ``n`` and its image
    ``i`` are drawn from seeds ``(SEED, n)`` and ``(SEED, n, i)``: the same files everywhere.

    Args:
        root: the folder to hold the dataset folder.
        identities: number of train, val and test identities (disjoint).
        images: images per identity (at least 2).

    Returns:
        The dataset folder.
    """
    final = Path(root).expanduser() / dataset_dir_name(identities, images)
    splits: dict[str, dict[str, Iterator[Image.Image]]] = {}
    first = 0
    for split, count in zip(("train", "val", "test"), identities):
        people = range(first, first + count)
        splits[split] = {f"person_{n:04d}": _faces(n, images) for n in people}
        first += count
    pairs = {
        split: min(PAIRS[split], n * images) for split, n in zip(("val", "test"), identities[1:])
    }
    return write_identity_dataset(final, splits, pairs, seed=SEED, suffix=".jpg")


@DATASETS.register("synthetic_identities")
def synthetic_identities(
    root: str | os.PathLike[str] | None = None,
    *,
    identities: Sequence[int] = DEFAULT_IDENTITIES,
    images_per_person: int = DEFAULT_IMAGES,
    image_size: int = 40,
    batch_size: int = 128,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
    cache_images: bool = True,
    **kwargs: Any,
) -> BuiltinIdentitiesDataModule:
    """The built-in faces (64x64 JPEGs resized to ``image_size``) as identity folders + pairs.

    Args:
        root: where to keep the dataset folder; ``None`` means ``default_cache_dir() / "data"``.
        identities: train, val and test identity counts (other counts get their own folder).
        images_per_person: images per identity.
        image_size: output size.
        batch_size: pairs per evaluation batch (training batches are P x K).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory (about 120 MB for the default set).
        **kwargs: other :class:`IdentityFoldersDataModule` options.
    """
    data_root = builtin_root(root)
    counts = tuple(int(n) for n in identities)
    return BuiltinIdentitiesDataModule(
        data_root / dataset_dir_name(counts, images_per_person),
        partial(write_synthetic_identities, data_root, counts, int(images_per_person)),
        image_size=image_size,
        batch_size=batch_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
