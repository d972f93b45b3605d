"""The understanding encoder: offline defaults, CFG's null text, and the Qwen adapter loading a
Qwen-family model from a local directory (a tiny one built here; nothing is downloaded)."""
import pytest
import torch

from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder, hash_tokenize


def test_hashed_tokenizer_is_stable_and_pads():
    ids, valid = hash_tokenize(["Press the BUTTON", ""], buckets=4096, max_words=5)
    ids2, _ = hash_tokenize(["press the button"], buckets=4096, max_words=5)
    assert torch.equal(ids[0], ids2[0]) and valid[0].tolist() == [True, True, True, False, False]
    assert not valid[1].any()


def test_encoder_tokens_and_null_text():
    torch.manual_seed(0)
    enc = UnderstandingEncoder(UnderstandingConfig(dim=32, text_tokens=3, image_tokens=2))
    img = torch.rand(2, 3, 64, 64)
    out = enc(["open the drawer", "close the window"], img)
    assert out.shape == (2, 5, 32)
    assert not torch.allclose(out[0, :3], out[1, :3])           # the instruction matters
    hidden = enc(["open the drawer", "close the window"], img, drop_text=torch.tensor([True, True]))
    assert torch.allclose(hidden[0, :3], hidden[1, :3])         # both replaced by the same null
    assert torch.allclose(hidden[:, 3:], out[:, 3:])            # image tokens untouched


def _tiny_qwen(path):
    """A 1-layer Qwen2 with a byte-level BPE tokenizer trained on three sentences, saved like a hub
    checkpoint (config.json, model.safetensors, tokenizer files)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["open the drawer", "press the button", "close the window"] * 10,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>").save_pretrained(path)
    cfg = transformers.Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    transformers.Qwen2Model(cfg).save_pretrained(path)


def test_qwen_adapter_loads_a_local_qwen_model(tmp_path):
    _tiny_qwen(str(tmp_path))
    enc = UnderstandingEncoder(UnderstandingConfig(dim=48, text_tokens=2, image_tokens=2, qwen_path=str(tmp_path)))
    out = enc(["open the drawer", "press the button"], torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 4, 48) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in enc.text.lm.parameters())   # the LM is frozen


def test_missing_qwen_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold config.json"):
        UnderstandingEncoder(UnderstandingConfig(dim=32, qwen_path=str(tmp_path)))


def test_image_positions_let_the_image_tokens_tell_where_an_object_is():
    """image_positions adds a fixed 2D code before the attention pool: no new weights (a checkpoint
    without it loads), a different output on the same weights, and configs that predate the field
    load with it off."""
    from kairos_model.checkpoint import config_from_dict, config_to_dict
    from kairos_model.understanding import ImageEncoder, UnderstandingConfig, sincos_2d
    from kairos_model.world_model import WorldModelConfig
    torch.manual_seed(0)
    off, on = ImageEncoder(UnderstandingConfig()), ImageEncoder(UnderstandingConfig(image_positions=True))
    on.load_state_dict(off.state_dict())                       # strict: the same parameters
    img = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(off(img), on(img))
    pe = sincos_2d(4, 4, 128)
    dist = torch.cdist(pe, pe) + torch.eye(16) * 1e9
    assert pe.shape == (16, 128) and dist.min() > 0.1                          # every cell coded apart
    d = config_to_dict(WorldModelConfig())
    del d["und"]["image_positions"]                             # a config.json written before the field
    assert config_from_dict(d).und.image_positions is False
