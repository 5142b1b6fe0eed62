"""The PEM readout: shapes, independent heads, determinism, the readout cache, channel selection, evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from posenc_utils.engine import fast_readout, images, readout
from posenc_utils.engine.features import extract_features
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec, ReadoutSpec
from posenc_utils.engine.readout import PEM, channel_index, evaluate, head_seed, train_readout
from posenc_utils.primitives.targets import PATTERNS, target_stack

IMAGE_SIZE = 32
SPEC = ReadoutSpec(epochs=2, batch_size=4)


@pytest.fixture
def image_set():
    return images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=8), IMAGE_SIZE)


@pytest.fixture
def posenet_features(image_set):
    return extract_features(EncoderSpec("posenet", "none"), image_set)


@pytest.fixture
def vgg_features(image_set):
    return extract_features(EncoderSpec("vgg16", "random"), image_set)


# ---------------------------------------------------------------- the module


@pytest.mark.parametrize("n_layers, kernel, padding, out", [
    (1, 3, 0, 26), (2, 3, 0, 24), (1, 7, 0, 22), (1, 3, 1, 28), (2, 7, 3, 28), (1, 1, 0, 28),
])
def test_pem_output_shapes(n_layers, kernel, padding, out):
    m = PEM(6, [head_seed(0, p) for p in ("H", "V")], n_layers, kernel, padding)
    y = m(torch.rand(2, 6, 28, 28))
    assert y.shape == (2, 2, out, out)
    assert (y >= 0).all() and (y <= 1).all(), "sigmoid output"


def test_pem_structure():
    m = PEM(4, [1, 2, 3], n_layers=2)
    first, second = m.body[0], m.body[3]
    assert first.out_channels == 12 and first.groups == 1
    assert second.in_channels == 12 and second.out_channels == 3 and second.groups == 3
    assert (first.bias == 0).all() and (second.bias == 0).all()
    assert isinstance(m.body[-1], torch.nn.Sigmoid)


def test_head_seed():
    assert head_seed(0, "H") == head_seed(0, "H")
    assert len({head_seed(0, p) for p in PATTERNS} | {head_seed(1, "H")}) == 6
    # a head's initial weights depend only on its own seed, not on the other heads
    a = PEM(5, [head_seed(0, "G")])
    b = PEM(5, [head_seed(0, p) for p in PATTERNS])
    assert torch.equal(a.body[0].weight, b.body[0].weight[2:3])


# ---------------------------------------------------------------- independent heads


def _head_state(model: PEM, h: int, n_heads: int) -> dict[str, torch.Tensor]:
    """Head ``h``'s slice of every per-channel parameter and buffer of a multi-head PEM."""
    out = {}
    for k, v in model.state_dict().items():
        if k in ("in_mean", "in_std") or v.dim() == 0:
            out[k] = v
        else:
            per = v.shape[0] // n_heads
            out[k] = v[h * per:(h + 1) * per]
    return out


@pytest.mark.parametrize("which, n_layers", [("posenet", 1), ("posenet", 2), ("vgg", 1)])
def test_heads_are_independent(which, n_layers, request):
    feats = request.getfixturevalue(f"{which}_features")
    spec = ReadoutSpec(epochs=2, batch_size=4, n_layers=n_layers)
    multi = train_readout(feats, PATTERNS, spec, IMAGE_SIZE, use_cache=False)
    per_image, _ = evaluate(multi, feats, IMAGE_SIZE)
    assert len(multi.history) == 2 and all(len(h) == 5 for h in multi.history)
    for h, p in enumerate(PATTERNS):
        single = train_readout(feats, (p,), spec, IMAGE_SIZE, use_cache=False)
        ms, ss = _head_state(multi.model, h, len(PATTERNS)), single.model.state_dict()
        assert set(ms) == set(ss)
        for k in ss:
            assert ms[k].shape == ss[k].shape, (p, k)
            assert torch.allclose(ms[k].float(), ss[k].float(), atol=1e-5, rtol=1e-4), (p, k)
        np.testing.assert_allclose([e[h] for e in multi.history], [e[0] for e in single.history], rtol=1e-4)
        single_rows, _ = evaluate(single, feats, IMAGE_SIZE)
        multi_rows = per_image[per_image.pattern == p].reset_index(drop=True)
        assert list(multi_rows.image) == list(single_rows.image)
        # float32 round-off differs between a 5-output and a 1-output convolution over 1472
        # channels; after 2 epochs it moves weights by ~1e-6 and predictions by <= ~4e-5
        # (measured), while a coupling between heads would move them by the size of an SGD step.
        np.testing.assert_allclose(multi_rows.mae, single_rows.mae, atol=2e-4)
        np.testing.assert_allclose(multi_rows.spc.fillna(9), single_rows.spc.fillna(9), atol=5e-3)


def test_training_changes_the_weights_and_lowers_the_loss(posenet_features):
    spec = ReadoutSpec(epochs=3, batch_size=4, lr=0.1)
    r = train_readout(posenet_features, ("H", "V"), spec, IMAGE_SIZE, use_cache=False)
    init = PEM(3, [head_seed(0, "H"), head_seed(0, "V")])
    assert not torch.equal(r.model.body[0].weight, init.body[0].weight)
    assert all(np.isfinite(h).all() for h in r.history)
    assert r.history[-1][0] < r.history[0][0] or r.history[-1][1] < r.history[0][1]


def _assert_identical_readouts(a, b, features):
    """Same loss history, bit-identical weights, and identical metrics and predictions."""
    assert a.history == b.history
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ea, la = evaluate(a, features, IMAGE_SIZE)
    eb, lb = evaluate(b, features, IMAGE_SIZE)
    pd.testing.assert_frame_equal(ea, eb)
    assert np.array_equal(la, lb)


def test_determinism(vgg_features):
    a = train_readout(vgg_features, ("H", "G"), SPEC, IMAGE_SIZE, use_cache=False)
    b = train_readout(vgg_features, ("H", "G"), SPEC, IMAGE_SIZE, use_cache=False)
    _assert_identical_readouts(a, b, vgg_features)
    c = train_readout(vgg_features, ("H", "G"), SPEC, IMAGE_SIZE, seed=1, use_cache=False)
    assert c.history != a.history, "another seed is another run"


def test_feature_stream_reads_what_is_stored(vgg_features):
    """Batches are views of the mapped feature file, prefetched and released batch by batch."""
    stream = fast_readout.FeatureStream(vgg_features, None, "cpu")
    lists = [np.array([0, 1, 2]), np.array([4, 6]), np.array([3, 5, 7]), np.array([7])]
    stored = np.load(vgg_features.path).reshape(8, 28 * 28, -1)
    for idx, batch in stream.batches(lists):
        x = batch.gather()
        assert x.dtype == torch.float16 and x.shape == (len(idx), 28 * 28, 1472)
        assert np.array_equal(x.numpy(), stored[idx])
        assert batch.source.data_ptr() == stream.map.tensor.data_ptr(), "no copy of the file"
    ref = stream.reference_batch(torch.from_numpy(stored[[2, 5]]))
    np.testing.assert_array_equal(ref.numpy(), vgg_features.read([2, 5]).numpy())
    stream.close()


def _rss_file_mb() -> float:
    """This process's resident file-backed memory (what a mapped file adds to /usr/bin/time's peak)."""
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status")


def test_streaming_a_file_keeps_resident_memory_flat(tmp_path, monkeypatch):
    """Reading every image of a 240 MB feature file leaves at most one release drop resident."""
    from posenc_utils.primitives import cache
    from posenc_utils.engine import features
    from posenc_utils.engine.features import FeatureSet

    monkeypatch.setattr(features, "RELEASE_BYTES", 32 * 2**20)

    n, c = 300, 512
    path = tmp_path / "f.npy"
    cache.write_array_entry(path, tmp_path / "f.json", (n, 28, 28, c), "float16", {"key": "k"},
                            lambda out: [out.__setitem__(slice(i, i + 50), 1.0) for i in range(0, n, 50)] and None)
    fs = FeatureSet(EncoderSpec("vgg16"), "x", "k", path, n, ("a",), (c,), (1.0,), 28)
    stream = fast_readout.FeatureStream(fs, None, "cpu")
    before = _rss_file_mb()
    total = 0.0
    for _idx, batch in stream.batches([np.arange(i, i + 20) for i in range(0, n, 20)]):
        for _r, _c, block in fast_readout._float_blocks(batch, stream.ranges):
            total += float(block[::28 * 28, 0].sum())  # the first pixel of each image in the block
    grown = _rss_file_mb() - before
    stream.close()
    assert total == n, "every image was read"
    assert grown < 32 + 20, f"resident file memory grew by {grown:.0f} MB for a 240 MB file"


# ---------------------------------------------------------------- the readout cache


def test_readout_cache(vgg_features, monkeypatch):
    first = train_readout(vgg_features, ("H", "V"), SPEC, IMAGE_SIZE)
    assert first.key and (readout.paths.cache_dir() / "readouts" / f"{first.key}.pt").exists()

    def no_training(*a, **k):
        raise AssertionError("trained again instead of loading the cached readout")

    monkeypatch.setattr(torch.optim, "SGD", no_training)
    second = train_readout(vgg_features, ("H", "V"), SPEC, IMAGE_SIZE)
    assert second.key == first.key
    assert second.history == first.history
    assert second.train_seconds == pytest.approx(first.train_seconds)
    s1, s2 = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not second.model.training
    # anything that decides the result is part of the key: these train (and hit the patched SGD)
    for kwargs in (dict(patterns=("H",)), dict(spec=ReadoutSpec(epochs=1, batch_size=4)), dict(seed=3),
                   dict(taps=("relu1_2",)), dict(scaling="channel"), dict(scaling="tap")):
        args = dict(features=vgg_features, patterns=("H", "V"), spec=SPEC, image_size=IMAGE_SIZE) | kwargs
        with pytest.raises(AssertionError, match="trained again"):
            train_readout(**args)
    with pytest.raises(AssertionError, match="trained again"):
        train_readout(vgg_features, ("H", "V"), SPEC, IMAGE_SIZE, use_cache=False)


def test_readouts_trained_together_are_the_readouts_trained_alone(vgg_features, monkeypatch):
    """Readouts of one feature set, seed and batch size train in one pass over the features (each block
    converted once for all): depths, kernel sizes, PEM padding, training budgets (one stops early), stages
    and standardization mixed, every one is bit for bit what training it alone gives, and is cached alone."""
    import dataclasses

    jobs = [readout.ReadoutJob(vgg_features, PATTERNS, SPEC, IMAGE_SIZE, scaling="channel"),
            readout.ReadoutJob(vgg_features, ("H", "G"), dataclasses.replace(SPEC, kernel=7), IMAGE_SIZE),
            readout.ReadoutJob(vgg_features, ("G",), dataclasses.replace(SPEC, kernel=1, epochs=4, lr_step=2), IMAGE_SIZE),
            readout.ReadoutJob(vgg_features, ("H", "HS"), dataclasses.replace(SPEC, n_layers=2, width=4, padding=1),
                               IMAGE_SIZE, scaling="channel"),
            readout.ReadoutJob(vgg_features, PATTERNS, SPEC, IMAGE_SIZE, taps=("relu1_2",), scaling="channel"),
            readout.ReadoutJob(vgg_features, PATTERNS, SPEC, IMAGE_SIZE, taps=("relu2_2", "relu4_3"))]
    assert len({j.passes(j.new_model()) for j in jobs}) == 1, "one group"
    passes = []  # one entry per batch read from the features: how many readouts shared it
    product = readout.stored_products
    monkeypatch.setattr(readout, "stored_products", lambda ws, *a: passes.append(len(ws)) or product(ws, *a))
    alone = [readout.train_readouts([j], use_cache=False)[0] for j in jobs]
    batches_alone, passes[:] = list(passes), []
    together = readout.train_readouts(jobs, use_cache=False)
    for a, b in zip(alone, together):
        _assert_identical_readouts(a, b, vgg_features)
        assert len(b.trained_with) == len(jobs) - 1 and not a.trained_with
    # one pass over the features for all: as many batches as the longest budget alone, each shared by all
    # readouts still training (the time it saves is the benchmark's to measure, not a test's)
    per_epoch = -(-vgg_features.n // SPEC.batch_size)
    assert len(batches_alone) == sum(j.spec.epochs for j in jobs) * per_epoch
    assert len(passes) == max(j.spec.epochs for j in jobs) * per_epoch
    assert passes[0] == len(jobs) and passes[-1] == 1 and sum(passes) == len(batches_alone)
    # each was written on its own: a later call finds them all (and trains nothing)
    monkeypatch.setattr(torch.optim, "SGD", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained again")))
    again = readout.train_readouts(jobs[::-1] + jobs[:1])
    assert [r.key for r in again] == [r.key for r in together[::-1] + together[:1]]
    other_seed = dataclasses.replace(jobs[0], seed=1)
    assert other_seed.passes(other_seed.new_model()) != jobs[0].passes(jobs[0].new_model())


def test_narrow_features_train_alone_by_convolution(posenet_features):
    """PosENet's 3 channels are narrower than the product's 45 columns: its first layer is a convolution, which
    the engine does not fuse, and gives the product's function (the same losses up to round-off)."""
    job = readout.ReadoutJob(posenet_features, PATTERNS, SPEC, IMAGE_SIZE, scaling="channel")
    assert job.passes(job.new_model()) is None
    conv = train_readout(posenet_features, PATTERNS, SPEC, IMAGE_SIZE, scaling="channel", use_cache=False)
    ref = train_readout(posenet_features, PATTERNS, SPEC, IMAGE_SIZE, scaling="channel", use_cache=False,
                        engine="reference")
    np.testing.assert_allclose(conv.history, ref.history, rtol=1e-4)


# ---------------------------------------------------------------- channels and evaluation


def test_channel_index(vgg_features):
    assert channel_index(vgg_features, None) is None
    idx = channel_index(vgg_features, ("relu1_2", "relu3_3"))
    assert np.array_equal(idx, np.r_[0:64, 192:448])
    with pytest.raises(ValueError, match="unknown tap") as e:
        channel_index(vgg_features, ("relu1_2", "conv9"))
    assert "relu5_3" in str(e.value)  # lists the available taps
    r = train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE, taps=("relu5_3",), use_cache=False)
    assert r.model.body[0].in_channels == 512
    assert np.array_equal(r.channel_index, np.arange(960, 1472))
    rows, low = evaluate(r, vgg_features, IMAGE_SIZE)
    assert len(rows) == 8 and low.shape == (8, 1, 26, 26)


def test_standardize(vgg_features):
    r = train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE, scaling="channel", use_cache=False)
    x = np.asarray(vgg_features.read(slice(None)), dtype=np.float64)
    np.testing.assert_allclose(r.model.in_mean.flatten().numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.model.in_std.flatten().numpy(), np.maximum(x.std(axis=(0, 2, 3)), 1e-6),
                               rtol=1e-3, atol=1e-6)


def test_tap_scaling_pools_each_taps_channels(vgg_features):
    """Per-tap scaling: each channel centred, every channel of a tap divided by the tap's root mean square standard
    deviation, over the channels the readout reads (a stage readout pools its own tap alone)."""
    x = np.asarray(vgg_features.read(slice(None)), dtype=np.float64)
    std = x.std(axis=(0, 2, 3))
    for taps in (None, ("relu2_2", "relu4_3")):
        r = train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE, taps=taps, scaling="tap", use_cache=False)
        chans = np.arange(x.shape[1]) if taps is None else r.channel_index
        expected = np.concatenate([np.full(len(part), np.sqrt((std[part] ** 2).mean())) for part in
                                   (np.intersect1d(chans, np.arange(s.start, s.stop))
                                    for s in vgg_features.tap_slices().values()) if len(part)])
        np.testing.assert_allclose(r.model.in_std.flatten().numpy(), expected, rtol=1e-3)
        np.testing.assert_allclose(r.model.in_mean.flatten().numpy(), x.mean(axis=(0, 2, 3))[chans], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="unknown feature scaling 'pixel'"):
        train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE, scaling="pixel", use_cache=False)


def test_evaluate(vgg_features):
    r = train_readout(vgg_features, PATTERNS, SPEC, IMAGE_SIZE, use_cache=False)
    rows, low = evaluate(r, vgg_features, IMAGE_SIZE, batch_size=3)
    assert list(rows.columns) == ["image", "pattern", "spc", "mae"]
    assert len(rows) == 8 * 5
    assert sorted(rows.groupby("pattern").size().to_dict().items()) == sorted((p, 8) for p in PATTERNS)
    assert sorted(rows.image.unique()) == list(range(8))
    defined = rows.spc.dropna()
    assert len(defined) > 0 and defined.between(-1, 1).all()
    assert rows.mae.between(0, 1).all()
    assert low.shape == (8, 5, 26, 26) and low.dtype == np.float16
    # the metrics are those of the upsampled low-resolution predictions
    from posenc_utils.primitives.metrics import mae
    from posenc_utils.primitives.targets import target_map

    up = readout.upsample(torch.from_numpy(low[:, 0:1].astype(np.float32)), IMAGE_SIZE)[:, 0].numpy()
    np.testing.assert_allclose(rows[rows.pattern == "H"].mae, mae(up, target_map("H", IMAGE_SIZE)), atol=2e-3)


# ---------------------------------------------------------------- the fast engine equals the reference


def _stored_batch(n_images=3, side=28, channels=(24, 40), scales=(1.0, 8.0), seed=0):
    """A batch as the cache stores it (float16, divided by per-tap powers of two) and the same
    features in the encoder's scale, (B, C, side, side)."""
    g = torch.Generator().manual_seed(seed)
    c = sum(channels)
    stored = (torch.rand(n_images, side * side, c, generator=g) * 4).half()
    scale = torch.cat([torch.full((k,), s) for k, s in zip(channels, scales)])
    encoder_scale = (stored.float() * scale).view(n_images, side, side, c).permute(0, 3, 1, 2)
    return stored, scale, encoder_scale


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3, 7])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_fast_engine_equals_reference(kernel, padding, n_layers):
    """Folded standardization + matrix-product convolution + quadratic-form loss equal the explicit
    standardize -> convolve -> upsample -> MSE: outputs, per-head losses and every gradient."""
    stored, scale, x = _stored_batch()
    c = x.shape[1]
    chans = np.r_[3:20, 30:64]  # two stored ranges, as a selection of taps gives
    model = PEM(len(chans), [head_seed(0, p) for p in PATTERNS], n_layers, kernel, padding).train()
    if n_layers > 1:
        # ReLU's kink turns a round-off difference at a value ~1e-7 into a different gradient; a
        # smooth activation keeps the comparison about the engines (which differ in layer 1 only)
        model.body[2] = torch.nn.ELU()
    g = torch.Generator().manual_seed(1)
    model.in_mean = torch.rand(1, len(chans), 1, 1, generator=g) * 3
    model.in_std = torch.rand(1, len(chans), 1, 1, generator=g) + 0.3
    targets = target_stack(PATTERNS, 40)

    ref = model(x[:, chans])
    loss_ref = ((readout.upsample(ref, 40) - torch.from_numpy(targets)[None]) ** 2).mean(dim=(0, 2, 3))
    grads_ref = torch.autograd.grad(loss_ref.sum(), list(model.parameters()))

    ranges = fast_readout.channel_ranges(chans, c)
    assert ranges == ((3, 20), (30, 64))
    fast = model.forward_stored(stored, ranges, scale[chans], 28)
    loss_fast = fast_readout.UpsampledMSE(targets, fast.shape[-1])(fast)
    grads_fast = torch.autograd.grad(loss_fast.sum(), list(model.parameters()))

    assert fast.shape == ref.shape == (3, 5, model.out_size(28), model.out_size(28))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loss_fast, loss_ref, atol=1e-6, rtol=1e-5)
    top = max(float(gr.abs().max()) for gr in grads_ref)
    for (name, _), a, b in zip(model.named_parameters(), grads_fast, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5 * top, rtol=1e-3, msg=name)


@pytest.mark.parametrize("kernel", [1, 3, 7])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_standardized_readout_is_the_raw_readout_reparametrized(kernel, padding):
    """Padding keeps its meaning under standardization: for any PEM on raw features there is one on
    standardized features with identical outputs, borders included (W' = W * std, b' = b + sum of
    W * mean over taps and channels), in both engines. Padding the *standardized* features with zero
    would pad the raw ones with their mean, and no such weights would exist at padding 1 and 2."""
    stored, scale, x = _stored_batch()
    c = x.shape[1]
    g = torch.Generator().manual_seed(3)
    mean, std = torch.rand(1, c, 1, 1, generator=g) * 3 + 1, torch.rand(1, c, 1, 1, generator=g) + 0.3
    raw = PEM(c, [head_seed(0, "H"), head_seed(0, "G")], 1, kernel, padding).eval()
    standardized = PEM(c, [head_seed(1, "H"), head_seed(1, "G")], 1, kernel, padding).eval()
    standardized.in_mean, standardized.in_std = mean, std
    with torch.no_grad():
        raw.body[0].bias.copy_(torch.randn(2, generator=g))
        w = raw.body[0].weight
        standardized.body[0].weight.copy_(w * std.view(1, c, 1, 1))
        standardized.body[0].bias.copy_(raw.body[0].bias + (w * mean.view(1, c, 1, 1)).sum((1, 2, 3)))
        expected = raw(x)
        assert expected.shape[-1] == 28 + 2 * padding - kernel + 1
        torch.testing.assert_close(standardized(x), expected, atol=1e-4, rtol=1e-4)
        fast = standardized.forward_stored(stored, ((0, c),), scale, 28)
        torch.testing.assert_close(fast, expected, atol=1e-4, rtol=1e-4)


def test_first_layer_matrix_folds_the_affine_maps():
    stored, scale, x = _stored_batch(channels=(5, 3), scales=(2.0, 0.5))
    model = PEM(8, [1, 2], kernel=3)
    model.in_mean, model.in_std = torch.rand(1, 8, 1, 1) * 5, torch.rand(1, 8, 1, 1) + 0.1
    w, offset = model.first_layer_matrix(scale)
    assert w.shape == (8, 9 * 2) and offset.shape == (18,)
    std_features = ((x - model.in_mean) / model.in_std).permute(0, 2, 3, 1).reshape(-1, 8)
    wm = model.body[0].weight.permute(1, 2, 3, 0).reshape(8, 18)
    torch.testing.assert_close(stored.float().reshape(-1, 8) @ w - offset, std_features @ wm, atol=1e-4, rtol=1e-4)


def test_upsampled_mse_and_bilinear_matrix():
    a = fast_readout.bilinear_matrix(26, 224)
    p = torch.rand(4, 3, 26, 26, dtype=torch.float64)
    torch.testing.assert_close(a @ p @ a.t(), readout.upsample(p, 224), atol=1e-12, rtol=0)
    targets = target_stack(("H", "G", "VS"), 224)
    explicit = ((readout.upsample(p, 224) - torch.from_numpy(targets).double()) ** 2).mean(dim=(0, 2, 3))
    torch.testing.assert_close(fast_readout.UpsampledMSE(targets, 26)(p).double(), explicit, atol=1e-6, rtol=1e-6)


def test_column_chunks_cover_the_selection_once():
    ranges = ((3, 20), (30, 64), (100, 101))
    chunks = fast_readout._column_chunks(ranges, 10)
    assert [(c0, c1) for c0, c1, _ in chunks] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 52)]
    stored = [a + i for c0, c1, parts in chunks for a, e, o in parts for i in range(e - a)]
    assert stored == list(range(3, 20)) + list(range(30, 64)) + [100]
    for c0, c1, parts in chunks:
        assert sum(e - a for a, e, _ in parts) == c1 - c0 and parts[0][2] == 0


def test_float_blocks_split_large_batches(monkeypatch):
    """Blocks of a few images and a chunk of channels reproduce the whole product."""
    stored, scale, _ = _stored_batch(n_images=5, side=8, channels=(30, 34))
    w = torch.randn(64, 7)
    whole = stored.float().reshape(-1, 64) @ w
    monkeypatch.setattr(fast_readout, "BLOCK_FLOATS", 64 * 8)  # an image is > 4 blocks wide: channels split
    y = fast_readout.stored_product(w, stored, ((0, 64),))
    torch.testing.assert_close(y, whole, atol=1e-4, rtol=1e-5)
    blocks = list(fast_readout._float_blocks(fast_readout.as_batch(stored), ((0, 64),)))
    assert len(blocks) > 5 and all(b.shape[0] == 64 for _r, _c, b in blocks)


def test_trained_readout_same_spc_as_reference(vgg_features):
    """Training by the fast engine gives the reference engine's SPC (round-off may differ, not results)."""
    spec = ReadoutSpec(epochs=3, batch_size=4)
    fast = train_readout(vgg_features, PATTERNS, spec, IMAGE_SIZE, scaling="channel", use_cache=False)
    ref = train_readout(vgg_features, PATTERNS, spec, IMAGE_SIZE, scaling="channel", use_cache=False,
                        engine="reference")
    np.testing.assert_allclose(fast.history, ref.history, rtol=1e-3)
    a, _ = evaluate(fast, vgg_features, IMAGE_SIZE)
    b, _ = evaluate(ref, vgg_features, IMAGE_SIZE)
    spc_a, spc_b = a.groupby("pattern").spc.mean(), b.groupby("pattern").spc.mean()
    assert spc_a.notna().all()
    assert (spc_a - spc_b).abs().max() <= 0.01, (spc_a - spc_b)


def test_unknown_engine(vgg_features):
    with pytest.raises(ValueError, match="engine"):
        train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE, engine="turbo", use_cache=False)


def test_damaged_readout_is_retrained(vgg_features, monkeypatch):
    first = train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE)
    weights = readout.paths.cache_dir() / "readouts" / f"{first.key}.pt"
    blob = bytearray(weights.read_bytes())
    blob[-64:] = bytes(64)  # same size, other bytes
    weights.write_bytes(bytes(blob))
    monkeypatch.setattr(readout.cache, "_VERIFIED", {})
    with pytest.warns(UserWarning, match=f"{first.key}.pt is damaged"):
        again = train_readout(vgg_features, ("H",), SPEC, IMAGE_SIZE)
    assert again.history == first.history
    s1, s2 = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_evaluation_is_cached(vgg_features, monkeypatch):
    r = train_readout(vgg_features, PATTERNS, SPEC, IMAGE_SIZE)
    rows, low = evaluate(r, vgg_features, IMAGE_SIZE, batch_size=3)

    def never(*a, **k):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(readout, "_evaluate", never)
    rows2, low2 = evaluate(r, vgg_features, IMAGE_SIZE, batch_size=3)
    pd.testing.assert_frame_equal(rows, rows2)
    assert np.array_equal(low, low2) and low2.dtype == np.float16
    with pytest.raises(AssertionError, match="evaluated again"):
        evaluate(r, vgg_features, IMAGE_SIZE, batch_size=4)  # another batch size is another entry
