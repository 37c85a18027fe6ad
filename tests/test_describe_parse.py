"""The describe stage's shared parsing and filtering, against adversarial LLM output (fast)."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stages.describe import parse
from stages.describe.output import COLUMNS, read_metadata, write_outputs
from stages.describe.pool import PoolTooSmall, file_pool, generate_pool
from stages.describe.prompts import instance_messages, load_prompt, prompt_sha256, template_messages

CLASSES = ("landbird", "waterbird")


@pytest.fixture
def filters():
    return parse.Filters(CLASSES, max_words=12, prompt_words=parse.prompt_vocabulary(
        "Answer with a plain list, one item per line, no numbering, no explanations. List 15 different "
        "backgrounds or places where photos of birds are taken. Write each as a short phrase."))


def outcome(fn, line, filters):
    try:
        return fn(line, filters)
    except parse.Rejected as r:
        return r.reason


@pytest.mark.parametrize("line, expected", [
    ("1. On a beach.", "on a beach"),
    ("2) in the forest", "in the forest"),
    ("(3) near a river (e.g. the Nile)", "near a river"),
    ("- **Snowy field**: white everywhere", "snowy field"),
    ("* _in a marsh_", "in a marsh"),
    ("  • on a city street  ", "on a city street"),
    ("### 4. In   THE Desert", "in the desert"),
    ("> `on the coast`", "on the coast"),
    ("“on a lake”", "on a lake"),
    ("a) b) on a mountain", "on a mountain"),
])
def test_instances_lose_numbering_bullets_and_markdown(line, expected, filters):
    assert parse.parse_instance(line, filters) == expected


@pytest.mark.parametrize("line, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("```", "empty"),
    ("**", "empty"),
    ("12345", "junk"),
    ("#!/usr/bin/env -- 42 ++ {}", "junk"),
    ("Here are some backgrounds for birds:", "not_a_phrase"),
    ("Backgrounds:", "not_a_phrase"),
    ("Sure! Here is the list", "not_a_phrase"),
    ("I have found the bird is black and white", "not_a_phrase"),
    ("Blue, Gold, Red, Green, Yellow", "not_a_phrase"),
    ("Is this a forest?", "not_a_phrase"),
    ("One per line, a short phrase each, no explanation.", "echoes_prompt"),
    ("a waterbird on a lake", "names_class"),
    ("Land birds in a field", "names_class"),
    ("WATERBIRDS at the shore", "names_class"),
    ("on a beach " * 10, "too_long"),
    ("x" * 500, "too_long"),
])
def test_junk_lines_are_rejected_with_a_reason(line, reason, filters):
    assert outcome(parse.parse_instance, line, filters) == reason


def test_class_check_is_by_word_not_substring(filters):
    # "island birds" contains the letters of "landbird" but names no class
    assert parse.parse_instance("island birds", filters) == "island birds"


def test_dedup_key_ignores_case_whitespace_and_punctuation():
    assert parse.dedup_key("On  a BEACH!") == parse.dedup_key("on a beach") == parse.dedup_key("on, a beach.")
    assert parse.dedup_key("a photo of a {} on a beach.") != parse.dedup_key("a photo of a {} on the beach.")


@pytest.mark.parametrize("line, template, phrase", [
    ("a photo of a {} in the forest.", "a photo of a {} in the forest.", "in the forest"),
    ("A photo of a {object} in the forest", "a photo of a {} in the forest.", "in the forest"),
    ("1. a blurry photo of a {}.", "a blurry photo of a {}.", "blurry"),
    ("Template: a pencil sketch of a {}.", "a pencil sketch of a {}.", "pencil sketch"),
    ("washed out photo of a {}.", "a washed out photo of a {}.", "washed out"),
    # the paper's style: {} is the whole caption
    ("{} surrounded by flowers.", "a photo of a {} surrounded by flowers.", "surrounded by flowers"),
    ("crinkled {}.", "a photo of a crinkled {}.", "crinkled"),
    ("overexposed {}.", "a photo of an overexposed {}.", "overexposed"),
    ("low resolution of {}.", "a low resolution photo of a {}.", "low resolution"),
    ("{} with low visibility", "a photo of a {} with low visibility.", "with low visibility"),
])
def test_templates_are_normalised_to_our_caption_style(line, template, phrase, filters):
    assert parse.parse_template(line, filters) == (template, phrase)


@pytest.mark.parametrize("line, reason", [
    ("a photo of a bird in the jungle.", "bad_template"),     # no slot for the class
    ("{} and {}", "bad_template"),
    ("a photo of a {}.", "bad_template"),                      # nothing spurious
    ("reflected a photo of a {} in a mirror.", "bad_template"),
    ("a photo of a dazzling photo of a {}.", "bad_template"),
    ("a photo of a {} next to a waterbird.", "names_class"),
    ("a photo of a {} " + "very " * 20 + "dark.", "too_long"),
    ("", "empty"),
])
def test_bad_templates_are_rejected(line, reason, filters):
    assert outcome(parse.parse_template, line, filters) == reason


class ScriptedBackend:
    """Answers the two steps from a script, so that the shared pipeline is tested without a model."""

    name = "scripted"
    model_id = "scripted-model"

    def __init__(self, lists, templates):
        self.lists, self.templates, self.calls = lists, templates, []

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        self.calls.append(dict(n=n, temperature=temperature, conversations=conversations))
        if len(self.calls) == 1:
            return [self.lists[:n]]
        return [[self.templates.get(c[-1]["content"], "no idea")] for c in conversations]


ADVERSARIAL_ANSWER = """Here are some backgrounds where birds are photographed:

1. **On a beach**: sand and waves
2. In the forest
2. in the forest.
- on a city street
* A waterbird on a lake
The sun, the moon, the wind, the rain, the river, the sea
birding in the jungle
golden
""" + "on a " + "very " * 30 + "long road\n"


def job(**describe):
    params = dict(backend="transformers", n_samples=2, temperature=0.8, top_p=0.95, max_tokens=64, min_pool=1,
                  max_words=12, files={}, model="m", gguf_file=None, gguf_sha256=None, device="cpu",
                  tensor_parallel_size=1, types=["background"])
    params.update(describe)
    return {"seed": 3, "domain": "birds", "classnames": list(CLASSES), "describe": params, "synthetic": True}


def scripted_pool():
    spec = load_prompt("background")
    backend = ScriptedBackend(
        [ADVERSARIAL_ANSWER, "", "in the forest\nnear a lake"],
        {"on a beach": "a photo of a {} on a beach.", "in the forest": "a photo of a {} in the forest.",
         "on a city street": "a photo of a {} on a city street.", "birding in the jungle": "a photo of a bird in the jungle.",
         "golden": "a photo of a {} in the snow.", "near a lake": "A photo of a {} near a lake"})
    j = job(n_samples=3)
    pool = generate_pool(spec, backend, j["describe"], domain="birds", classnames=list(CLASSES), seed=3)
    return pool, backend, spec, j


def test_generate_pool_runs_both_steps_and_keeps_every_rejection():
    pool, backend, spec, _ = scripted_pool()
    # step 1 sampled, step 2 greedy, both with the prompt file's messages
    assert backend.calls[0]["n"] == 3 and backend.calls[0]["temperature"] == 0.8
    assert backend.calls[0]["conversations"] == [instance_messages(spec, "birds")]
    assert backend.calls[1]["temperature"] == 0.0
    assert backend.calls[1]["conversations"][0] == template_messages(spec, "on a beach")
    assert [r["template"] for r in pool.rows] == [
        "a photo of a {} on a beach.", "a photo of a {} in the forest.", "a photo of a {} on a city street.",
        "a photo of a {} near a lake."]
    assert [r["phrase"] for r in pool.rows] == ["on a beach", "in the forest", "on a city street", "near a lake"]
    assert [r["sample_index"] for r in pool.rows] == [0, 0, 0, 2]
    assert pool.rows[0]["raw_line"] == "1. **On a beach**: sand and waves"
    assert pool.rows[2]["from_example"] is True  # "on a city street" is the prompt's worked example
    assert pool.rows[0]["prompt_sha256"] == prompt_sha256(spec, "birds")
    reasons = {(r.raw_line.split(" -> ")[0], r.reason) for r in pool.rejections}
    assert ("Here are some backgrounds where birds are photographed:", "not_a_phrase") in reasons
    assert ("2. in the forest.", "duplicate") in reasons and ("in the forest", "duplicate") in reasons
    assert ("* A waterbird on a lake", "names_class") in reasons
    assert ("The sun, the moon, the wind, the rain, the river, the sea", "not_a_phrase") in reasons
    assert ("birding in the jungle", "bad_template") in reasons
    assert ("golden", "template_drift") in reasons
    assert any(r.reason == "too_long" for r in pool.rejections)
    assert len(pool.rows) + len(pool.rejections) == 12  # every non-blank line is accounted for


def test_too_small_pool_fails_with_counts_and_examples():
    pool, *_ = scripted_pool()
    with pytest.raises(PoolTooSmall) as err:
        pool.check_size(10)
    msg = str(err.value)
    assert "has 4 templates, fewer than describe.min_pool=10" in msg
    assert "'duplicate': 2" in msg and "[names_class] '* A waterbird on a lake'" in msg


def test_empty_and_junk_only_answers_give_no_pool():
    spec = load_prompt("texture")
    for answers in (["", "   \n\n"], ["```\n###\n---\n12 34\n", "!!!\n"]):
        backend = ScriptedBackend(answers, {})
        pool = generate_pool(spec, backend, job()["describe"], domain="birds", classnames=list(CLASSES), seed=0)
        assert pool.rows == []
        with pytest.raises(PoolTooSmall, match="has 0 templates"):
            pool.check_size(1)


def test_parquet_schema_metadata_preview_and_identical_bytes(tmp_path, monkeypatch):
    pool, _, spec, j = scripted_pool()
    out1, out2 = tmp_path / "a" / "background.descriptions.parquet", tmp_path / "b" / "background.descriptions.parquet"
    meta = write_outputs(pool, out1, tmp_path / "a" / "background.preview.md", dataset="synthbirds", job=j)
    write_outputs(pool, out2, tmp_path / "b" / "background.preview.md", dataset="synthbirds", job=j)
    assert out1.read_bytes() == out2.read_bytes()
    table = pq.read_table(out1)
    assert table.column_names == COLUMNS
    assert table.column_names[:9] == ["spurious_type", "template", "phrase", "backend", "model", "prompt_sha256",
                                      "seed", "sample_index", "raw_line"]
    assert set(table.column("seed").to_pylist()) == {3}
    stored = read_metadata(out1)
    assert stored == meta
    assert stored["rejection_counts"]["duplicate"] == 2 and len(stored["rejected"]) == len(pool.rejections)
    assert stored["params"]["n_samples"] == 3 and "pyarrow" in stored["versions"]
    preview = (tmp_path / "a" / "background.preview.md").read_text()
    assert "4 templates kept" in preview and "`a photo of a {} near a lake.`" in preview
    assert "| names_class | 1 |" in preview
    # SynthBirds: the preview says how much of the pool the synthetic world renders
    monkeypatch.setattr("stages.synthetic.vocabulary.RENDERED_WORDS", frozenset({"forest", "lake", "beach"}))
    write_outputs(pool, out1, tmp_path / "a" / "background.preview.md", dataset="synthbirds", job=j)
    assert "3 of 4 phrases (75%) use a word the world renders" in (tmp_path / "a" / "background.preview.md").read_text()
    assert not list(tmp_path.glob("**/*.tmp"))  # written atomically


def test_file_backend_reproduces_a_given_list_exactly(tmp_path):
    mine = ["a photo of a {} in the forest.", "a blurry photo of a {}.", "a photo of a {} on a sandy beach.",
            "a pencil sketch of a {}."]
    txt = tmp_path / "mine.txt"
    txt.write_text("# my curated pool\n" + "\n".join(mine) + "\n\n")
    yml = tmp_path / "mine.yaml"
    yml.write_text("templates:\n" + "".join(f"  - '{t}'\n" for t in mine))
    for path in (txt, yml):
        pool = file_pool("background", path, job()["describe"], classnames=list(CLASSES), seed=0)
        assert [r["template"] for r in pool.rows] == mine
        assert pool.rejections == [] and pool.backend == "file"


def test_file_backend_applies_the_same_filters(tmp_path):
    path = tmp_path / "noisy.txt"
    path.write_text("{} on a beach.\n{} on a beach!\na photo of a {} near a waterbird.\n{} and {}\n- {} in snow\n")
    pool = file_pool("background", path, job()["describe"], classnames=list(CLASSES), seed=0)
    assert [r["template"] for r in pool.rows] == ["a photo of a {} on a beach.", "a photo of a {} in snow."]
    assert [r.reason for r in pool.rejections] == ["duplicate", "names_class", "bad_template"]


@pytest.mark.parametrize("spurious_type", ["background", "texture", "quality"])
def test_prompt_files_are_domain_agnostic(spurious_type):
    spec = load_prompt(spurious_type)
    birds, dogs = instance_messages(spec, "birds"), instance_messages(spec, "dogs")
    assert "birds" in birds[-1]["content"] and "dogs" in dogs[-1]["content"]
    assert "{domain}" not in birds[-1]["content"]
    assert prompt_sha256(spec, "birds") != prompt_sha256(spec, "dogs")
    for example, template in spec.template_examples:
        assert parse.dedup_key(parse.parse_template(template, parse.Filters(CLASSES, 12))[0]) == parse.dedup_key(template)


# the authors' released pools ship as keywords/spurious_{bg,texture,resolution}.pt: Python lists of
# templates in which "{}" is the whole class caption ("a photo of a dog" for "{} surrounded by flowers.")
RELEASED_STYLE = {"{} surrounded by flowers.": "a photo of a {} surrounded by flowers.",
                  "{} in snowy landscapes.": "a photo of a {} in snowy landscapes.",
                  "crinkled {}.": "a photo of a crinkled {}.",
                  "overexposed {}.": "a photo of an overexposed {}.",
                  "low resolution of {}.": "a low resolution photo of a {}."}


def test_file_backend_reads_the_released_torch_lists_as_they_ship(tmp_path):
    import torch

    path = tmp_path / "keywords" / "spurious_bg.pt"
    path.parent.mkdir()
    torch.save(list(RELEASED_STYLE), path)
    pool = file_pool("background", path, job()["describe"], classnames=list(CLASSES), seed=0)
    # "{}" stays the class name: the released caption scaffold "a photo of a" is put around it
    assert [r["template"] for r in pool.rows] == list(RELEASED_STYLE.values())
    assert [r["raw_line"] for r in pool.rows] == list(RELEASED_STYLE) and not pool.rejections
    assert pool.model == str(path) and len(pool.prompt_sha256) == 64


@pytest.mark.parametrize("content, message", [
    ({"templates": ["{} on a beach."]}, r"spurious_x\.pt: expected a list of template strings .*got dict"),
    ([1, 2], r"spurious_x\.pt: expected a list of template strings"),
])
def test_a_torch_file_that_is_not_a_list_of_templates_is_refused_naming_it(tmp_path, content, message):
    import torch

    path = tmp_path / "spurious_x.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        file_pool("background", path, job()["describe"], classnames=list(CLASSES), seed=0)


def test_a_torch_file_that_would_run_code_when_loaded_is_refused(tmp_path):
    import torch

    path = tmp_path / "spurious_x.pt"
    torch.save([Path("a photo of a {} on a beach.")], path)   # any object beyond plain data
    with pytest.raises(ValueError, match=r"spurious_x\.pt: not a list saved with torch\.save \(Weights only load failed"):
        file_pool("background", path, job()["describe"], classnames=list(CLASSES), seed=0)


def test_the_released_pools_as_text_or_as_torch_lists_give_the_same_pool(tmp_path):
    """The authors' lists, one per line in a text file or saved with torch as they ship: one pool,
    each released line read as our template (the caption scaffold around the class name)."""
    import torch

    text, pt = tmp_path / "bg.txt", tmp_path / "spurious_bg.pt"
    text.write_text("".join(f"{line}\n" for line in RELEASED_STYLE))
    torch.save(list(RELEASED_STYLE), pt)
    from_text = file_pool("background", text, job()["describe"], classnames=list(CLASSES), seed=0)
    from_pt = file_pool("background", pt, job()["describe"], classnames=list(CLASSES), seed=0)
    assert [r["template"] for r in from_text.rows] == [r["template"] for r in from_pt.rows] == list(RELEASED_STYLE.values())
    assert [r["raw_line"] for r in from_text.rows] == list(RELEASED_STYLE) and not from_text.rejections
