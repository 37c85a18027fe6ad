"""The words the synthetic world renders: every content word of its nuisances' captions.

The describe stage's preview and the report count the LLM templates that use one of them: those
are the templates the tiny CLIP can relate to pixels.
"""

from __future__ import annotations

import re
from collections import Counter

from .quality import QUALITIES
from .scenes import PLACE_PHRASES, SCENE_WORDS
from .styles import STYLES
from .textures import TEXTURES

# words of the nuisances' phrases that name no nuisance by themselves ("out" of "washed out", "lines" of
# "etched lines", "barely" of "barely lit"), left out of RENDERED_WORDS so that the preview does
# not count "a {} out in the open" or "a {} with feathers" as phrases the world renders. "light"
# is not one of them: every phrase with it names lighting the world draws (dim, low, bright).
_FILLER = frozenset({"a", "an", "the", "of", "with", "in", "on", "at", "by", "to", "up", "and", "from",
                     "big", "heavy", "strong", "visible", "seen", "feathers", "pattern", "texture",
                     "surface", "out", "away", "line", "lines", "wide", "angle", "film", "oil", "res",
                     "motion", "polka", "barely"})


def content_words(phrases) -> frozenset[str]:
    """The lower-case words of `phrases`, filler words (_FILLER) left out."""
    return frozenset(w for p in phrases for w in re.findall(r"[a-z]+", p.lower()) if w not in _FILLER)


def all_phrases():
    """Every phrase the world's captions use: scene words, place phrases, and the adjectives and
    phrases of every texture, quality and style."""
    for words in SCENE_WORDS.values():
        yield from words
    for words in PLACE_PHRASES.values():
        yield from words
    for table in (TEXTURES, QUALITIES, STYLES):
        for n in table.values():
            yield from n.adjectives
            yield from n.phrases


# Words a caption may use that the world renders; the describe stage counts them in its preview.
RENDERED_WORDS = content_words(all_phrases())


def a_or_an(phrase: str) -> str:
    """`phrase` with its article: "an" before a vowel letter, else "a"."""
    return f"{'an' if phrase[:1] in 'aeiou' else 'a'} {phrase}"


def rendered_word_counts(phrases: list[str]) -> tuple[int, Counter]:
    """How many phrases use a word the synthetic world renders, and which words."""
    vocab = {w.lower() for w in RENDERED_WORDS}
    hits, counter = 0, Counter()
    for phrase in phrases:
        found = {w for w in re.findall(r"[a-z]+", phrase.lower()) if w in vocab or (w.endswith("s") and w[:-1] in vocab)}
        hits += bool(found)
        counter.update(found)
    return hits, counter


# ---- the oracle pools: spurious templates written from the world's own nuisance words ----------

ORACLE_TYPES = ("background", "texture", "quality")


def oracle_templates() -> dict[str, list[str]]:
    """Spurious caption templates ("{}" for the class name) that name exactly what the world
    renders: every scene word with its preposition and the place phrases (background), every
    texture's first adjective and phrase (texture), every image-quality effect's (quality). The
    control that tells the method apart from the quality of an LLM's pools."""
    from .scenes import SCENE_PREPOSITIONS, SCENE_WORDS

    background = [f"a photo of a {{}} {SCENE_PREPOSITIONS.get(scene, ('in',))[0]} the {word}."
                  for scene, words in SCENE_WORDS.items() for word in words]
    background += [f"a photo of a {{}} {phrase}." for phrases in PLACE_PHRASES.values() for phrase in phrases]
    texture = [t for n in TEXTURES.values()
               for t in (f"a photo of {a_or_an(n.adjectives[0])} {{}}.", f"a photo of a {{}} with {n.phrases[0]}.")]
    quality = [t for n in QUALITIES.values()
               for t in (f"{a_or_an(n.adjectives[0])} photo of a {{}}.", f"a photo of a {{}} {n.phrases[0]}.")]
    return {"background": background, "texture": list(dict.fromkeys(texture)),
            "quality": list(dict.fromkeys(quality))}


def main(argv=None) -> None:
    """The command line: write the oracle pools, one text file per type (the describe stage's
    `file` backend reads them)."""
    import argparse
    from pathlib import Path

    from ..common.io import atomic_path

    p = argparse.ArgumentParser(prog="python -m stages.synthetic.vocabulary",
                                description="Write the oracle pools: the world's own nuisance words as templates.")
    p.add_argument("--out-dir", required=True)
    a = p.parse_args(argv)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for kind, templates in oracle_templates().items():
        with atomic_path(out / f"{kind}.txt") as tmp:
            Path(tmp).write_text("".join(f"{t}\n" for t in templates))
        print(f"{out / f'{kind}.txt'}: {len(templates)} templates")


if __name__ == "__main__":
    main()
