"""Embedded sample data: three small sets built offline, in seconds, from what the package installs.

``digits``
    scikit-learn's bundled handwritten digits (1,797 rows), upscaled to 32x32 RGB, with a
    ``label`` (ClassLabel zero..nine) and a templated ``caption``.
``shapes``
    a seeded procedural set: saturated coloured objects (circle, square, triangle, star, heart,
    cross; plain, striped or dotted; small or large) on cluttered, desaturated textured
    backgrounds (grass, sand, gravel, bricks, tiles, wood). Each row has the ground-truth
    foreground ``mask`` (Image, mode L, 0/255, the image's own size), the main object's
    ``label``, a ``caption`` of graded complexity and ``caption_constraints``, the true number of
    concrete visual constraints the caption states. It is the set on which foreground scoring,
    caption complexity and quality weights are tested against truth.
``photos``
    the real photographs scikit-image ships in its wheel (astronaut, coffee, chelsea, rocket,
    ...), RGB, with a ``name`` and a hand-written ``caption``.

Every set is a ``datasets.Dataset`` whose images are ``Image()`` columns, so it goes through
``datasets.map`` exactly like a set loaded from the Hub.

The ``shapes`` foreground is separable by construction: every object pixel has a chroma
(max - min over RGB) of at least ``OBJECT_MIN_CHROMA``, every background pixel at most
``BACKGROUND_MAX_CHROMA``. Mean chroma per token therefore separates foreground tokens from
background tokens, which tests of the foreground scorer rely on.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

SAMPLE_NAMES = ("digits", "shapes", "photos")
# Each set's licence (a Hub licence id), in its DatasetInfo so that what is made from it carries it:
# digits are the UCI handwritten digits scikit-learn bundles (CC BY 4.0 at UCI), shapes are drawn
# here (the project's licence), the photographs come under scikit-image's per-image terms (mixed).
SAMPLE_LICENSES = {"digits": "cc-by-4.0", "shapes": "apache-2.0", "photos": "other"}
SPLITS = ("train", "test")
TEST_FRACTION = 0.2

# ---------------------------------------------------------------------------------------------
# load_sample


def load_sample(name: str, split: str | None = None, **kwargs) -> Dataset:
    """One embedded sample set by name; ``kwargs`` go to its builder (e.g. ``num_rows`` for shapes).

    ``split=None`` returns every row; ``"train"`` / ``"test"`` return a fixed 80/20 split
    (stratified by ``label`` where the set has one), the same on every machine.
    """
    if name == "digits":
        dataset = digits(**kwargs)
    elif name == "shapes":
        dataset = shapes(**kwargs)
    elif name == "photos":
        dataset = photos(**kwargs)
    else:
        raise ValueError(f"unknown sample set {name!r}: expected one of {', '.join(SAMPLE_NAMES)}")
    if split is None:
        return dataset
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r} for sample set {name!r}: expected one of {', '.join(SPLITS)} or None"
        )
    stratify = "label" if "label" in dataset.features else None
    parts = dataset.train_test_split(test_size=TEST_FRACTION, seed=0, stratify_by_column=stratify)
    return parts[split]


def _licensed(dataset: Dataset, name: str) -> Dataset:
    dataset.info.license = SAMPLE_LICENSES[name]
    return dataset


def _png(image: PILImage.Image) -> dict:
    """An ``Image()`` cell as PNG bytes, compressed lightly: 4x faster to write than the default."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return {"bytes": buffer.getvalue(), "path": None}


# ---------------------------------------------------------------------------------------------
# digits

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = (
    "a photo of the digit {name}",
    "a handwritten {name}",
    "the number {digit} written by hand",
    "a low-resolution image of a handwritten digit {name}",
)


def digits(image_size: int = 32) -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 handwritten digits, upscaled (bicubic) to RGB ``image_size``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)  # values are 0..16
    labels = [int(label) for label in bunch.target]
    images = []
    for grey in pixels:
        small = PILImage.fromarray(grey, mode="L").resize(
            (image_size, image_size), PILImage.Resampling.BICUBIC
        )
        images.append(_png(small.convert("RGB")))
    captions = [
        DIGIT_TEMPLATES[row % len(DIGIT_TEMPLATES)].format(name=DIGIT_NAMES[label], digit=label)
        for row, label in enumerate(labels)
    ]
    features = Features(
        {"image": Image(), "label": ClassLabel(names=list(DIGIT_NAMES)), "caption": Value("string")}
    )
    return _licensed(
        Dataset.from_dict({"image": images, "label": labels, "caption": captions}, features=features),
        "digits",
    )


# ---------------------------------------------------------------------------------------------
# photos

# (name, caption); loaded through skimage.data.<name>() unless listed in _PHOTO_LOADERS.
PHOTO_CAPTIONS: tuple[tuple[str, str], ...] = (
    (
        "astronaut",
        "a smiling astronaut in an orange flight suit beside a helmet, an American flag behind her",
    ),
    ("coffee", "a cup of espresso with a spoon on a red saucer on a wooden table"),
    ("chelsea", "a close-up of a tabby cat with green eyes"),
    ("rocket", "a rocket on its launch pad between towers at dusk, lit by floodlights"),
    ("motorcycle", "a red motorcycle parked in a garage in front of shelves"),
    ("camera", "a black-and-white photo of a man in a dark coat looking through a camera on a tripod"),
    ("coins", "a black-and-white photo of rows of old coins on a dark background"),
    ("moon", "a grey close-up of the cratered surface of the moon"),
    ("page", "a photographed page of printed text about region-based segmentation"),
    ("text", "handwritten equations on lined paper, photographed at an angle"),
    ("clock", "a motion-blurred photo of a round clock on a grey background"),
    ("hubble_deep_field", "many small colourful galaxies on a black sky"),
    ("immunohistochemistry", "a microscope image of stained tissue, brown cells on a pale blue background"),
    ("retina", "a photo of the back of a human eye: an orange retina with red blood vessels"),
    ("cell", "a grey microscope image of a single round cell"),
    ("brick", "a grey photo of a brick wall seen at an angle"),
    ("grass", "a grey photo of grass seen from above"),
    ("gravel", "a grey photo of gravel seen from above"),
)


def _motorcycle() -> np.ndarray:
    import skimage.data

    left, _right, _disparity = skimage.data.stereo_motorcycle()
    return left


_PHOTO_LOADERS: dict[str, Callable[[], np.ndarray]] = {"motorcycle": _motorcycle}


def photos(jpeg_quality: int = 95) -> Dataset:
    """The photographs scikit-image bundles, as RGB (greyscale ones converted), stored as JPEG.

    Only the images that load offline are included: a scikit-image build that needs the network
    (or ``pooch``) for one of them simply leaves that row out. JPEG storage (quality 95) keeps
    loading under a second; PNG re-encoding of the large ones takes seconds.
    """
    import skimage.data

    names, captions, images = [], [], []
    for name, caption in PHOTO_CAPTIONS:
        loader = _PHOTO_LOADERS.get(name) or getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            array = loader()
        except (ModuleNotFoundError, OSError, ValueError, ConnectionError):
            continue  # this scikit-image build fetches it from the network: not embedded, skip it
        buffer = io.BytesIO()
        PILImage.fromarray(np.asarray(array)).convert("RGB").save(buffer, format="JPEG", quality=jpeg_quality)
        names.append(name)
        captions.append(caption)
        images.append({"bytes": buffer.getvalue(), "path": None})
    if not images:
        raise RuntimeError(
            "no scikit-image photograph loads offline here: reinstall scikit-image (pip install scikit-image)"
        )
    features = Features({"image": Image(), "name": Value("string"), "caption": Value("string")})
    return _licensed(
        Dataset.from_dict({"image": images, "name": names, "caption": captions}, features=features), "photos"
    )


# ---------------------------------------------------------------------------------------------
# shapes

SHAPE_NAMES = ("circle", "square", "triangle", "star", "heart", "cross")
# Saturated colours: chroma >= 170, still >= 100 once darkened by SHADE for stripes and dots.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 35),
    "green": (30, 200, 40),
    "blue": (30, 70, 225),
    "yellow": (235, 205, 20),
    "orange": (245, 125, 15),
    "purple": (155, 30, 215),
}
TEXTURES = ("plain", "striped", "dotted")
SIZES = ("small", "large")
RELATIONS = ("above", "below", "to the left of", "to the right of")
BACKGROUNDS = ("grass", "sand", "gravel", "bricks", "tiles", "wood")
SHADE = 0.6  # stripes and dots: the object's colour darkened by this factor
OBJECT_MIN_CHROMA = 100
BACKGROUND_MAX_CHROMA = 60
# Object radius as a share of the image side: (small, large), alone and in two-object scenes.
_RADIUS_ALONE = {"small": (0.13, 0.17), "large": (0.26, 0.32)}
_RADIUS_PAIR = {"small": (0.11, 0.14), "large": (0.18, 0.22)}
# Caption complexity levels (the paper's 1-4) and the constraint counts each one covers.
LEVEL_CONSTRAINTS = {1: (0, 0), 2: (1, 3), 3: (4, 6), 4: (7, 8)}


def shapes(num_rows: int = 240, image_size: int = 64, seed: int = 0) -> Dataset:
    """A seeded procedural set of coloured objects on cluttered textured backgrounds.

    Row ``i`` depends only on ``(seed, i)``: the first rows are the same whatever ``num_rows``.
    Labels cycle through ``SHAPE_NAMES`` and caption levels through 1-4, so any 24 consecutive
    rows hold every (shape, level) pair.

    Captions state a chosen subset of the scene's true attributes, never a false one. The
    concrete visual constraints counted in ``caption_constraints`` are: the size, colour and
    texture words of each object, a count ("two"), a spatial relation between two objects and
    the background ("on grass"). Object categories are not constraints (a caption naming only
    categories, "a circle", has 0: level 1). The paper's levels follow: 0 -> 1, 1-3 -> 2,
    4-6 -> 3, more than 6 -> 4.
    """
    if num_rows < 1:
        raise ValueError(f"shapes: num_rows must be at least 1, got {num_rows}")
    if image_size < 16:
        raise ValueError(f"shapes: image_size must be at least 16 pixels, got {image_size}")
    rows = [_shapes_row(seed, row, image_size) for row in range(num_rows)]
    features = Features(
        {
            "image": Image(),
            "mask": Image(),
            "label": ClassLabel(names=list(SHAPE_NAMES)),
            "caption": Value("string"),
            "caption_constraints": Value("int32"),
        }
    )
    columns = {name: [row[name] for row in rows] for name in features}
    return _licensed(Dataset.from_dict(columns, features=features), "shapes")


def constraint_level(constraints: int) -> int:
    """The paper's caption complexity level (1-4) for a count of concrete visual constraints."""
    if constraints < 0:
        raise ValueError(f"a constraint count cannot be negative, got {constraints}")
    if constraints == 0:
        return 1
    if constraints <= 3:
        return 2
    if constraints <= 6:
        return 3
    return 4


def _shapes_row(seed: int, row: int, size: int) -> dict:
    rng = np.random.default_rng([seed, row])
    level = (row // len(SHAPE_NAMES)) % 4 + 1
    low, high = LEVEL_CONSTRAINTS[level]
    target = int(rng.integers(low, high + 1))

    # Which facts the caption states: a single object (5 optional slots) or two related objects.
    single_slots = ["size", "colour", "texture", "background", "count"]
    pair_slots = ["size0", "colour0", "texture0", "size1", "colour1", "texture1", "background"]
    two_objects = target > len(single_slots) or (target >= 1 and rng.random() < 0.4)
    if two_objects:
        stated = {"relation", *rng.choice(pair_slots, size=target - 1, replace=False).tolist()}
    else:
        stated = set(rng.choice(single_slots, size=target, replace=False).tolist())

    shape_names = [SHAPE_NAMES[row % len(SHAPE_NAMES)]]
    if two_objects:
        others = [name for name in SHAPE_NAMES if name != shape_names[0]]
        shape_names.append(others[int(rng.integers(len(others)))])
    colour_names = rng.choice(list(COLOURS), size=len(shape_names), replace=False).tolist()
    objects = []
    for index, (shape, colour) in enumerate(zip(shape_names, colour_names)):
        key = str(index) if two_objects else ""
        texture_choices = TEXTURES[1:] if f"texture{key}" in stated else TEXTURES
        objects.append(
            {
                "shape": shape,
                "colour": colour,
                "texture": texture_choices[int(rng.integers(len(texture_choices)))],
                "size": SIZES[int(rng.integers(len(SIZES)))],
                "stated": {slot for slot in ("size", "colour", "texture") if f"{slot}{key}" in stated},
            }
        )
    count = 2 if "count" in stated else 1
    relation = RELATIONS[int(rng.integers(len(RELATIONS)))] if two_objects else None
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]

    # Layout: centres and radii in image-side units.
    if two_objects or count == 2:
        # two copies (no relation): side by side or stacked, not stated, so either
        along = relation or RELATIONS[int(rng.integers(len(RELATIONS)))]
        copies = objects if two_objects else [objects[0], objects[0]]
        centres = _pair_centres(rng, along, [_radius(rng, _RADIUS_PAIR, obj["size"]) for obj in copies])
        placed = [(obj, centre, radius) for obj, (centre, radius) in zip(copies, centres)]
    else:
        radius = _radius(rng, _RADIUS_ALONE, objects[0]["size"])
        centre = rng.uniform(radius + 0.03, 1 - radius - 0.03, size=2)
        placed = [(objects[0], centre, radius)]

    image = _background(rng, background, size)
    mask = np.zeros((size, size), dtype=bool)
    for obj, centre, radius in placed:
        inside, shaded = _draw_object(rng, obj["shape"], obj["texture"], centre, radius, size)
        colour = np.asarray(COLOURS[obj["colour"]], dtype=np.float32)
        image[inside] = colour
        image[inside & shaded] = colour * SHADE
        mask |= inside

    caption = _phrase(objects[0], count)
    constraints = len(objects[0]["stated"]) + (count == 2)
    if two_objects:
        caption += f" {relation} {_phrase(objects[1], 1)}"
        constraints += 1 + len(objects[1]["stated"])
    if "background" in stated:
        caption += f" on {background}"
        constraints += 1
    return {
        "image": _png(PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB")),
        "mask": _png(PILImage.fromarray(mask.astype(np.uint8) * 255, mode="L")),
        "label": SHAPE_NAMES.index(objects[0]["shape"]),
        "caption": caption,
        "caption_constraints": constraints,
    }


def _radius(rng: np.random.Generator, table: dict[str, tuple[float, float]], size_name: str) -> float:
    low, high = table[size_name]
    return float(rng.uniform(low, high))


def _pair_centres(
    rng: np.random.Generator, relation: str, radii: list[float]
) -> list[tuple[np.ndarray, float]]:
    """Centres (x, y) for the first object ``relation`` the second: each in its own half, no overlap."""
    near, far = 0.25 + rng.uniform(-0.02, 0.02), 0.75 + rng.uniform(-0.02, 0.02)
    first_main, second_main = {"above": (near, far), "below": (far, near)}.get(relation, (None, None))
    centres = []
    for index, radius in enumerate(radii):
        free = rng.uniform(radius + 0.03, 1 - radius - 0.03)
        if relation in ("above", "below"):
            centres.append((np.array([free, (first_main, second_main)[index]]), radius))
        else:
            left, right = (near, far) if relation == "to the left of" else (far, near)
            centres.append((np.array([(left, right)[index], free]), radius))
    return centres


def _phrase(obj: dict, count: int) -> str:
    words = [obj[slot] for slot in ("size", "colour", "texture") if slot in obj["stated"]]
    noun = obj["shape"] if count == 1 else obj["shape"] + ("es" if obj["shape"].endswith(("s", "x")) else "s")
    if count == 2:
        return " ".join(["two", *words, noun])
    article = "an" if (words or [noun])[0][0] in "aeiou" else "a"
    return " ".join([article, *words, noun])


def _draw_object(
    rng: np.random.Generator, shape: str, texture: str, centre: np.ndarray, radius: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps (inside the object, darker texture pixel) for one object, all pixels at once."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(coords, coords)  # y grows downwards
    angle = np.deg2rad(rng.uniform(-15, 15)) if shape != "circle" else 0.0
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = (x - centre[0]) / radius, (y - centre[1]) / radius
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # object frame, unit radius, v downwards
    inside = _shape_inside(shape, u, v)
    if texture == "striped":
        direction = rng.uniform(0, np.pi)
        period = rng.uniform(0.45, 0.6)
        shaded = np.floor((u * np.cos(direction) + v * np.sin(direction)) / (period / 2)) % 2 == 1
    elif texture == "dotted":
        spacing = rng.uniform(0.45, 0.6)
        fu, fv = (u / spacing) % 1 - 0.5, (v / spacing) % 1 - 0.5
        shaded = fu**2 + fv**2 < 0.3**2
    else:
        shaded = np.zeros_like(inside)
    return inside, shaded


def _shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of canonical points (unit radius, apex up) in each shape."""
    if shape == "circle":
        return u**2 + v**2 <= 1
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # apex (0, -1), base corners (+-0.95, 0.65)
        return (v <= 0.65) & (np.abs(u) <= 0.95 * (v + 1) / 1.65)
    if shape == "star":  # five points, outer radius 1, inner 0.45
        rho = np.hypot(u, v)
        phi = np.arctan2(u, -v) % (2 * np.pi / 5)
        phi = np.minimum(phi, 2 * np.pi / 5 - phi)
        px, py = rho * np.sin(phi), rho * np.cos(phi)
        qx, qy = 0.45 * np.sin(np.pi / 5), 0.45 * np.cos(np.pi / 5)
        # inside when on the origin's side of the edge from the outer point (0, 1) to the inner one
        return qx * (py - 1) - (qy - 1) * px <= 0
    if shape == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, y upwards, scaled into the unit disc
        hx, hy = u * 1.15, -v * 1.15 + 0.15
        return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    if shape == "cross":
        return ((np.abs(u) <= 0.33) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 0.95))
    raise ValueError(f"unknown shape {shape!r}: expected one of {', '.join(SHAPE_NAMES)}")


# Backgrounds: muted base colours modulated by a luminance pattern, then cluttered.
_BACKGROUND_BASE = {
    "grass": (95, 125, 65),
    "sand": (190, 170, 135),
    "gravel": (128, 122, 114),
    "bricks": (165, 105, 90),
    "tiles": (150, 155, 165),
    "wood": (150, 110, 78),
}


def _smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Value noise in [0, 1]: a (rows, cols) grid of random values resized (bicubic) to size x size."""
    grid = rng.random(cells).astype(np.float32)
    resized = PILImage.fromarray(grid, mode="F").resize((size, size), PILImage.Resampling.BICUBIC)
    return np.clip(np.asarray(resized), 0, 1)


def _background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A (size, size, 3) float32 textured background, chroma at most BACKGROUND_MAX_CHROMA."""
    coords = np.arange(size, dtype=np.float32)
    x, y = np.meshgrid(coords, coords)
    fine = rng.random((size, size)).astype(np.float32)
    if kind == "grass":  # vertical blades plus patches
        blades = _smooth_noise(rng, size, (max(2, size // 12), size // 2))
        light = 0.65 + 0.45 * blades + 0.2 * _smooth_noise(rng, size, (4, 4)) + 0.1 * fine
    elif kind == "sand":  # ripples with a noisy phase
        phase = 6 * _smooth_noise(rng, size, (3, 3))
        ripples = np.sin(2 * np.pi * y / (size / rng.uniform(5, 8)) + phase)
        light = 0.85 + 0.08 * ripples + 0.12 * fine
    elif kind == "gravel":  # stones and speckle
        stones = _smooth_noise(rng, size, (max(2, size // 5), max(2, size // 5)))
        light = 0.5 + 0.6 * stones + 0.25 * (fine - 0.5)
    elif kind == "bricks":  # staggered courses, mortar lines, a tone per brick
        height, width = size / 8, size / 4
        course = np.floor(y / height).astype(int)
        shifted = x + (course % 2) * width / 2
        column = np.floor(shifted / width).astype(int)
        tones = rng.uniform(0.8, 1.1, size=(course.max() + 1, column.max() + 1))
        mortar = ((y % height) < 1.2) | ((shifted % width) < 1.2)
        light = np.where(mortar, 1.25, tones[course, column] + 0.1 * (fine - 0.5))
    elif kind == "tiles":  # two-tone checkerboard with dark grout
        cell = size / 6
        checker = (np.floor(x / cell) + np.floor(y / cell)) % 2
        grout = ((x % cell) < 1) | ((y % cell) < 1)
        light = np.where(grout, 0.45, 0.8 + 0.3 * checker + 0.05 * fine)
    elif kind == "wood":  # planks with wavy grain
        warp = 3 * _smooth_noise(rng, size, (3, 6))
        grain = np.sin(2 * np.pi * (y / (size / rng.uniform(10, 14)) + warp))
        plank = (y % (size / 4)) < 1
        light = np.where(plank, 0.55, 0.85 + 0.12 * grain + 0.08 * fine)
    else:
        raise ValueError(f"unknown background {kind!r}: expected one of {', '.join(BACKGROUNDS)}")
    image = np.asarray(_BACKGROUND_BASE[kind], dtype=np.float32) * light[..., None]
    _add_clutter(rng, image, x / size, y / size)
    return _limit_chroma(np.clip(image, 0, 255), BACKGROUND_MAX_CHROMA)


def _add_clutter(rng: np.random.Generator, image: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """A few muted ellipses and sticks scattered over the background, in place."""
    count = int(rng.integers(4, 10))
    centres = rng.random((count, 2)).astype(np.float32)
    axes = rng.uniform(0.02, 0.09, size=(count, 2)).astype(np.float32)
    axes[rng.random(count) < 0.4, 1] *= 0.25  # some thin sticks
    angles = rng.uniform(0, np.pi, size=count).astype(np.float32)
    dx, dy = x[None] - centres[:, 0, None, None], y[None] - centres[:, 1, None, None]
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    u, v = (cos * dx + sin * dy) / axes[:, 0, None, None], (-sin * dx + cos * dy) / axes[:, 1, None, None]
    inside = u**2 + v**2 <= 1  # (count, H, W)
    grey = rng.uniform(60, 200, size=(count, 1))
    tint = rng.uniform(-20, 20, size=(count, 3))
    colours = (grey + tint).astype(np.float32)
    topmost = np.where(inside.any(0), count - 1 - np.argmax(inside[::-1], axis=0), -1)
    covered = topmost >= 0
    image[covered] = colours[topmost[covered]]


def _limit_chroma(image: np.ndarray, limit: float) -> np.ndarray:
    """Pull each pixel toward its grey so that max - min over RGB is at most ``limit``."""
    mean = image.mean(axis=-1, keepdims=True)
    chroma = image.max(axis=-1, keepdims=True) - image.min(axis=-1, keepdims=True)
    factor = np.minimum(1.0, limit / np.maximum(chroma, 1e-6))
    return mean + (image - mean) * factor
