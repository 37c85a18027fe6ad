"""Parsing and filtering of LLM answers and user template lists, shared by every backend.

An LLM answer is free text: numbered or bulleted lists, markdown, headers ("Here are some
backgrounds:"), explanations after a colon, echoes of the prompt, enumerations on one line and
endless repetitions. Each line either becomes a clean instance / template or a `Rejection` that
keeps the line and the reason, so that a pool can be audited and a too-small pool explained.

Two normal forms:
- instance: a bare lower-case phrase ("in the forest", "striped", "out of focus");
- template: a caption with one `{}` where the class name goes ("a photo of a {} in the forest.",
  "a blurry photo of a {}."). Templates in the style of the paper's released pools, where `{}`
  stands for the whole caption ("{} surrounded by flowers.", "crinkled {}."), are rewritten to
  this form by `to_caption_style`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

# Stable names: they appear in the Parquet metadata, the preview and error messages.
REASONS = {
    "empty": "nothing left after removing numbering, bullets and markdown",
    "junk": "mostly not words (symbols, code, digits)",
    "too_long": "more words (or characters) than describe.max_words allows",
    "names_class": "names a class of the task, so the template would not be class-agnostic",
    "not_a_phrase": "a sentence, header, instruction or enumeration, not a setting or attribute",
    "echoes_prompt": "repeats the words of the prompt",
    "duplicate": "repeats an earlier line (ignoring case, spaces and punctuation)",
    "bad_template": "not a caption template with exactly one {} and some spurious content",
    "template_drift": "the template does not keep the instance it was made from",
}


@dataclass(frozen=True)
class Rejection:
    """A line that was not kept: the line as given, the reason (a REASONS key) and its detail."""
    raw_line: str
    reason: str
    detail: str
    stage: str  # "instance" (step 1), "template" (step 2) or "file"
    sample_index: int

    def as_dict(self) -> dict:
        """The rejection as a plain dict (the file metadata's `rejected` entries)."""
        return {"raw_line": self.raw_line, "reason": self.reason, "detail": self.detail,
                "stage": self.stage, "sample_index": self.sample_index}


class Rejected(Exception):
    """Raised by the parsers and filters for a line not kept; `reason` is a REASONS key."""
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                         "\u2014": "-", "\u2022": "-", "\u00b7": "-", "\u25cf": "-", "\u25aa": "-"})
# One list marker: "1.", "1)", "(1)", "#3", "a)", "-", "*", "+", or a markdown heading/quote.
_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|\#\d+[.):]?|\(?[a-zA-Z]\)|[-*+>]+|\#+)\s*")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_PARENS = re.compile(r"\s*\([^)]*\)")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")

_PRONOUNS = {"i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her",
             "they", "them", "their"}
_VERBS = {"is", "are", "was", "were", "am", "be", "been", "can", "could", "will", "would", "should",
          "shall", "may", "might", "must", "do", "does", "did", "has", "have", "had", "include",
          "includes", "including", "hope", "it's", "let's", "that's", "there's", "here's", "i'm",
          "you're", "we're", "they're", "don't", "can't", "isn't", "aren't"}
_META_START = ("here ", "here's", "sure", "certainly", "of course", "note", "example", "list ",
               "the following", "following ", "below", "answer", "output", "okay", "ok ", "this list",
               "photos of", "images of", "pictures of")
_STOP = {"a", "an", "the", "of", "in", "on", "at", "with", "by", "and", "or", "to", "for", "from",
         "near", "under", "over", "into", "during", "as", "photo", "its"}
# "photo" is our scaffold; other media are content ("a pencil sketch of a {}" is a texture).
_CAPTION = re.compile(
    r"^(?:an? |the )?(?P<pre>[^{}]*?)\s*\b(?P<medium>photo|photograph|picture|image|painting|sketch|"
    r"drawing|rendering|render|snapshot|close-up|closeup|shot)\s+of\s+(?:an? |the )?"
    r"(?P<mid>[^{}]*?)\s*\{\}\s*(?P<post>[^{}]*?)\s*\.?$")


_MEDIUM_OF = re.compile(r"\b(?:photo|photograph|picture|image)\s+of\b")


def clean_line(raw: str) -> str:
    """Strip list markers, markdown and quotes; collapse whitespace. Case is kept."""
    s = unicodedata.normalize("NFKC", raw).translate(_QUOTES)
    s = _LINK.sub(r"\1", s)
    for _ in range(3):  # "1. - **x**" has nested markers
        s = _MARKER.sub("", s, count=1)
    s = re.sub(r"[*_`~]+", "", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.strip("\"'")
    return s.strip()


def words(text: str) -> list[str]:
    """The lower-case words of `text` (letters and digits, with an apostrophe suffix such as "'s")."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _unplural(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def prompt_vocabulary(text: str) -> frozenset[str]:
    """Words of a prompt, compared with a line's words by `Filters` to spot echoes."""
    return frozenset(_unplural(w) for w in words(text))


def dedup_key(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive identity of an instance or template."""
    return " ".join(re.findall(r"[a-z0-9]+|\{\}", text.lower()))


def class_variants(classnames: list[str]) -> set[str]:
    """Space-free spellings of each class and its plural: "landbird" also catches "land birds"."""
    out = set()
    for name in classnames:
        squashed = re.sub(r"[^a-z0-9]", "", name.lower())
        out |= {squashed, squashed + "s", squashed + "es"}
    return out


def names_class(text: str, variants: set[str]) -> str | None:
    """The class spelling found in `text` (1-3 consecutive words joined), or None."""
    ws = words(text.replace("{}", " "))
    for n in (1, 2, 3):
        for i in range(len(ws) - n + 1):
            joined = "".join(ws[i:i + n]).replace("'", "")
            if joined in variants:
                return " ".join(ws[i:i + n])
    return None


@dataclass(frozen=True)
class Filters:
    """What every line is checked against; built once per pool."""
    classnames: tuple[str, ...]
    max_words: int
    prompt_words: frozenset[str] = frozenset()

    @cached_property
    def variants(self) -> set[str]:
        """The space-free spellings of the classes and their plurals (`class_variants`)."""
        return class_variants(list(self.classnames))

    def check_phrase(self, phrase: str) -> None:
        """Raise Rejected if `phrase` (instance, or a template's spurious part) is not usable."""
        if not phrase:
            raise Rejected("empty")
        letters = sum(c.isalpha() for c in phrase)
        visible = sum(not c.isspace() for c in phrase)
        if letters < 2 or letters < 0.6 * visible:
            raise Rejected("junk", f"{letters} letters of {visible} characters")
        ws = words(phrase)
        if len(ws) > self.max_words or len(phrase) > 10 * self.max_words:
            raise Rejected("too_long", f"{len(ws)} words, {len(phrase)} characters (max_words={self.max_words})")
        if (hit := names_class(phrase, self.variants)) is not None:
            raise Rejected("names_class", f"contains {hit!r}")
        content = [_unplural(w) for w in ws if w not in _STOP and len(w) > 2]
        if len(content) >= 4 and sum(w in self.prompt_words for w in content) >= 0.75 * len(content):
            raise Rejected("echoes_prompt")
        low = phrase.lower()
        if "?" in phrase or "!" in phrase:
            raise Rejected("not_a_phrase", "a question or exclamation")
        if low.endswith(":") or low.startswith(_META_START):
            raise Rejected("not_a_phrase", "a header or remark about the list")
        if phrase.count(",") >= 2 or phrase.count(";") >= 1:
            raise Rejected("not_a_phrase", "an enumeration of several items")
        if found := sorted(set(ws) & (_PRONOUNS | _VERBS)):
            raise Rejected("not_a_phrase", f"a sentence (uses {', '.join(found)})")


def parse_instance(raw: str, filters: Filters) -> str:
    """One line of a step-1 answer -> a normalised instance, or raise Rejected."""
    s = clean_line(raw)
    if s.endswith(":"):
        raise Rejected("not_a_phrase", "a header or remark about the list")
    # "Forest: tall trees and moss" / "forest - tall trees": the term is the instance.
    s = re.split(r":\s|\s-\s", s, maxsplit=1)[0]
    s = _PARENS.sub("", s)
    s = re.sub(r"\s+", " ", s).strip(" .,;:-\"'").lower()
    filters.check_phrase(s)
    return s


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def to_caption_style(template: str) -> str:
    """Rewrite a normalised template (one `{}`, lower case, final period) into our style.

    - already a caption ("a photo of a {} in the forest.", "a pencil sketch of a {}.") -> kept;
    - paper style, `{}` = the whole caption: "{} surrounded by flowers." -> "a photo of a {}
      surrounded by flowers."; "crinkled {}." -> "a photo of a crinkled {}." ("an" before a
      vowel: "a photo of an overexposed {}.");
    - "<quality> of {}." (paper: "low resolution of {}.") -> "a low resolution photo of a {}.".
    """
    if _CAPTION.match(template):
        if not re.match(r"(?:an?|the) ", template):  # "washed out photo of a {}." lacks its article
            return f"{_article(template)} {template}"
        return template
    body = re.sub(r"^(?:an?|the)\s+", "", template)
    if m := re.fullmatch(r"(.+?)\s+of\s+\{\}\.", body):
        return f"{_article(m[1])} {m[1]} photo of a {{}}."
    if body.startswith("{}"):
        return "a photo of a " + body
    return f"a photo of {_article(body)} {body}"  # "overexposed {}." -> "a photo of an overexposed {}."


def spurious_part(template: str) -> str:
    """The template without its caption scaffold: "a photo of a {} in the forest." -> "in the
    forest"; "a blurry photo of a {}." -> "blurry"; "a pencil sketch of a {}." -> "pencil sketch"."""
    m = _CAPTION.match(template)
    if m is None:
        raise Rejected("bad_template", "not of the form '... photo of a ... {} ...'")
    # Garbled scaffolds of a small LLM: "reflected a photo of a {}", "a photo of a glass of {}",
    # "a photo of a dazzling photo of a {}".
    if re.search(r"\b(?:a|an|the)$", m["pre"]) or re.search(r"\bof(?: a| an| the)?$", m["mid"]) \
            or _MEDIUM_OF.search(m["mid"] + " " + m["post"]):
        raise Rejected("bad_template", "garbled caption scaffold")
    medium = "" if m["medium"] == "photo" else m["medium"]
    return " ".join(p for p in (m["pre"], medium, m["mid"], m["post"]) if p).strip(" .,")


def parse_template(raw: str, filters: Filters) -> tuple[str, str]:
    """One template line (step-2 answer or user file) -> (template, phrase), or raise Rejected."""
    s = clean_line(raw)
    s = re.sub(r"^(?:template|caption|answer)\s*:\s*", "", s, flags=re.I)
    if not s:
        raise Rejected("empty")
    # An LLM may name the slot ("{object}", "{class}"); any single placeholder is the class slot.
    n_slots = len(_PLACEHOLDER.findall(s))
    if n_slots != 1:
        raise Rejected("bad_template", f"{n_slots} placeholders {{}} (need exactly one for the class name)")
    s = _PLACEHOLDER.sub("{}", s)
    if "{" in s.replace("{}", "") or "}" in s.replace("{}", ""):
        raise Rejected("bad_template", "stray braces")
    s = re.sub(r"\s+", " ", s).lower().strip(" \"'")
    s = re.sub(r"[\s.,;:!]+$", "", s) + "."
    template = to_caption_style(s)
    phrase = spurious_part(template)
    if not phrase:
        raise Rejected("bad_template", "no spurious content besides the class")
    if (hit := names_class(template, filters.variants)) is not None:
        raise Rejected("names_class", f"contains {hit!r}")
    filters.check_phrase(phrase)
    return template, phrase


def keeps_instance(instance: str, phrase: str) -> bool:
    """Whether a step-2 template still says what the instance said: at least half of the
    instance's content words reappear (compared by their first 4 letters, so that "golden" and
    "gold" or "pixelated" and "pixeled" match but an unrelated rewrite does not)."""
    def stems(text):
        return {w[:4] for w in words(text) if w not in _STOP}
    want = stems(instance)
    return not want or len(want & stems(phrase)) >= 0.5 * len(want)


def split_answer(text: str) -> list[str]:
    """An answer's non-blank lines, in order."""
    return [line for line in (text or "").splitlines() if line.strip()]
