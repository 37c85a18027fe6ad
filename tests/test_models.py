import json

import open_clip
import pytest
import torch

from stages.method.models import CONFIG_FILE, WEIGHTS_FILE, load_clip, model_identity, save_local_dir
from stages.synthetic.teacher import tiny_clip_config

CFG = {"embed_dim": 16, "layers": 1, "width": 32, "patch_size": 8, "text_layers": 1}


def test_local_dir_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model_cfg = tiny_clip_config(CFG, 32)
    model = open_clip.CLIP(**model_cfg).eval()
    save_local_dir(model, model_cfg, tmp_path)
    assert (tmp_path / WEIGHTS_FILE).is_file()
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["model_cfg"] == model_cfg

    clip = load_clip(f"local-dir:{tmp_path}")
    clip.model.eval()
    images = torch.randn(3, 3, 32, 32)
    tokens = clip.tokenizer(["a photo of a heron.", "the ocean.", "x"])
    assert tokens.shape == (3, model_cfg["text_cfg"]["context_length"])
    with torch.no_grad():
        for a, b in zip(model(images, tokens), clip.model(images, tokens)):
            assert torch.equal(a, b)


def test_identity_fingerprints_the_weights(tmp_path):
    model_cfg = tiny_clip_config(CFG, 32)
    for seed, folder in ((0, tmp_path / "a"), (1, tmp_path / "b")):
        torch.manual_seed(seed)
        folder.mkdir()
        save_local_dir(open_clip.CLIP(**model_cfg), model_cfg, folder)
    a, b = model_identity(f"local-dir:{tmp_path / 'a'}"), model_identity(f"local-dir:{tmp_path / 'b'}")
    assert a["fingerprint"] != b["fingerprint"]
    assert a == model_identity(f"local-dir:{tmp_path / 'a'}")
    # a hub model is identified by its name and pretrained tag
    assert model_identity("ViT-B-16-quickgelu", "openai") != model_identity("ViT-B-16-quickgelu", "laion400m_e32")


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder .*nope not found"):
        load_clip(f"local-dir:{tmp_path / 'nope'}")


def test_trimmed_text_encoding_equals_full_context():
    from stages.method.models import can_trim_text, encode_text, trim_tokens

    torch.manual_seed(0)
    model = open_clip.CLIP(**tiny_clip_config({**CFG, "text_layers": 2}, 32)).eval()
    tokens = open_clip.SimpleTokenizer(context_length=24)(
        ["a photo of a heron in the forest.", "x", "a blurry photo of a very small crow on a sandy beach."])
    trimmed = trim_tokens(tokens)
    assert can_trim_text(model) and trimmed.shape == (3, 15)  # the longest caption: 13 words + sot + eot
    with torch.no_grad():
        assert torch.allclose(encode_text(model, trimmed), model.encode_text(tokens), atol=1e-5)
        assert torch.equal(encode_text(model, tokens), model.encode_text(tokens))


def test_autocast_dtype_follows_finetune_precision():
    from stages.method.models import autocast_dtype
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) == torch.bfloat16
    assert autocast_dtype("fp32", cuda) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", cpu)
