"""shapes: small RGB scenes of coloured shapes, with a caption and question-answer pairs per scene.

Generated deterministically from a seed (nothing is stored). A scene is 32x32 pixels on a black background
and holds one or two objects; each object has a *shape* (circle, square, triangle), a *colour* (red, green,
blue, yellow, purple) and a *size* (small, large). With two objects the first stands in the left half and
the second in the right half, so the caption can say where each one is:

    "a large red circle"                                  (one object)
    "a small blue square on the left and a large yellow triangle on the right"   (two objects)

Every attribute is visible in the pixels and named in the caption, so a captioner can be scored
attribute by attribute, and a contrastive image-text model has a real matching problem to solve
(5 x 3 x 2 = 30 distinct objects, 930 distinct scenes).

Questions are templated from the objects ("what colour is the circle?", "how many shapes are there?",
"is there a triangle?", "what size is the red circle?", "where is the red circle?") with one-word
answers; a question is asked only when its answer is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COLORS", "SHAPES", "SIZES", "IMAGE_SIZE", "SPLIT_SIZES", "ShapesScenes", "generate_shapes",
           "load_shapes", "render_object"]

IMAGE_SIZE = 32
COLORS = {"red": (220, 50, 47), "green": (60, 180, 75), "blue": (50, 100, 230),
          "yellow": (235, 200, 40), "purple": (160, 70, 200)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 4.0, "large": 7.0}  # half-width (radius) in pixels
SPLIT_SIZES = {"train": 3000, "val": 500, "test": 500}
_SPLIT_SEEDS = {"train": 11, "val": 22, "test": 33}
NUMBER_WORDS = ("zero", "one", "two")


def render_object(image: np.ndarray, shape: str, color: str, size: str, cx: float, cy: float) -> None:
    """Paint one object into ``image`` (H, W, 3) uint8 in place, centred at pixel (cx, cy)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {list(SHAPES)}, got {shape!r}")
    if color not in COLORS:
        raise ValueError(f"color must be one of {list(COLORS)}, got {color!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    r = SIZES[size]
    y, x = np.mgrid[: image.shape[0], : image.shape[1]] + 0.5
    dx, dy = x - cx, y - cy
    if shape == "circle":
        mask = dx ** 2 + dy ** 2 <= r ** 2
    elif shape == "square":
        mask = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    else:  # upward triangle with its base at cy + r and apex at cy - r
        mask = (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2 * 1.1)
    image[mask] = COLORS[color]


def _caption(objects: list[dict]) -> str:
    words = [f"a {o['size']} {o['color']} {o['shape']}" for o in objects]
    if len(words) == 1:
        return words[0]
    return f"{words[0]} on the left and {words[1]} on the right"


def _questions(objects: list[dict], rng: np.random.Generator) -> list[tuple[str, str]]:
    qa = [("how many shapes are there?", NUMBER_WORDS[len(objects)])]
    present = {o["shape"] for o in objects}
    probe = SHAPES[rng.integers(len(SHAPES))]
    qa.append((f"is there a {probe}?", "yes" if probe in present else "no"))
    for o in objects:
        same_shape = sum(p["shape"] == o["shape"] for p in objects)
        if same_shape == 1:
            qa.append((f"what color is the {o['shape']}?", o["color"]))
        same_color = sum(p["color"] == o["color"] for p in objects)
        if same_color == 1:
            qa.append((f"what shape is the {o['color']} object?", o["shape"]))
        same_kind = sum((p["color"], p["shape"]) == (o["color"], o["shape"]) for p in objects)
        if same_kind == 1:
            qa.append((f"what size is the {o['color']} {o['shape']}?", o["size"]))
            if len(objects) == 2:
                qa.append((f"where is the {o['color']} {o['shape']}?", "left" if o is objects[0] else "right"))
    return qa


@dataclass(frozen=True)
class ShapesScenes:
    """Scenes as arrays: ``images`` (N, 32, 32, 3) uint8; ``captions`` and ``objects`` per scene;
    ``questions`` / ``answers`` as lists of lists (several per scene)."""

    images: np.ndarray
    captions: list
    objects: list
    questions: list
    answers: list
    split: str | None = None

    def __len__(self) -> int:
        return len(self.images)


def generate_shapes(n: int, seed: int = 0, max_objects: int = 2) -> ShapesScenes:
    """Generate ``n`` scenes with 1..``max_objects`` objects each, deterministically from ``seed``."""
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("max_objects", max_objects, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if max_objects > 2:
        raise ValueError(f"max_objects must be 1 or 2 (scenes are split into left and right halves), got {max_objects}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions, all_objects, questions, answers = [], [], [], []
    for i in range(n):
        count = int(rng.integers(1, max_objects + 1))
        objects = []
        for k in range(count):
            o = {"shape": SHAPES[rng.integers(len(SHAPES))], "color": list(COLORS)[rng.integers(len(COLORS))],
                 "size": list(SIZES)[rng.integers(len(SIZES))]}
            r = SIZES[o["size"]]
            lo, hi = (r + 1, IMAGE_SIZE - r - 1) if count == 1 else \
                     ((r + 1, IMAGE_SIZE / 2 - r - 0.5) if k == 0 else (IMAGE_SIZE / 2 + r + 0.5, IMAGE_SIZE - r - 1))
            o["x"] = float(rng.uniform(lo, hi))
            o["y"] = float(rng.uniform(r + 1, IMAGE_SIZE - r - 1))
            render_object(images[i], o["shape"], o["color"], o["size"], o["x"], o["y"])
            objects.append(o)
        qa = _questions(objects, rng)
        captions.append(_caption(objects))
        all_objects.append(objects)
        questions.append([q for q, _ in qa])
        answers.append([a for _, a in qa])
    return ShapesScenes(images, captions, all_objects, questions, answers)


def load_shapes(split: str = "train", n: int | None = None, max_objects: int = 2) -> ShapesScenes:
    """The fixed train/val/test scenes (3,000 / 500 / 500 by default; each split has its own seed)."""
    if not isinstance(split, str) or split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)}, got {split!r}")
    scenes = generate_shapes(SPLIT_SIZES[split] if n is None else n, seed=_SPLIT_SEEDS[split],
                             max_objects=max_objects)
    return ShapesScenes(scenes.images, scenes.captions, scenes.objects, scenes.questions, scenes.answers, split)
