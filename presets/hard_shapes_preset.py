"""The entries of the hard Shapes-world edit benchmark (`shapes.json`), written by `make_shapes_presets.py`.

Each entry recolours a default-coloured shape ("a circle" -> "a green circle"). Every test prompt carries its type:

- positives (should take the new colour): `phrasing` (other templates, prefixes, backgrounds), `plural` ("two
  circles", also with a background or a prefix), `scene-first` / `scene-second` (a two-object scene that holds the
  shape, named first: "a circle next to a square", or second: "a triangle and a circle");
- negatives (must keep their colour): `related` (the look-alike shape: oval for circle, rectangle for square, and back),
  `explicit` (the same shape with another colour named: "a blue circle", whose destination is "a green circle"; also
  its own default colour named, "a red circle", and a named colour among other words: "a big purple circle", "two
  yellow circles", "a orange circle next to a star"),
  `other-object` (the other shape of a two-object scene that holds the edited shape), `unrelated` (another shape).

Negatives never show the destination colour by default: their shape's default colour differs from it, and the debiasing
diamond (orange or blue) is never one of them. A shape without a look-alike gets a sixth `explicit` and two more
`unrelated` negatives in place of the three `related` ones. Each entry has 10 positives and 10 negatives.
"""

from time_core.shapes.world import DEBIAS_SHAPE, DEFAULT_COLOURS, PALETTE, RELATED_SHAPES, Scene, describe

# Destination colours of each shape's edits: never the shape's own default, nor its look-alike's.
EDIT_COLOURS: dict[str, tuple[str, ...]] = {
    "circle": ("green", "blue", "yellow"),
    "oval": ("green", "blue", "purple"),
    "square": ("red", "yellow", "purple"),
    "rectangle": ("red", "yellow", "purple"),
    "triangle": ("orange", "purple", "red"),
    "star": ("blue", "green", "purple"),
    "heart": ("orange", "yellow", "green"),
}


def validation_colours() -> dict[str, tuple[str, ...]]:
    """The destination colours of the validation set: every colour that is neither a shape's default, its
    look-alike's default, nor one of its test edits (`EDIT_COLOURS`), so validation and test edits never coincide."""
    return {
        shape: tuple(c for c in PALETTE if c not in (*tests, DEFAULT_COLOURS[shape],
                                                      DEFAULT_COLOURS.get(RELATED_SHAPES.get(shape), "")))
        for shape, tests in EDIT_COLOURS.items()
    }


def _one(shape: str, colour: str, size: str = "big", background: str = "white") -> Scene:
    return Scene(shape, colour, size, background)


def _pair(left: str, right: str, colours: tuple[str, str], background: str = "white") -> tuple[Scene, Scene]:
    return (Scene(left, colours[0], "small", background, slot="left"),
            Scene(right, colours[1], "small", background, slot="right"))


def _test(kind: str, before: str, after: str) -> dict[str, str]:
    return {"prompt": before, "destination": after, "type": kind}


def _others(shape: str, colour: str | None, turn: int) -> list[str]:
    """Shapes that are neither `shape`, its look-alike nor the diamond, and (unless `colour` is `None`) whose default
    colour is not `colour`; in a fixed order rotated by `turn`, so that entries of one shape vary their partners."""
    excluded = {shape, RELATED_SHAPES.get(shape), DEBIAS_SHAPE}
    others = [s for s in DEFAULT_COLOURS if s not in excluded and DEFAULT_COLOURS[s] != colour]
    turn %= len(others)
    return others[turn:] + others[:turn]


def _explicit_colours(shape: str, colour: str) -> list[str]:
    """Palette colours other than the destination and the shape's default, in palette order."""
    return [c for c in PALETTE if c not in (colour, DEFAULT_COLOURS[shape])]


def positives(shape: str, colour: str, others: list[str]) -> list[dict[str, str]]:
    """The ten positives of an entry: three phrasings, three plurals (bare, with a background, behind a prefix) and
    four two-object scenes, two with the shape named first and two with it named second, one per connector each."""
    big = _one(shape, colour)
    dark = _one(shape, colour, background="black")
    small = _one(shape, colour, size="small")
    plural = _pair(shape, shape, (colour, colour))
    dark_plural = _pair(shape, shape, (colour, colour), background="black")
    tests = [
        _test("phrasing", describe(big, False, name_size=True, prefix="a photo of"),
              describe(big, True, name_size=True, prefix="a photo of")),
        _test("phrasing", describe(dark, False, name_background=True), describe(dark, True, name_background=True)),
        _test("phrasing", describe(small, False, name_size=True, name_background=True, prefix="a drawing of"),
              describe(small, True, name_size=True, name_background=True, prefix="a drawing of")),
        _test("plural", describe(plural, False), describe(plural, True)),
        _test("plural", describe(dark_plural, False, name_background=True),
              describe(dark_plural, True, name_background=True)),
        _test("plural", describe(plural, False, prefix="an image of"), describe(plural, True, prefix="an image of")),
    ]
    for other, connector in zip(others[:2], ("next to", "and")):
        scene = _pair(shape, other, (colour, DEFAULT_COLOURS[other]))
        tests.append(_test("scene-first", describe(scene, (False, False), connector=connector),
                           describe(scene, (True, False), connector=connector)))
    for other, connector in zip(others[2:4], ("and", "next to")):
        scene = _pair(other, shape, (DEFAULT_COLOURS[other], colour))
        tests.append(_test("scene-second", describe(scene, (False, False), connector=connector),
                           describe(scene, (False, True), connector=connector)))
    return tests


def negatives(shape: str, colour: str, others: list[str]) -> list[dict[str, str]]:
    """The ten negatives of an entry (see the module docstring); `others` are shapes whose default is not `colour`.

    Explicit negatives name another colour of the edited shape alone ("a blue circle"), its own default colour ("a red
    circle"), a colour among other words ("a big purple circle", "two yellow circles", "a orange circle next to a
    star"); the look-alike (or, for a shape without one, more explicit and unrelated prompts) is tested bare and in a
    plural."""
    explicit = _explicit_colours(shape, colour)
    default = DEFAULT_COLOURS[shape]
    tests = []
    related = RELATED_SHAPES.get(shape)
    if related is not None:
        tests.append(_test("related", describe(_one(related, colour), False), describe(_one(related, colour), True)))
        plural = _pair(related, related, (colour, colour))
        tests.append(_test("related", describe(plural, False), describe(plural, True)))
        dark = _one(related, colour, background="black")
        tests.append(_test("related", describe(dark, False, name_background=True, prefix="a photo of"),
                           describe(dark, True, name_background=True, prefix="a photo of")))
    else:
        photo = _one(shape, explicit[1])
        tests.append(_test("explicit", describe(photo, True, prefix="a picture of"),
                           describe(_one(shape, colour), True, prefix="a picture of")))
        for other in (others[2 % len(others)], others[3 % len(others)]):
            dark = _one(other, colour, background="black")
            tests.append(_test("unrelated", describe(dark, False, name_background=True),
                               describe(dark, True, name_background=True)))
    # "a blue circle" must stay blue: its destination is the edit's colour on the same shape.
    tests.append(_test("explicit", describe(_one(shape, explicit[0]), True), describe(_one(shape, colour), True)))
    tests.append(_test("explicit", describe(_one(shape, default), True), describe(_one(shape, colour), True)))
    big = _one(shape, explicit[2 % len(explicit)])
    tests.append(_test("explicit", describe(big, True, name_size=True), describe(_one(shape, colour), True,
                                                                                     name_size=True)))
    named_plural = _pair(shape, shape, (explicit[3 % len(explicit)],) * 2)
    tests.append(_test("explicit", describe(named_plural, True),
                       describe(_pair(shape, shape, (colour, colour)), True)))
    partner = others[1]
    scene = _pair(shape, partner, (explicit[1], DEFAULT_COLOURS[partner]))
    tests.append(_test("explicit", describe(scene, (True, False), connector="next to"),
                       describe(_pair(shape, partner, (colour, DEFAULT_COLOURS[partner])), (True, False),
                                connector="next to")))
    other = others[0]
    scene = _pair(shape, other, (default, colour))
    tests.append(_test("other-object", describe(scene, (False, False), connector="next to"),
                       describe(scene, (False, True), connector="next to")))
    unrelated = _one(others[1], colour)
    tests.append(_test("unrelated", describe(unrelated, False), describe(unrelated, True)))
    return tests


def hard_entries(edit_colours: dict[str, tuple[str, ...]] = EDIT_COLOURS) -> list[dict]:
    """Every entry of the hard benchmark (or, with `validation_colours()`, of its validation set), in a fixed order."""
    entries = []
    for shape, colours in edit_colours.items():
        for k, colour in enumerate(colours):
            source = _one(shape, colour)
            entries.append({
                "source": describe(source, False),
                "destination": describe(source, True),
                "positives": positives(shape, colour, _others(shape, None, k)),
                "negatives": negatives(shape, colour, _others(shape, colour, k)),
            })
    return entries
