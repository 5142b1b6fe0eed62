"""Feature extraction: shapes, the cache (hit without building), keys, float16 scaling, failure safety."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from posenc_utils.primitives import cache
from posenc_utils.models import encoders
from posenc_utils.engine import features, images
from posenc_utils.engine.features import extract_features, feature_key
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec

VGG = EncoderSpec("vgg16", "random")
VGG_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


@pytest.fixture
def tiny_set():
    return images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=5), 32)


def reference_features(spec: EncoderSpec, image_set, size: int = 28) -> np.ndarray:
    """The features computed directly (float32): every tap resized to ``size`` and concatenated."""
    enc = features._encoder(spec, 0, image_set.size, "cpu")
    x = torch.from_numpy(np.asarray(image_set.load(), np.float32) / 255.0).permute(0, 3, 1, 2)
    return encoders.resize_taps(enc(x), size).numpy()


def read_np(fs, idx=slice(None)) -> np.ndarray:
    """``FeatureSet.read`` as a float32 numpy array (N, C, size, size), whatever it returns."""
    x = fs.read(idx)
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def cache_leftovers():
    root = os.environ["POSENC_CACHE_DIR"]
    return [os.path.join(d, n) for d, _, fs in os.walk(root) for n in fs if ".tmp" in n or ".trim" in n]


def test_extract_vgg16(tiny_set):
    fs = extract_features(VGG, tiny_set, size=28)
    assert fs.n == 5 and fs.size == 28
    assert fs.tap_names == VGG_TAPS
    assert fs.channels == (64, 128, 256, 512, 512) and fs.n_channels == 1472
    arr = np.load(fs.path, mmap_mode="r")  # on-disk layout is the package's choice; size and dtype are not
    assert arr.shape[0] == 5 and arr.size == 5 * 1472 * 28 * 28 and arr.dtype == np.float16
    sl = fs.tap_slices()
    assert list(sl) == list(VGG_TAPS)
    assert sl["relu1_2"] == slice(0, 64) and sl["relu2_2"] == slice(64, 192) and sl["relu5_3"] == slice(960, 1472)
    x = read_np(fs)
    assert x.shape == (5, 1472, 28, 28) and x.dtype == np.float32
    assert np.isfinite(x).all() and (x >= 0).all()
    ref = reference_features(VGG, tiny_set)
    np.testing.assert_allclose(x, ref, rtol=2e-3, atol=1e-6 * np.abs(ref).max())
    assert np.array_equal(read_np(fs, [3]), x[3:4])
    assert np.array_equal(read_np(fs, np.array([1, 4])), x[[1, 4]])
    meta = json.loads(fs.path.with_suffix(".json").read_text())
    assert meta["key"] == fs.key and meta["image_set"] == "dead_leaves" and meta["taps"] == list(VGG_TAPS)


def test_second_call_is_a_cache_hit(tiny_set, monkeypatch):
    first = extract_features(VGG, tiny_set)
    def no_build(*a, **k):
        raise AssertionError("the encoder was built on a cache hit")

    monkeypatch.setattr(features, "_encoder", no_build)  # neither built nor taken from the memo
    second = extract_features(VGG, tiny_set)
    assert (second.key, second.path, second.n, second.channels) == (first.key, first.path, first.n, first.channels)
    assert np.array_equal(read_np(second), read_np(first))
    # a different request is a miss and does build (and here fails loudly)
    with pytest.raises(AssertionError, match="built on a cache hit"):
        extract_features(EncoderSpec("vgg16", "random", "reflect"), tiny_set)


def test_feature_key(tiny_set):
    key = lambda spec, seed=0, size=28, dtype="float16": feature_key(spec, seed, tiny_set, size, dtype)
    base = key(VGG)
    assert base == key(EncoderSpec("vgg16", "random"))
    others = [key(EncoderSpec("vgg16", "random", "none")), key(EncoderSpec("vgg16", "random", "reflect")),
              key(EncoderSpec("vgg16", "imagenet")), key(EncoderSpec("vgg16", "hed")),
              key(EncoderSpec("resnet152", "random")), key(VGG, seed=1), key(VGG, size=14),
              key(VGG, dtype="float32"), key(EncoderSpec("vgg16", "random", taps=("3",)))]
    assert len({base, *others}) == len(others) + 1
    # the seed matters only for random weights
    assert key(EncoderSpec("vgg16", "hed"), seed=0) == key(EncoderSpec("vgg16", "hed"), seed=5)
    other_set = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=5, seed=1), 32)
    assert feature_key(VGG, 0, other_set, 28, "float16") != base


def test_float16_matches_float32_vgg16(tiny_set):
    f16 = extract_features(VGG, tiny_set, dtype="float16")
    f32 = extract_features(VGG, tiny_set, dtype="float32")
    assert f16.key != f32.key and f16.path != f32.path
    assert np.load(f32.path, mmap_mode="r").dtype == np.float32
    assert f32.tap_scales == (1.0,) * 5
    a, b = read_np(f16), read_np(f32)
    for name, sl in f16.tap_slices().items():
        np.testing.assert_allclose(a[:, sl], b[:, sl], rtol=1e-3, atol=1e-5 * np.abs(b[:, sl]).max(), err_msg=name)


def test_float16_scaling_resnet152(monkeypatch):
    s = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=3), 32)
    spec = EncoderSpec("resnet152", "random")
    f16 = extract_features(spec, s, dtype="float16")
    f32 = extract_features(spec, s, dtype="float32")
    raw = np.load(f16.path, mmap_mode="r")
    assert np.isfinite(raw).all()
    names = f16.tap_names
    assert names == ("stem", "layer1", "layer2", "layer3", "layer4")
    scales = dict(zip(names, f16.tap_scales))
    assert scales["stem"] == 1.0
    assert scales["layer4"] > 1 and scales["layer3"] > 1
    assert all(np.log2(v).is_integer() for v in scales.values()), "scales are powers of two"
    a, b = read_np(f16), read_np(f32)
    sl4 = f16.tap_slices()["layer4"]
    # the deep activations of a random-init ResNet152 would overflow a plain float16 cast ...
    with np.errstate(over="ignore"):
        assert np.isinf(b[:, sl4].astype(np.float16)).any()
    # ... yet the scaled float16 cache reads back within float16 precision
    for name, sl in f16.tap_slices().items():
        np.testing.assert_allclose(a[:, sl], b[:, sl], rtol=1e-3, atol=1e-5 * np.abs(b[:, sl]).max(), err_msg=name)
    assert np.isfinite(a).all()


def test_tap_scale():
    assert features._tap_scale(torch.tensor([1e8]), "float32") == 1.0
    assert features._tap_scale(torch.tensor([3.0]), "float16") == 1.0
    s = features._tap_scale(torch.tensor([-1e8, 2.0]), "float16")
    assert s > 1 and np.log2(s).is_integer()
    assert 1e8 / s <= np.finfo(np.float16).max / features.FLOAT16_HEADROOM
    assert 1e8 / (s / 2) > np.finfo(np.float16).max / features.FLOAT16_HEADROOM  # the smallest such power


def test_failure_during_fill_leaves_no_entry(tiny_set, monkeypatch):
    real_encoder = features._encoder
    calls = []

    class Flaky:
        """The real encoder, except that its second batch raises."""

        def __init__(self, enc):
            self._enc = enc

        def __getattr__(self, name):
            return getattr(self._enc, name)

        def __call__(self, x):
            calls.append(len(x))
            if len(calls) == 2:
                raise RuntimeError("simulated crash in batch 2")
            return self._enc(x)

    monkeypatch.setattr(features, "_encoder", lambda *a, **k: Flaky(real_encoder(*a, **k)))
    with pytest.raises(RuntimeError, match="batch 2"):
        extract_features(VGG, tiny_set, batch_size=2)
    assert calls == [2, 2]
    key = feature_key(VGG, 0, tiny_set, 28, "float16")
    folder = features.paths.cache_dir() / "features"
    entries = [p for p in folder.glob(f"*{key}*") if p.suffix not in (".lock", ".verified")]  # lock and stamp files hold no data
    assert entries == [], entries
    assert cache_leftovers() == []

    monkeypatch.setattr(features, "_encoder", real_encoder)
    fs = extract_features(VGG, tiny_set, batch_size=2)
    assert fs.key == key and fs.n == 5
    assert cache.open_array_entry(fs.path, fs.path.with_suffix(".json"), {"key": key}) is not None
    ref = reference_features(VGG, tiny_set)
    np.testing.assert_allclose(read_np(fs), ref, rtol=2e-3, atol=1e-6 * np.abs(ref).max())
    assert cache_leftovers() == []


def test_damaged_feature_file_is_recomputed(tiny_set, monkeypatch, capfd):
    """Features overwritten in place (same size, valid header) are detected, named and recomputed, and the
    process's own standard error (a run's log, even from a notebook kernel) names the entry and its rebuild."""
    first = extract_features(VGG, tiny_set)
    good = read_np(first)
    offset = cache.npy_layout(first.path)[2]
    with open(first.path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * (first.path.stat().st_size - offset))
    assert not read_np(first).any()
    monkeypatch.setattr(cache, "_VERIFIED", {})  # as a new process would
    with pytest.warns(UserWarning, match=first.path.name):
        again = extract_features(VGG, tiny_set)
    assert again.key == first.key
    assert np.array_equal(read_np(again), good)
    log = capfd.readouterr().err
    assert f"[cache] cache entry {first.path} is damaged" in log and f"[cache] {first.path} rebuilt" in log


def test_feature_map_rows(tiny_set):
    fs = extract_features(VGG, tiny_set)
    stored = np.load(fs.path)
    with features.FeatureMap(fs) as m:
        assert m.array.shape == (5, 28 * 28, 1472) and m.tensor.dtype == torch.float16
        assert np.array_equal(m.rows([0, 1, 3]), stored[[0, 1, 3]].reshape(3, 28 * 28, 1472))
        m.prefetch([2, 4])
        m.release([0, 1, 2, 3, 4])  # released rows read back from the page cache when touched again
        assert np.array_equal(m.array[4], stored[4].reshape(28 * 28, 1472))
        pages = m._pages([1, 2, 4])
        assert [p[0] % 4096 for p in pages] == [0, 0] and len(pages) == 2  # runs merged, page-aligned


def _resident_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_closed_feature_map_leaves_memory_even_with_a_live_view(tiny_set):
    fs = extract_features(VGG, tiny_set)
    stored = np.load(fs.path)
    m = features.FeatureMap(fs)
    view = m.tensor[1]  # a view outliving the map: the mapping cannot be unmapped
    assert float(view.float().sum()) == float(torch.from_numpy(stored[1]).float().sum())
    assert _resident_kb(fs.path) > 1000
    m.close()
    assert _resident_kb(fs.path) < 100, "the pages left this process's resident memory"
    assert np.array_equal(view.numpy(), stored[1].reshape(28 * 28, 1472))  # and the view still reads right


@pytest.mark.parametrize("spec", [VGG, EncoderSpec("resnet152", "random")], ids=["vgg16", "resnet152"])
def test_stored_held_and_recomputed_features_agree(spec):
    """The paper profile may hold features in memory or recompute them each epoch instead of storing them (issue 31):
    the same scaling and the same numbers either way. Held rows are the stored bits (the same batches); recomputed
    rows run the encoder on other batches, so they may differ by a convolution's round-off, well under float16's
    own (a relative 2**-11)."""
    image_set = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=7), 32)
    stored = extract_features(spec, image_set, batch_size=3)
    held = extract_features(spec, image_set, batch_size=3, storage="memory")
    again = extract_features(spec, image_set, batch_size=3, storage="recompute")
    assert held.storage == "memory" and again.storage == "recompute" and stored.storage == "store"
    assert held.key == again.key == stored.key and held.tap_scales == again.tap_scales == stored.tap_scales
    assert held.channels == again.channels == stored.channels
    x = read_np(stored)
    assert np.array_equal(read_np(held), x)
    idx = np.array([1, 4, 6])
    y = read_np(again, idx)
    np.testing.assert_allclose(y, x[idx], rtol=2**-10, atol=2**-14 * np.abs(x).max())
    assert np.array_equal(read_np(again.head(3)), read_np(again)[:3]) and again.head(3).n == 3
    # the readout engine reads each the same way: a stream's batches hold the rows asked for
    from posenc_utils.engine.fast_readout import FeatureStream
    for fs in (held, again):
        stream = FeatureStream(fs, None, "cpu")
        (i, batch), = list(stream.batches([idx]))
        rows = batch.gather().float().numpy().reshape(3, 28, 28, -1) * fs.channel_scales()
        np.testing.assert_allclose(rows.transpose(0, 3, 1, 2), x[idx], rtol=2**-10, atol=2**-14 * np.abs(x).max())
        stream.close()


def test_auto_storage_by_the_numbers():
    gb = 10**9
    assert features.choose_storage(24 * gb, 100 * gb, "cpu").mode == "store"
    assert features.choose_storage(64 * gb, 50 * gb, "cpu").mode == "recompute"
    assert features.choose_storage(64 * gb, 500 * gb, "cuda", device_free=130 * gb).mode == "memory"
    assert features.choose_storage(64 * gb, 500 * gb, "cuda", device_free=70 * gb).mode == "store"
    assert features.choose_storage(64 * gb, 50 * gb, "cuda", device_free=70 * gb).mode == "recompute"
    assert features.choose_storage(64 * gb, 1 * gb, "cpu", stored=True).mode == "store"
    assert features.choose_storage(1, 100 * gb, "cpu", wanted="recompute").mode == "recompute"
    with pytest.raises(ValueError, match="feature_storage='disk'"):
        features.choose_storage(1, 1, "cpu", wanted="disk")


def test_auto_storage_recomputes_when_the_disk_is_short(tiny_set, monkeypatch):
    free = lambda path: type("Usage", (), {"free": 10**6})()  # noqa: E731 - 1 MB free: no room for 5 x 1472 x 28 x 28
    monkeypatch.setattr(features.shutil, "disk_usage", free)
    fs = extract_features(VGG, tiny_set, storage="auto")
    assert fs.storage == "recompute" and not fs.path.exists()
    np.testing.assert_allclose(read_np(fs), reference_features(VGG, tiny_set), rtol=2e-3,
                               atol=1e-3 * np.abs(reference_features(VGG, tiny_set)).max())
