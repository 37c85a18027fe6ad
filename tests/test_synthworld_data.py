import hashlib
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from stages.datasets import waterbirds as data
from stages.synthetic import canvas as cv
from stages.synthetic import captions as capt
from stages.synthetic import groups as grp
from stages.synthetic import quality as ql
from stages.synthetic import scenes as scn
from stages.synthetic import species as spc
from stages.synthetic import styles as sty
from stages.synthetic import textures as tx
from stages.synthetic import world as sw
from stages.synthetic import vocabulary
from stages.synthetic.captions import generate_pretrain_set
from stages.synthetic.species import SPECIES
from stages.synthetic.vocabulary import RENDERED_WORDS, rendered_word_counts
from stages.synthetic.world import generate_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "dataset"
    generate_dataset(root, n_train=1000, n_val=40, n_test=80, train_correlation=0.95, seed=3)
    return root


def test_waterbirds_layout(synth):
    df = data.read_metadata(synth, check_images=True)
    assert list(df.columns[:6]) == list(data.COLUMNS)
    assert df["img_id"].is_unique
    assert (df["split"].value_counts().sort_index().tolist()) == [1000, 40, 80]
    # species folders as in CUB: "NNN.Name/Name_id.jpg", species determines the class
    species = df["img_filename"].str.extract(r"^\d{3}\.(\w+)/")[0].str.lower()
    y_of = {s.name: s.y for s in SPECIES}
    assert (species.map(y_of) == df["y"]).all()
    assert df["place_filename"].str.match(r"^/\w/\w+/\d{8}\.jpg$").all()


def test_group_proportions(synth):
    df = data.read_metadata(synth)
    train = df[df["split"] == 0]
    assert (train["y"] == train["place"]).mean() == pytest.approx(0.95, abs=0.02)
    for split in (1, 2):  # val and test: exactly balanced over the four groups
        counts = np.bincount(df.loc[df["split"] == split, "group"], minlength=4)
        assert len(set(counts)) == 1


def test_deterministic_for_a_seed(tmp_path, synth):
    generate_dataset(tmp_path / "again", n_train=1000, n_val=40, n_test=80, train_correlation=0.95, seed=3)
    generate_dataset(tmp_path / "other", n_train=1000, n_val=40, n_test=80, train_correlation=0.95, seed=4)
    a, b = (synth / "metadata.csv").read_bytes(), (tmp_path / "again" / "metadata.csv").read_bytes()
    assert a == b
    assert a != (tmp_path / "other" / "metadata.csv").read_bytes()
    name = pd.read_csv(synth / "metadata.csv")["img_filename"].iloc[5]
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert digest(synth / name) == digest(tmp_path / "again" / name)


def test_pretrain_set_has_mild_correlation_and_captions(tmp_path):
    path = tmp_path / "p.npz"
    generate_pretrain_set(path, 2000, correlation=0.8, seed=0, other_scenes=0.0)
    z = np.load(path)
    assert z["images"].shape == (2000, 32, 32, 3) and z["images"].dtype == np.uint8
    scenes_place = {"forest": 0, "bamboo": 0, "meadow": 0, "desert": 0, "ocean": 1, "lake": 1, "river": 1, "marsh": 1}
    place = np.array([scenes_place[s] for s in z["scenes"]])
    assert (place == z["y"]).mean() == pytest.approx(0.8, abs=0.03)
    caps = list(z["captions"])
    assert len(set(caps)) > 100  # varied phrasing
    assert any("landbird" in c for c in caps) and any(sp in " ".join(caps) for sp in ("heron", "crow"))
    assert {"forest", "ocean", "water"} <= RENDERED_WORDS


def write_meta(root, rows, columns=data.COLUMNS):
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(columns)).to_csv(root / "metadata.csv", index=False)


def test_missing_metadata_says_where_to_put_the_folder(tmp_path):
    with pytest.raises(data.DataError, match=r"metadata.csv not found: put the extracted `waterbird_complete95_forest2water2/`"):
        data.read_metadata(tmp_path / "nowhere")


def test_missing_column_is_named(tmp_path):
    write_meta(tmp_path, [[1, "a.jpg", 0, 0, 0]], columns=data.COLUMNS[:5])
    with pytest.raises(data.DataError, match=r"metadata.csv: missing column\(s\) \['place_filename'\]"):
        data.read_metadata(tmp_path)


def test_bad_value_names_the_line(tmp_path):
    write_meta(tmp_path, [[1, "a.jpg", 0, 0, 0, "p"], [2, "b.jpg", 1, 5, 0, "p"]])
    with pytest.raises(data.DataError, match="line 3: split must be 0, 1 or 2"):
        data.read_metadata(tmp_path)


def test_missing_image_names_file_and_line(tmp_path, synth):
    df = pd.read_csv(synth / "metadata.csv").head(3)
    root = tmp_path / "broken"
    root.mkdir()
    for name in df["img_filename"][:2]:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes((synth / name).read_bytes())
    df.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(data.DataError, match=rf"line 4: image .*{df['img_filename'][2]} missing or unreadable"):
        data.read_metadata(root, check_images=True)
    (root / df["img_filename"][2]).parent.mkdir(exist_ok=True)
    (root / df["img_filename"][2]).write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match="line 4: image"):
        data.read_metadata(root, check_images=True)


# ---- the nuisances the LLM names and the world renders ---------------------------------------------

def drawn(look, species="crow", seed=0, size=32):
    """(image, mask) of one sample; the same seed gives the same scene and sprite for any look."""
    return spc.draw(spc.SPECIES_BY_NAME[species], look, size, np.random.default_rng(seed))


@pytest.mark.parametrize("scene", list(scn.SCENES))
def test_every_scene_has_its_own_picture_and_words(scene):
    img = scn.render_scene(scene, 32, np.random.default_rng(0))
    assert img.shape == (32, 32, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert scn.SCENE_WORDS[scene] and scn.SCENES[scene] in (0, 1, None)
    others = [scn.render_scene(s, 32, np.random.default_rng(0)).mean((0, 1)) for s in scn.SCENES if s != scene]
    assert min(np.abs(img.mean((0, 1)) - o).sum() for o in others) > 0.02  # its own palette


def test_the_scenes_cover_the_llms_places():
    assert {"forest", "beach", "lake", "ocean", "river", "snow", "city", "street", "desert", "meadow",
            "mountain", "marsh"} <= set(scn.SCENES)
    assert list(grp.SCENES) == ["forest", "bamboo", "meadow", "desert", "ocean", "lake", "river", "marsh",
                               "snow", "city"]  # SynthBirds' own scenes and their order are unchanged


@pytest.mark.parametrize("texture", list(tx.TEXTURES))
def test_a_texture_changes_the_object_and_little_else(texture):
    species = "swan" if texture == "black" else "crow"  # a black crow stays black
    plain, mask = drawn(spc.Look("snow"), species)
    textured, mask2 = drawn(spc.Look("snow", texture=texture), species)
    assert (mask == mask2).all()
    changed = np.abs(textured - plain).max(axis=2) > 0.1
    assert changed[mask].mean() > 0.15, texture  # visible on the object
    if texture == "furry":  # tufts stick out of the outline by one pixel, no further
        grown = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
        assert not changed[~grown].any()
    else:
        assert not changed[~mask].any()


def test_checkered_and_striped_alternate_on_the_object():
    img = np.full((32, 32, 3), 0.8, np.float32)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    checks = tx.apply_texture(img.copy(), mask, "checkered", np.random.default_rng(0))[8:24, 8:24, 0]
    assert 0.3 < (checks < 0.5).mean() < 0.7
    assert (checks != np.roll(checks, 1, axis=1)).mean() > 0.2  # alternates along a row


@pytest.mark.parametrize("tint", list(tx.TINTS))
def test_a_tint_gives_the_object_its_colour_and_keeps_its_parts(tint):
    colour = np.array(tx.TINTS[tint][0])
    for species in ("crow", "swan", "bluejay"):
        img, mask = drawn(spc.Look("forest", texture=tint), species)
        assert np.abs(img[mask].mean(0) - colour).max() < 0.12, (tint, species)
    bluejay, mask = drawn(spc.Look("forest", texture=tint), "bluejay")  # blue body, black head and wings
    lum = cv.luminance(bluejay)[mask]
    assert lum.std() > 0.05 * lum.mean()


def test_materials_look_like_what_they_are_named():
    background = scn.render_scene("lake", 32, np.random.default_rng(0))
    plain, mask = drawn(spc.Look("lake"), "cardinal")
    look = lambda texture: drawn(spc.Look("lake", texture=texture), "cardinal")[0]
    gap = lambda img: np.abs(img[mask] - background[mask]).mean()
    assert gap(look("glass")) < 0.6 * gap(plain)  # the lake shows through a glass bird (rim and highlight aside)
    stone = look("stone")[mask]
    assert np.abs(stone - stone.mean(1, keepdims=True)).mean() < 0.05  # grey, not red
    assert stone.std() > 0.05  # grooves and relief
    ceramic = look("ceramic")[mask]
    glaze, cobalt = cv.luminance(ceramic) > 0.8, ceramic[:, 2] > ceramic[:, 0] + 0.3
    assert glaze.mean() > 0.5 and cobalt.any()
    painted = look("painted")[mask]
    assert len(np.unique(painted.round(3), axis=0)) > 3  # brush strokes of different loads
    glitter = look("glittery")
    assert (cv.luminance(glitter)[mask] > 0.65).mean() > 0.15  # sparks
    assert (glitter[~mask] == plain[~mask]).all()


def hf(img):
    return cv.high_frequency_energy(img)


def test_quality_effects_are_visible():
    plain, mask = drawn(spc.Look("forest"))
    q = lambda name, seed=1: ql.apply_quality(plain, name, np.random.default_rng(seed))
    assert hf(q("blurry")) < 0.5 * hf(plain)
    assert hf(q("low_resolution")) < 0.7 * hf(plain)
    assert hf(q("grainy")) > 2 * hf(plain)
    assert q("dark").mean() < 0.5 * plain.mean()
    assert q("overexposed").mean() > plain.mean() + 0.2
    assert q("low_contrast").std() < 0.5 * plain.std()
    gray = q("grayscale")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    for seed in range(4):  # pixelated: constant blocks of 3 or 4 pixels
        pix = q("pixelated", seed)
        assert any(all((pix[i:i + b, j:j + b] == pix[i, j]).all() for i in range(0, 32, b) for j in range(0, 32, b))
                   for b in (3, 4))
    assert hf(q("smeared")) < 0.7 * hf(plain)
    assert hf(q("sharpened")) > 1.5 * hf(plain)
    framed = q("framed")
    assert (framed[4:-4, 4:-4] == plain[4:-4, 4:-4]).all() and np.abs(framed[0] - plain[0]).max() > 0.1
    mirrored = q("mirrored")
    line = next(r for r in range(16, 32) if np.allclose(mirrored[r:], 0.8 * plain[2 * r - 32:r][::-1]))
    assert line < 30 and (mirrored[:line] == plain[:line]).all()
    printed = q("printed")  # dots of ink on paper, the colours kept on average
    assert hf(printed) > 2 * hf(plain) and np.abs(printed.mean((0, 1)) - plain.mean((0, 1))).max() < 0.1
    horizon = np.zeros((32, 32, 3), np.float32)
    horizon[16:] = 1
    tilted = ql.apply_quality(horizon, "tilted", np.random.default_rng(0))
    ends = tilted[16, :4].mean(), tilted[16, -4:].mean()  # the horizon slants through the middle row
    assert min(ends) < 0.3 and max(ends) > 0.7
    # framing acts through the object's size
    area = lambda quality: drawn(spc.make_look("forest", quality=quality))[1].sum()
    assert area("far") < 0.5 * mask.sum() and area("close") > 1.5 * mask.sum()


def test_styles_redraw_the_whole_image():
    plain, _ = drawn(spc.Look("lake"), species="cardinal")
    sketch, _ = drawn(spc.Look("lake", style="sketch"), species="cardinal")
    assert (sketch[..., 0] == sketch[..., 1]).all() and (sketch[..., 1] == sketch[..., 2]).all()
    assert np.median(sketch) > 0.7 and sketch.min() < 0.4  # dark lines on white paper
    cartoon, _ = drawn(spc.Look("lake", style="cartoon"), species="cardinal")
    assert len(np.unique(cartoon.reshape(-1, 3), axis=0)) < 0.3 * len(np.unique(plain.reshape(-1, 3), axis=0))
    painting, _ = drawn(spc.Look("lake", style="painting"), species="cardinal")
    assert hf(painting) < hf(plain) and np.abs(painting - plain).mean() > 0.02


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_a_sketch_draws_the_bird_firmly_and_shades_it_by_its_tone():
    inside = {}
    for species in ("crow", "swan"):
        sketch, mask = drawn(spc.Look("meadow", style="sketch"), species=species)
        contour = sty._contour(mask)
        assert contour.sum() < 0.8 * mask.sum() and sketch[contour].mean() < 0.35  # a dark, one-pixel outline
        inside[species] = sketch[mask & ~contour].mean()
    assert inside["crow"] < inside["swan"] - 0.2  # a black bird shaded dark, a white one left light


def test_a_cartoon_keeps_a_small_birds_colours_inside_its_outline():
    cartoon, mask = drawn(spc.Look("forest", style="cartoon"), species="cardinal")
    inner = mask & ~sty._contour(mask)
    black = (cartoon <= 0.06).all(axis=2)
    assert black[sty._contour(mask)].mean() == 1 and black[inner].mean() < 0.3
    assert cartoon[inner & ~black].mean(0)[0] > 0.6  # still red


def test_synthbirds_species_differ_in_silhouette_not_only_colour():
    # a sketch keeps only shapes: two species drawn with the same mask would be one bird there
    masks = {sp.name: drawn(spc.Look("snow"), species=sp.name)[1] for sp in spc.SPECIES}
    for (a, ma), (b, mb) in itertools.combinations(masks.items(), 2):
        assert mask_iou(ma, mb) < 0.85, (a, b, mask_iou(ma, mb))


def test_renditions_and_hard_objects():
    plain, mask = drawn(spc.Look("snow"), species="cardinal")
    swapped, _ = drawn(spc.Look("snow", palette=(2, 0, 1)), species="cardinal")
    red = plain[mask].mean(0)
    assert red[0] > red[1] + 0.3 and swapped[mask].mean(0)[1] > swapped[mask].mean(0)[0] + 0.3  # red -> green
    assert (swapped[~mask] == plain[~mask]).all()
    faint, _ = drawn(spc.Look("snow", contrast=0.3), species="cardinal")
    background = scn.render_scene("snow", 32, np.random.default_rng(0))
    gap = lambda img: np.abs(img[mask] - background[mask]).mean()
    assert gap(faint) < 0.4 * gap(plain)


def test_new_species_are_told_apart_by_colour_or_shape():
    assert len(spc.WORLD_SPECIES) >= 16 and len(set(spc.WORLD_CLASSNAMES)) == len(spc.WORLD_SPECIES)
    assert spc.WORLD_SPECIES[:8] == spc.SPECIES
    looks = {}
    for sp in spc.WORLD_SPECIES:
        img, mask = drawn(spc.Look("snow"), species=sp.name)
        assert mask.sum() > 20, sp.name
        looks[sp.name] = (img[mask].mean(0), mask)
    for (a, (ca, ma)), (b, (cb, mb)) in itertools.combinations(looks.items(), 2):
        # one seed: the same place and size
        assert np.abs(ca - cb).sum() > 0.1 or mask_iou(ma, mb) < 0.85, (a, b)


# ---- captions and the pre-training set ------------------------------------------------------------

def mentions(caption: str, n: cv.Nuisance) -> bool:
    return any(w in caption for w in n.adjectives + n.phrases)


def test_every_texture_and_quality_is_named_by_its_captions():
    rng = np.random.default_rng(0)
    for kind, table in (("texture", tx.TEXTURES), ("quality", ql.QUALITIES)):
        for name, n in table.items():
            for _ in range(20):
                cap = capt.nuisance_caption(spc.SPECIES_BY_NAME["duck"], spc.make_look("lake", **{kind: name}), rng)
                assert mentions(cap, n), (name, cap)


def test_the_rendered_words_name_the_new_nuisances_and_no_filler():
    new = {"red", "blue", "black", "white", "gold", "golden", "beige", "lavender", "purple", "pink", "green",
           "brown", "glass", "stone", "carved", "sculpted", "etched", "engraved", "glazed", "ceramic", "porcelain",
           "painted", "glitter", "sparkling", "bark", "light", "lit", "illuminated", "blown", "sharpened", "smeared",
           "streaked", "tilted", "framed", "mirrored", "reflection", "printed", "halftone", "cropped"}
    assert new <= RENDERED_WORDS
    assert not RENDERED_WORDS & (vocabulary._FILLER | {"photo", "picture", "image", "lines", "feathers", "barely"})


@pytest.fixture(scope="module")
def world_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "all.npz"
    generate_pretrain_set(path, 1600, correlation=0.8, seed=1, world="all")
    return np.load(path)


def test_captions_mention_every_nuisance_of_their_image(world_set):
    z = world_set
    for cap, t, q, s, sp, scene in zip(z["captions"], z["textures"], z["qualities"], z["styles"], z["species"], z["scenes"]):
        if t or q or s:  # (a plain image's caption may name only its scene: "the lake.")
            assert sp in cap or grp.CLASSNAMES[spc.SPECIES_BY_NAME[sp].y] in cap, cap
        assert not t or mentions(cap, tx.TEXTURES[t]), (cap, t)
        assert not q or mentions(cap, ql.QUALITIES[q]), (cap, q)
        # a rendition's caption names its style or, as the web's often do, the bird alone: never a photo
        assert not s or mentions(cap, sty.STYLES[s]) or "photo" not in cap, (cap, s)
    for key, p in (("textures", 0.3), ("qualities", 0.3), ("styles", 0.1)):
        assert (z[key] != "").mean() == pytest.approx(p, abs=0.04), key
    styled = [(c, s) for c, s in zip(z["captions"], z["styles"]) if s]
    named = np.mean([mentions(c, sty.STYLES[s]) for c, s in styled])
    assert named == pytest.approx(capt.STYLE_NAMED, abs=0.12)
    with_scene = [c for c, sc in zip(z["captions"], z["scenes"]) if any(w in c for w in scn.SCENE_WORDS[sc])]
    assert len(with_scene) > 0.6 * len(z["captions"])
    assert not [c for c in z["captions"] if " a a" in c or re.search(r"\ba [aeiou]", c)]


def test_the_whole_world_set_covers_the_source_classes_with_habitual_scenes(world_set):
    z = world_set
    assert set(z["species"]) == set(spc.WORLD_CLASSNAMES)
    assert (np.array(spc.WORLD_CLASSNAMES)[z["y"]] == z["species"]).all()
    habitual = np.array([sc in spc.HABITS[sp] for sp, sc in zip(z["species"], z["scenes"])])
    assert habitual.mean() == pytest.approx(0.8, abs=0.04)
    assert set(z["scenes"]) == set(scn.SCENES)
    words = set(re.findall(r"[a-z]+", " ".join(z["captions"])))
    assert len(RENDERED_WORDS & words) > 0.85 * len(RENDERED_WORDS)  # the captions teach the words


def test_synthbirds_pretrain_keeps_its_design_and_adds_nuisances(tmp_path):
    generate_pretrain_set(tmp_path / "none.npz", 300, correlation=0.9, seed=0, texture=0, quality=0, style=0)
    plain = np.load(tmp_path / "none.npz")
    assert set(plain["textures"]) == set(plain["qualities"]) == set(plain["styles"]) == {""}
    assert set(plain["species"]) <= {s.name for s in spc.SPECIES} and set(plain["y"]) == {0, 1}
    assert set(plain["scenes"]) <= set(scn.SCENES)
    with pytest.raises(ValueError, match="'synthbirds' or 'all'"):
        generate_pretrain_set(tmp_path / "x.npz", 8, correlation=0.9, world="birds")


TYPICAL_POOLS = {  # templates as SmolLM2-135M writes them from prompts/*.yaml
    "background": ["a photo of a {} in the forest.", "a {} on a sunny beach.", "a photo of a {} by the lake.",
                   "a {} perched on a tree branch.", "a {} flying in the sky.", "a photo of a {} in a city park.",
                   "a {} in the snow.", "a photo of a {} at a bird feeder.", "a {} near a river.",
                   "a photo of a {} in a zoo.", "a {} on a rooftop.", "a photo of a {} in the grass."],
    "quality": ["a blurry photo of a {}.", "a grainy photo of a {}.", "a photo of a {} in low light.",
                "an overexposed photo of a {}.", "a low resolution photo of a {}.",
                "a photo of a {} taken with a flash.", "a pixelated image of a {}.",
                "a photo of a {} with a shallow depth of field.", "a black and white photo of a {}.",
                "a photo of a {} seen from far away.", "a dark photo of a {}.", "a photo of a {} in vivid colors."],
    "texture": ["a {} with a striped pattern.", "a photo of a fluffy {}.", "a photo of a {} with shiny feathers.",
                "a pencil sketch of a {}.", "a photo of a {} made of plastic.", "a spotted {}.",
                "a watercolor painting of a {}.", "a photo of a {} with smooth feathers.", "a cartoon {}.",
                "an origami {}.", "a photo of a wooden {}.", "a photo of a {} with rough skin."],
}


@pytest.mark.parametrize("pool", list(TYPICAL_POOLS))
def test_rendered_words_cover_typical_llm_templates(pool):
    hits, words = rendered_word_counts(TYPICAL_POOLS[pool])
    assert hits >= len(TYPICAL_POOLS[pool]) / 2, (pool, words)
    # scaffolding words are not counted: "with feathers" names no rendered nuisance
    assert rendered_word_counts(["a photo of a {} with feathers.", "a {} out in the open."])[0] == 0


def test_synthbirds_nuisances_only_on_request(tmp_path):
    df = generate_dataset(tmp_path / "plain", n_train=40, n_val=8, n_test=8, train_correlation=0.95, seed=0)
    assert "texture" not in df.columns and set(df["scene"]) <= set(list(grp.SCENES)[:8])
    df = generate_dataset(tmp_path / "noisy", n_train=200, n_val=8, n_test=8, train_correlation=0.95,
                          seed=0, texture=0.5, quality=0.5)
    assert (df["texture"] != "").mean() == pytest.approx(0.5, abs=0.1) and (df["quality"].fillna("") != "").mean() > 0.3
    assert data.read_metadata(tmp_path / "noisy", check_images=True)["y"].tolist() == df["y"].tolist()


def test_cli_takes_the_new_parameters_with_defaults(tmp_path):
    cfg = {"image_size": 32, "n_train": 16, "n_val": 8, "n_test": 8, "train_correlation": 0.9,
           "n_pretrain": 40, "pretrain_correlation": 0.9, "seed": 0}
    sw.main(["--params", json.dumps(cfg), "--root", str(tmp_path / "d"), "--pretrain-out", str(tmp_path / "p.npz")])
    assert (np.load(tmp_path / "p.npz")["textures"] != "").any()
    sw.main(["--params", json.dumps({**cfg, "pretrain_world": "all", "pretrain_texture": 0.0}),
             "--root", str(tmp_path / "d2"), "--pretrain-out", str(tmp_path / "p2.npz")])
    z = np.load(tmp_path / "p2.npz")
    assert z["y"].max() > 1 and set(z["textures"]) == {""}


def test_every_combination_of_nuisances_draws_a_valid_image():
    rng = np.random.default_rng(0)
    for texture in [None, *tx.TEXTURES]:
        for quality in [None, *ql.QUALITIES]:
            for style in [None, *sty.STYLES]:
                sp = spc.WORLD_SPECIES[rng.integers(len(spc.WORLD_SPECIES))]
                look = spc.make_look(str(rng.choice(list(scn.SCENES))), texture, quality, style,
                                    contrast=float(rng.choice([1.0, 0.4])))
                img, _ = spc.draw(sp, look, 32, rng)
                assert np.isfinite(img).all() and 0 <= img.min() and img.max() <= 1, look
