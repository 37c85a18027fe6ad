import hashlib

import numpy as np
import pandas as pd
import pytest

from stages import data
from stages.synthworld import RENDERED_WORDS, SPECIES, generate_dataset, generate_pretrain_set


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
        data.check(root, ["landbird", "waterbird"], tmp_path / "check.json")
    assert not (tmp_path / "check.json").exists()
    (root / df["img_filename"][2]).parent.mkdir(exist_ok=True)
    (root / df["img_filename"][2]).write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match="line 4: image"):
        data.read_metadata(root, check_images=True)
