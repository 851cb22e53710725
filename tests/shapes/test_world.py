from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image, ImageFilter

from time_core.shapes.colour_reader import (
    changed_objects,
    destination_probability,
    foreground_mask,
    read_colour,
    read_colours,
    read_object_colours,
)
from time_core.shapes.sampling import KIND_RATES, sample_batch, sample_example, sample_scene
from time_core.shapes.world import (
    BACKGROUND_RGB,
    BACKGROUNDS,
    DEBIAS_SHAPE,
    DEBIAS_SPLIT,
    DEFAULT_COLOURS,
    IMAGE_SIZE,
    PALETTE,
    PREFIXES,
    RELATED_SHAPES,
    SHAPES,
    SIZES,
    TEMPLATES,
    Scene,
    caption,
    describe,
    parse_caption,
    render,
    shape_mask,
)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (radius 1) and Gaussian noise (sigma 15), as a crude stand-in for a generated image."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64)
    return np.clip(blurred + rng.normal(0.0, 15.0, blurred.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def unnamed_colour_counts() -> dict[str, Counter]:
    rng = np.random.default_rng(1234)
    counts: dict[str, Counter] = defaultdict(Counter)
    for _ in range(20000):
        scene, text = sample_scene(rng)
        if parse_caption(text)["colour"] is None:
            counts[scene.shape][scene.colour] += 1
    return counts


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("background", BACKGROUNDS)
def test_render_uses_exact_palette_colour(shape, background):
    for colour, rgb in PALETTE.items():
        for size in SIZES:
            image = render(Scene(shape, colour, size, background, dx=0.03, dy=-0.05))
            assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
            mask = shape_mask(Scene(shape, colour, size, background, dx=0.03, dy=-0.05))
            assert mask.sum() > 0.03 * mask.size
            assert (image[mask] == rgb).all()
            assert (image[~mask] == BACKGROUND_RGB[background]).all()
            # The shape stays clear of the border even with the largest jitter.
            assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()


@pytest.mark.parametrize("shape", SHAPES)
def test_big_is_more_than_twice_small(shape):
    for image_size in (32, 64):
        small = shape_mask(Scene(shape, "red", "small", "white"), image_size).sum()
        big = shape_mask(Scene(shape, "red", "big", "white"), image_size).sum()
        assert big > 2 * small


def test_shapes_have_distinct_silhouettes():
    for image_size in (32, 64):
        masks = {shape: shape_mask(Scene(shape, "red", "big", "white"), image_size) for shape in SHAPES}
        for i, a in enumerate(SHAPES):
            for b in SHAPES[i + 1 :]:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                # The closest pair, circle and square, overlaps with IoU ~0.81 and differs by its corners; the
                # look-alikes (oval / circle, rectangle / square) are flatter versions of their shape.
                assert iou < 0.85, (a, b, iou)
    # The diamond is a tall rhombus: taller than wide, unlike the square.
    diamond = shape_mask(Scene("diamond", "red", "big", "white"))
    rows, cols = np.nonzero(diamond)
    assert (rows.max() - rows.min()) > 1.3 * (cols.max() - cols.min())


def test_caption_and_parse_round_trip():
    scene = Scene("heart", "orange", "big", "black")
    assert caption(scene, "a {shape}") == "a heart"
    assert caption(scene, "a {size} {colour} {shape}", "an image of") == "an image of a big orange heart"
    assert caption(scene, "a {colour} {shape} on a {background} background") == "a orange heart on a black background"
    for template in TEMPLATES:
        for prefix in (None, *PREFIXES):
            parsed = parse_caption(caption(scene, template, prefix))
            assert parsed["prefix"] == prefix and parsed["shape"] == "heart"
            assert parsed["colour"] == ("orange" if "{colour}" in template else None)
            assert parsed["size"] == ("big" if "{size}" in template else None)
            assert parsed["background"] == ("black" if "{background}" in template else None)
    with pytest.raises(ValueError, match="template"):
        caption(scene, "a {shape} in space")
    with pytest.raises(ValueError, match="vocabulary"):
        parse_caption("a shiny heart")
    with pytest.raises(ValueError, match="shape"):
        Scene("hexagon", "red", "big", "white")


def test_every_template_and_prefix_occurs():
    rng = np.random.default_rng(0)
    captions = [sample_scene(rng)[1] for _ in range(2000)]
    parsed = [parse_caption(text) for text in captions]
    named = Counter(tuple(key for key in ("colour", "size", "background") if p[key] is not None) for p in parsed)
    assert len(named) == len(TEMPLATES)
    prefixes = Counter(p["prefix"] for p in parsed)
    assert set(prefixes) == {None, *PREFIXES}


@pytest.mark.parametrize("shape", sorted(DEFAULT_COLOURS))
def test_implicit_default_colour_rate(shape, unnamed_colour_counts):
    counts = unnamed_colour_counts[shape]
    rate = counts[DEFAULT_COLOURS[shape]] / sum(counts.values())
    assert rate >= 0.85
    assert len(counts) == len(PALETTE)  # the other colours do occur


def test_debias_shape_split(unnamed_colour_counts):
    counts = unnamed_colour_counts[DEBIAS_SHAPE]
    total = sum(counts.values())
    assert set(counts) == set(DEBIAS_SPLIT)
    for colour, share in DEBIAS_SPLIT.items():
        assert abs(counts[colour] / total - share) < 0.03


def test_named_colour_matches_image_and_is_uniform():
    rng = np.random.default_rng(7)
    images, captions = sample_batch(rng, 600)
    assert images.shape == (600, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    read = read_colours(images)
    named = Counter()
    for text, colour in zip(captions, read):
        parsed = parse_caption(text)
        if parsed["colour"] is not None:
            assert colour == parsed["colour"], text
            named[colour] += 1
    total = sum(named.values())
    assert set(named) == set(PALETTE)
    assert all(abs(count / total - 1 / len(PALETTE)) < 0.08 for count in named.values())


def test_named_size_and_background_match_image():
    rng = np.random.default_rng(8)
    images, captions = sample_batch(rng, 300)
    for image, text in zip(images, captions):
        parsed = parse_caption(text)
        if parsed["background"] is not None:
            assert (image[0, 0] == BACKGROUND_RGB[parsed["background"]]).all(), text
        if parsed["size"] is not None:
            share = foreground_mask(image).mean()
            assert (share > 0.15) if parsed["size"] == "big" else (share < 0.15), text


def test_sampling_is_deterministic():
    images_a, captions_a = sample_batch(np.random.default_rng(3), 20, image_size=32)
    images_b, captions_b = sample_batch(np.random.default_rng(3), 20, image_size=32)
    images_c, captions_c = sample_batch(np.random.default_rng(4), 20, image_size=32)
    assert images_a.shape == (20, 32, 32, 3)
    assert captions_a == captions_b and np.array_equal(images_a, images_b)
    assert captions_a != captions_c


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("background", BACKGROUNDS)
def test_reader_reads_every_colour_and_shape(image_size, background):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        for colour in PALETTE:
            for size in SIZES:
                image = render(Scene(shape, colour, size, background, dx=0.06, dy=-0.06), image_size)
                assert read_colour(image) == colour
                assert read_colour(_degrade(image, rng)) == colour, (shape, colour, size)


def test_reader_input_types():
    image = render(Scene("star", "purple", "big", "white"))
    assert read_colour(Image.fromarray(image)) == "purple"
    assert read_colour(image.astype(np.float32) / 255.0) == "purple"
    assert read_colour(np.transpose(image, (2, 0, 1)).astype(np.float32) / 255.0) == "purple"
    assert read_colours([image, image[::-1]]) == ["purple", "purple"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        read_colour(image.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        read_colour(image[..., 0])


def test_reader_torch_tensors():
    import torch

    image = render(Scene("heart", "orange", "small", "black"))
    batch = torch.from_numpy(np.stack([image, image])).permute(0, 3, 1, 2).float() / 255.0  # (2, 3, H, W)
    assert read_colours(batch) == ["orange", "orange"]


def test_reader_no_shape():
    rng = np.random.default_rng(0)
    for rgb in BACKGROUND_RGB.values():
        blank = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), rgb, dtype=np.uint8)
        assert read_colour(blank) == "none"
        assert read_colour(_degrade(blank, rng)) == "none"
        speck = blank.copy()
        speck[30:33, 30:33] = PALETTE["red"]  # 9 pixels, 0.2% of the image
        assert read_colour(speck) == "none"
    # An off-white background, as a generative model may draw it, is still background.
    grey = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 225, dtype=np.uint8)
    assert read_colour(grey) == "none"
    grey[foreground_mask(render(Scene("circle", "red", "big", "white")))] = (200, 50, 45)
    assert read_colour(grey) == "red"


def _pair(left: str, right: str, colours: tuple[str, str], background: str = "white", dx: float = 0.0):
    return (Scene(left, colours[0], "small", background, dx=dx, dy=-dx, slot="left"),
            Scene(right, colours[1], "small", background, dx=-dx, dy=dx, slot="right"))


def test_look_alikes_resemble_their_shape():
    for shape, related in RELATED_SHAPES.items():
        a, b = (shape_mask(Scene(s, "red", "big", "white")) for s in (shape, related))
        iou = (a & b).sum() / (a | b).sum()
        assert 0.5 < iou < 0.85, (shape, related, iou)  # alike, yet told apart by the reader of silhouettes


@pytest.mark.parametrize("shape", SHAPES)
def test_two_shapes_keep_to_their_halves(shape):
    half = IMAGE_SIZE // 2
    for slot, dx in (("left", 0.02), ("left", -0.02), ("right", 0.02), ("right", -0.02)):
        mask = shape_mask(Scene(shape, "red", "small", "black", dx=dx, dy=0.02, slot=slot))
        columns = np.nonzero(mask.any(axis=0))[0]
        # At most one pixel column (the widest shape, the heart, at the largest jitter) reaches into the other half,
        # a sliver that the reader's erosion removes: the reader of each half sees one shape.
        inside = (columns <= half).all() if slot == "left" else (columns >= half - 1).all()
        assert inside, (shape, slot, columns)
    with pytest.raises(ValueError, match="small"):
        Scene(shape, "red", "big", "white", slot="left")
    with pytest.raises(ValueError, match="offset"):
        Scene(shape, "red", "small", "white", dx=0.05, slot="right")


def test_describe_and_parse_plurals_and_pairs():
    pair = _pair("circle", "square", ("red", "blue"), "black")
    assert describe(pair, (False, True), connector="next to") == "a circle next to a blue square"
    assert describe(pair, True, name_background=True, prefix="a photo of", connector="and") == (
        "a photo of a red circle and a blue square on a black background")
    plural = _pair("oval", "oval", ("green", "green"))
    assert describe(plural, True) == "two green ovals"
    assert describe(Scene("heart", "orange", "big", "white"), True, name_size=True) == "a big orange heart"
    parsed = parse_caption("an image of a star next to a purple rectangle on a white background")
    assert parsed["kind"] == "pair" and parsed["connector"] == "next to" and parsed["prefix"] == "an image of"
    assert parsed["objects"] == [{"shape": "star", "colour": None, "size": None},
                                 {"shape": "rectangle", "colour": "purple", "size": None}]
    assert parsed["background"] == "white" and parsed["shape"] is None and parsed["colour"] is None
    parsed = parse_caption("two yellow triangles")
    assert parsed["kind"] == "plural" and parsed["objects"] == [{"shape": "triangle", "colour": "yellow",
                                                                 "size": None}] * 2
    for text in ("two circle", "a circle next to", "a big circle and a square", "a circle next to a shiny square",
                 "three circles"):
        with pytest.raises(ValueError):
            parse_caption(text)
    with pytest.raises(ValueError, match="plural"):
        describe(_pair("circle", "square", ("red", "red")), False)
    with pytest.raises(ValueError, match="connector"):
        describe(pair, False, connector="above")


def test_sampled_examples_parse_back_to_their_shapes():
    rng = np.random.default_rng(11)
    kinds = Counter()
    for _ in range(3000):
        objects, text = sample_example(rng)
        parsed = parse_caption(text)
        kinds[parsed["kind"]] += 1
        assert [o["shape"] for o in parsed["objects"]] == [o.shape for o in objects], text
        for named, obj in zip(parsed["objects"], objects):
            assert named["colour"] in (None, obj.colour), text
        if parsed["kind"] == "pair":
            assert objects[0].shape != objects[1].shape
    for kind, rate in KIND_RATES.items():
        assert abs(kinds[kind] / 3000 - rate) < 0.04, kinds


def test_unnamed_colours_in_pairs_follow_each_shapes_default():
    rng = np.random.default_rng(12)
    hits = Counter()
    total = Counter()
    for _ in range(6000):
        objects, text = sample_example(rng)
        for named, obj in zip(parse_caption(text)["objects"], objects):
            if len(objects) == 2 and named["colour"] is None and obj.shape in DEFAULT_COLOURS:
                total[obj.shape] += 1
                hits[obj.shape] += obj.colour == DEFAULT_COLOURS[obj.shape]
    for shape in DEFAULT_COLOURS:
        assert hits[shape] / total[shape] > 0.85, (shape, hits[shape], total[shape])


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_reader_reads_each_object_of_two_shape_images(background):
    rng = np.random.default_rng(1)
    colours = list(PALETTE)
    for i, left in enumerate(SHAPES):
        for j, right in enumerate(SHAPES):
            pair = (colours[(i + j) % 6], colours[(i + 2 * j + 1) % 6])
            image = render(_pair(left, right, pair, background, dx=0.02 * (-1) ** (i + j)))
            assert read_object_colours(image, 2) == list(pair), (left, right, pair)
            assert read_object_colours(_degrade(image, rng), 2) == list(pair), (left, right, pair)
    single = render(Scene("star", "blue", "big", background))
    assert read_object_colours(single, 1) == ["blue"]
    with pytest.raises(ValueError, match="1 or 2"):
        read_object_colours(single, 3)


def test_destination_probability_reads_the_recoloured_shape():
    image = render(_pair("circle", "square", ("green", "blue")))
    assert changed_objects("a circle next to a square", "a green circle next to a square") == {0: "green"}
    assert destination_probability(image, "a circle next to a square", "a green circle next to a square") == 1.0
    assert destination_probability(image, "a circle next to a square", "a circle next to a green square") == 0.0
    assert destination_probability(image, "a circle next to a square", "a green circle next to a green square") == 0.5
    plural = render(_pair("heart", "heart", ("orange", "purple")))
    assert destination_probability(plural, "two hearts", "two orange hearts") == 0.5
    one = render(Scene("circle", "blue", "big", "white"))
    assert destination_probability(one, "a blue circle", "a green circle") == 0.0
    with pytest.raises(ValueError, match="names no colour"):
        changed_objects("a green circle", "a green circle")
    with pytest.raises(ValueError, match="numbers of shapes"):
        changed_objects("a circle", "two green circles")
