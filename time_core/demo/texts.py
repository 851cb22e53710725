"""What the demo page says: its description and the help of each tab (the stylesheet is `ui/style.css`), and how
text from users and files is shown (as text: never markup, links or images)."""

import re

__all__ = ["DEBIAS_HELP", "DESCRIPTION", "EDIT_HELP", "PAPER", "SWEEP_HELP", "quote", "toast"]

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def quote(text: str) -> str:
    """`text` (a prompt, from a user or a file) for a Markdown line of the page, shown as written (a run of whitespace,
    newlines included, as one space): every ASCII punctuation character is backslash-escaped, which CommonMark shows
    literally, so no HTML element, heading, emphasis, link, image or autolinked address (`https://…`, `www.…`,
    `name@host`) is made from it."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def toast(message: str) -> str:
    """A message for the page's pop-ups (`gr.Error`, `gr.Warning`, `gr.Info`), which render HTML: `&` and `<` escaped,
    so that the prompts and values it quotes are shown as text (no element can start without `<`); the rest is left as
    it is for API clients, which receive the same message (`λ must be a number > 0`)."""
    return str(message).replace("&", "&amp;").replace("<", "&lt;")

PAPER = "https://arxiv.org/abs/2303.08084"
DESCRIPTION = f"""\
# TIME: Editing Implicit Assumptions in Text-to-Image Diffusion Models

[Paper]({PAPER}) · Orgad, Kawar, Belinkov, ICCV 2023. A text-to-image model fills in what a prompt leaves out ("a pack
of roses" comes out red). TIME edits that assumption in closed form: from a **source** prompt and a **destination**
that states the attribute ("a pack of **blue** roses"), it updates the cross-attention projections so that the source
and related prompts follow the destination while unrelated prompts stay as they were. The **original** and the
**edited** model run with the same seeds; each caption gives CLIP's P = probability of the destination over the prompt.
"""
EDIT_HELP = """\
**λ** weighs how close the edited projections stay to the original ones: small λ is a strong edit, large λ a weak one.
**Positives** should follow the edit (generality); **negatives** should not (specificity); **efficacy** is the share of
source images that show the destination.
"""
SWEEP_HELP = """\
Sweeps λ for the edit, test prompts and settings of the **Edit** tab (including stacked edits): one
eigendecomposition serves every λ and the original images come from the cache. The strip shows the first positive
and the first negative prompt (first seed) for each λ, like Fig. 7 of the paper.
"""
DEBIAS_HELP = """\
Debiasing (paper Sec. 5.5, App. H.2): F_p is the share of a prompt's images classified as the first attribute. A
binary search over log λ on the **validation** prompt looks for the λ whose F_p is within 10% (relative) of the target
(or within one image of it: what the sample can tell), and shows that λ's images;
then F_p is measured before and after the edit on five held-out **test** prompts.
"""
