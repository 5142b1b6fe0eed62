"""Notebook 05's scene generators and metrics, against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from posenc_utils.studies import downstream as ds
from posenc_utils.models import scenenet
from posenc_utils.primitives import scenes, task_metrics


def test_sod_scenes_are_seeded_and_centre_biased():
    a = scenes.sod_scene(np.random.default_rng(3), 48)
    b = scenes.sod_scene(np.random.default_rng(3), 48)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8 and set(np.unique(a[1])) <= {0, 1}
    rng = np.random.default_rng(0)
    masks = np.stack([scenes.sod_scene(rng, 48)[1] for _ in range(200)]).astype(float)
    density = masks.mean(axis=0)
    assert density[20:28, 20:28].mean() > 3 * density[:6, :6].mean(), "objects sit near the centre"
    assert 0.04 < masks.mean() < 0.4
    assert density[:4].mean() > 0 and density[:, -4:].mean() > 0, "but not always: position alone does not solve it"


def test_seg_scenes_have_a_vertical_layout():
    rng = np.random.default_rng(0)
    labels = np.stack([scenes.seg_scene(rng, 48)[1] for _ in range(100)])
    top, bottom = labels[:, :8], labels[:, -8:]
    assert (top == 0).mean() > 0.9 and (bottom == 0).mean() < 0.05, "sky above, ground below"
    assert (labels == 2).any(axis=(1, 2)).all(), "every scene has an object"
    assert set(np.unique(labels)) == {0, 1, 2}


def test_mae():
    s = np.array([[[0.0, 1.0], [0.5, 0.5]]])
    m = np.array([[[0, 1], [1, 0]]])
    np.testing.assert_allclose(task_metrics.mean_absolute_error(s, m), [0.25])


def test_f_measure_by_hand():
    # 5 pixels, saliency mean 0.36 -> adaptive threshold 0.72: predicted {0, 1}; ground truth {0, 2}
    s = np.array([[0.9, 0.8, 0.1, 0.0, 0.0]])
    m = np.array([[1, 0, 1, 0, 0]])
    p, r = 1 / 2, 1 / 2
    expected = 1.3 * p * r / (0.3 * p + r)
    np.testing.assert_allclose(task_metrics.f_measure(s, m), [expected])
    # as the SOD benchmarks' code (PySODMetrics): ">= threshold", so an all-zero map marks every pixel
    assert task_metrics.f_measure(np.array([[0.0, 0.0]]), np.array([[1, 0]]))[0] == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1))
    assert task_metrics.f_measure(np.array([[0.2, 0.0]]), np.array([[0, 1]]))[0] == 0.0
    assert task_metrics.max_f_measure(m.astype(float), m) == pytest.approx(1.0)


def test_mean_iou_by_hand():
    labels = np.array([[0, 0, 1, 1, 2]])
    pred = np.array([[0, 1, 1, 1, 2]])
    miou, per = task_metrics.mean_iou(pred, labels, 4)
    np.testing.assert_allclose(per[:3], [1 / 2, 2 / 3, 1.0])
    assert np.isnan(per[3]) and miou == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


# ---------------------------------------------------------------- the network and its padding switch

import dataclasses  # noqa: E402
import warnings  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from standin_data import make_downstream_datasets  # noqa: E402

from posenc_utils.models import encoders  # noqa: E402
from posenc_utils.models.profiles import DownstreamSpec, EncoderSpec, ImageSetSpec, get_profile  # noqa: E402


def test_scenes_go_on_around_the_image():
    """A scene made with a margin is the same kind of scene on a larger canvas: the object lies in the central
    frame, the texture goes on around it, and the labels the network is scored on are the frame's."""
    rng = np.random.default_rng(2)
    image, mask = scenes.sod_scene(rng, 32, margin=10)
    assert image.shape == (52, 52, 3) and mask.shape == (52, 52)
    assert mask[10:42, 10:42].sum() == mask.sum() > 0, "the object lies inside the image"
    assert image[:10].std() > 0.02 * 255, "the scene around the image is textured, not a constant border"
    image, labels = scenes.seg_scene(np.random.default_rng(3), 32, margin=8)
    assert image.shape == (48, 48, 3) and (labels[:8] == 0).mean() > 0.9 and (labels[-8:] == 1).mean() > 0.9
    data = ds.task_data(ImageSetSpec("t", "sod_scenes", n=3, seed=1), 32, margin=10)
    assert data.images.shape == (3, 52, 52, 3) and data.labels.shape == (3, 32, 32) and data.size == 32
    assert np.array_equal(data.frames(), data.images[:, 10:42, 10:42])
    assert np.array_equal(scenenet.frame_inputs(data.images, 10, "none", crop_left=16), data.images[:, :, 16:])
    assert np.array_equal(scenenet.frame_inputs(data.images, 10, "zeros", crop_left=16), data.images[:, 10:42, 26:42])


def test_resample_is_bilinear_upsampling_without_margin():
    y = torch.randn(2, 3, 4, 5)
    for s in (2, 4):
        ours = scenenet.resample_to_image(y, (s - 1) / 2, s, 0, (4 * s, 5 * s))
        ref = F.interpolate(y, size=(4 * s, 5 * s), mode="bilinear", align_corners=False)
        assert torch.allclose(ours, ref, atol=1e-5)


def test_resample_puts_each_cell_where_it_belongs():
    """A map whose cell j holds its own input position (offset + stride * j) resamples to each
    image pixel's own coordinate, for any offset, stride and margin (the unpadded network's case)."""
    offset, stride, margin, n = 13.5, 8.0, 20, 9
    cells = offset + stride * torch.arange(n, dtype=torch.float64) - margin  # image coordinate of each cell
    y = cells.view(1, 1, 1, n).expand(1, 1, 2, n).contiguous()
    out = scenenet.resample_to_image(y, offset, stride, margin, (2, 40))[0, 0, 0]
    assert torch.allclose(out, torch.arange(40, dtype=torch.float64))


def test_geometry_by_hand():
    padded, unpadded = scenenet.SceneNet(2, 1, "zeros"), scenenet.SceneNet(2, 1, "none")
    assert padded.geometry() == [(0, 1), (0.5, 2), (1.5, 4), (3.5, 8), (7.5, 16)]
    # without padding each 3x3 convolution moves the first output one input step (at its stride) inwards
    assert unpadded.geometry() == [(2, 1), (2 + 0.5 + 2 * 2, 2), (6.5 + 1 + 3 * 4, 4), (19.5 + 2 + 3 * 8, 8),
                                   (45.5 + 4 + 3 * 16, 16)]
    assert padded.margin() == 0 and unpadded.margin() == 98
    four = scenenet.SceneNet(2, 1, "none", blocks=4)
    assert four.geometry() == unpadded.geometry()[:4] and four.margin() == 46 and len(four.side) == 4


def test_padding_switch_removes_every_source_of_position():
    """On a constant scene, a network without padding is translation-equivariant with nothing to break
    the symmetry: its output over the image is constant. With zero padding the borders show."""
    torch.manual_seed(0)
    for pad in ("zeros", "none"):
        net = scenenet.SceneNet(4, 2, pad, seed=3).eval()
        x = torch.full((1, 3, 40 + 2 * net.margin(), 48 + 2 * net.margin()), 0.7)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.padding == ((1, 1) if pad == "zeros" and c.kernel_size == (3, 3) else (0, 0)) for c in convs)
        with torch.no_grad():
            out = net(x)
        assert out.shape == (1, 2, 40, 48)
        spread = float(out.std(dim=(2, 3)).max())
        assert (spread < 1e-5) if pad == "none" else (spread > 1e-3), (pad, spread)


def test_same_seed_same_initial_weights_for_both_paddings():
    a, b = scenenet.SceneNet(4, 1, "zeros", seed=5), scenenet.SceneNet(4, 1, "none", seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.fuse.weight, scenenet.SceneNet(4, 1, "zeros", seed=6).fuse.weight)


# ---------------------------------------------------------------- training, checkpoints, encoders


TINY = DownstreamSpec(width=2, image_size=32, epochs=2, batch_size=4,
                      sod_train=ImageSetSpec("s", "sod_scenes", n=8, seed=0),
                      sod_tests=(ImageSetSpec("t", "sod_scenes", n=3, seed=1),),
                      seg_train=ImageSetSpec("g", "seg_scenes", n=8, seed=0),
                      seg_test=ImageSetSpec("u", "seg_scenes", n=3, seed=1))


def test_training_is_cached_and_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    data = ds.task_data(TINY.sod_train, 32, ds.scene_margin(TINY))
    first = ds.train_task_model(data, "zeros", TINY, seed=0)
    assert len(first.losses) == 2 and all(np.isfinite(first.losses))
    files = sorted(p.name for p in (tmp_path / "downstream").iterdir() if p.suffix not in (".lock", ".verified"))
    assert files == [f"model-{first.key}.json", f"model-{first.key}.pt"], files  # no temporary file left
    again = ds.train_task_model(data, "zeros", TINY, seed=0)
    assert again.losses == first.losses
    assert all(torch.equal(a, b) for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()))
    other = ds.train_task_model(data, "none", TINY, seed=0)
    assert other.key != first.key and other.net.margin() > 0
    with pytest.raises(ValueError, match="px of scene around each image"):  # a set made without the scene around it
        ds.train_task_model(ds.task_data(TINY.sod_train, 32), "none", TINY, seed=0)
    # a damaged checkpoint is reported and trained again, never loaded
    path = tmp_path / "downstream" / f"model-{first.key}.pt"
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="damaged"):
        redone = ds.train_task_model(data, "zeros", TINY, seed=0)
    assert redone.losses == first.losses


def test_networks_trained_side_by_side_are_those_trained_alone_on_one_thread(tmp_path, monkeypatch):
    """train_all trains two networks at once, one thread each: the same weights as each trained alone, and the
    trainer restores the process's thread count."""
    import torch

    from posenc_utils.models import profiles

    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("POSENC_DEVICE", "cpu")
    profile = profiles.get_profile("quick").with_overrides(downstream=TINY)
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "together"))
    threads = torch.get_num_threads()
    together = ds.train_all(profile).models
    assert torch.get_num_threads() == threads and all(m.fresh for m in together.values())
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "alone"))
    for (task, pad), model in together.items():
        data = ds.task_data(TINY.sod_train if task == "sod" else TINY.seg_train, TINY.image_size, ds.scene_margin(TINY))
        alone = ds.train_task_model(data, pad, TINY, seed=profile.seed)
        assert alone.key == model.key and alone.losses == model.losses, (task, pad)
        assert all(torch.equal(a, b) for a, b in zip(alone.net.state_dict().values(), model.net.state_dict().values()))
    assert not any(m.fresh for m in ds.train_all(profile).models.values())  # all four are read back from the cache


def test_trained_network_is_a_probe_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    model = ds.train_task_model(ds.task_data(TINY.seg_train, 32, ds.scene_margin(TINY)), "zeros", TINY, seed=0)
    spec = model.encoder_spec()
    assert spec.name == "vgg16bn_w2" and spec.weights == f"seg:{model.key}"
    assert spec.label == "VGG16-BN/32 (segmentation-trained here)"
    enc = encoders.build_encoder(spec, seed=0, image_size=32)
    assert enc.channels == (2, 4, 8, 16, 16) and enc.tap_names == scenenet.TAP_NAMES
    x = torch.rand(2, 3, 32, 32)
    taps, h = enc(x), scenenet.scene_normalize(x)
    with torch.no_grad():
        for i, layer in enumerate(model.net.features):
            h = layer(h)
            if str(i) == model.net.taps[-1]:
                break
    assert torch.allclose(taps[-1], h, atol=1e-5)
    untrained = encoders.build_encoder(EncoderSpec("vgg16bn_w2", "random"), seed=0, image_size=32)
    assert not torch.allclose(untrained(x)[-1], taps[-1])
    with pytest.raises(encoders.WeightsNotFoundError, match="notebook 05"):
        encoders.build_encoder(EncoderSpec("vgg16bn_w2", "sod:0123456789abcdef"), seed=0, image_size=32)
    with pytest.raises(ValueError, match="sod:<key>"):
        encoders.build_encoder(EncoderSpec("vgg16bn_w2", "imagenet"), seed=0, image_size=32)


def test_table5_returns_what_padding_gain_and_crop_shift_read_in_any_order(tmp_path, monkeypatch):
    """No hidden channel: the predictions come back from table5 (or predict_all), any call may come
    first, and the tables carry nothing in ``attrs``."""
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    profile = get_profile("quick").with_overrides(downstream=dataclasses.replace(TINY, epochs=1))
    run = ds.train_all(profile)
    shift = ds.crop_shift(run, run.tests["sod"][0], 16)  # before any table5
    gain = ds.padding_gain(run, ds.predict_all(run))
    t5 = ds.table5(profile, run)
    assert not hasattr(run, "predictions") and t5.table.attrs == {} and t5.per_image.attrs == {}
    assert sorted(t5.runs) == sorted((task, pad, t.name) for task, pad in run.models for t in run.tests[task])
    pd.testing.assert_frame_equal(ds.padding_gain(run, t5.runs), gain)
    pd.testing.assert_frame_equal(ds.crop_shift(run, run.tests["sod"][0], 16, t5.runs), shift)
    assert len(t5.per_image) == 2 * 3 and set(t5.per_image.task) == {"sod"}
    assert list(gain.metric) == ["F-measure (adaptive)", "MAE", "mIoU"]


def test_padding_gain_is_over_every_training_seed(tmp_path, monkeypatch):
    """Claim 9's gain: the mean of each seed's gain on the same images; its interval holds the bootstrap over images
    of the seeds' mean and the t-interval over the seeds' gains; with one seed it is the bootstrap alone."""
    from posenc_utils.primitives.metrics import t_interval

    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    profile = get_profile("quick").with_overrides(downstream=dataclasses.replace(TINY, epochs=1, seeds=2))
    run = ds.train_all(profile)
    assert run.seeds() == [0, 1] and len(run.trained) == 8 and run.models == run.networks(0)
    assert list(run.models) == [(t, p) for t in ds.TASKS for p in ds.PADDINGS], "the tables' order, not training's"
    assert all(run.networks(1)[k].key != m.key for k, m in run.models.items())  # the other seed: other networks
    gain = ds.padding_gain(run, ds.predict_all(run)).set_index("metric")
    alone = [ds.padding_gain(run.only(s), ds.predict_all(run.only(s))).set_index("metric") for s in (0, 1)]
    assert (alone[0].n_seeds == 1).all() and alone[0].seed_sd.isna().all()
    for metric in gain.index:
        per_seed = np.array([a.loc[metric, "gain"] for a in alone])
        assert gain.loc[metric, "gain"] == pytest.approx(per_seed.mean())
        lo, hi = t_interval(per_seed)
        assert gain.loc[metric, "ci_low"] <= min(lo, gain.loc[metric, "gain"])
        assert gain.loc[metric, "ci_high"] >= max(hi, gain.loc[metric, "gain"])
        assert gain.loc[metric, "n_seeds"] == 2 and gain.loc[metric, "seed_sd"] == pytest.approx(per_seed.std(ddof=1))
    sod = run.tests["sod"][0]
    first = ds.predict_all(run)
    diff = ds.f_measure(first[("sod", "zeros", sod.name)], sod.labels) - ds.f_measure(first[("sod", "none", sod.name)],
                                                                                     sod.labels)
    assert alone[0].loc["F-measure (adaptive)", "gain"] == pytest.approx(diff.mean())  # one seed: as before
    assert (alone[0].loc["F-measure (adaptive)", ["ci_low", "ci_high"]].to_numpy()
            == np.array(ds._bootstrap(diff, np.mean))).all()


def test_position_signature_is_the_centre_gain_minus_the_anywhere_gain(tmp_path, monkeypatch):
    """Claim 9's position signature: padding's gain on the centre-biased scenes minus its gain on the scenes placed
    anywhere, from the same gains as padding_gain (MAE's sign flipped), with an interval that holds it."""
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    quick = get_profile("quick")
    small = dataclasses.replace(quick.downstream, width=2, epochs=1, seeds=2, batch_size=4,
                                sod_train=dataclasses.replace(quick.downstream.sod_train, n=8),
                                sod_tests=tuple(dataclasses.replace(t, n=4) for t in quick.downstream.sod_tests),
                                seg_train=dataclasses.replace(quick.downstream.seg_train, n=4),
                                seg_test=dataclasses.replace(quick.downstream.seg_test, n=2))
    profile = quick.with_overrides(downstream=small)
    run = ds.train_all(profile)
    preds = ds.predict_all(run)
    gain = ds.padding_gain(run, preds).set_index(["test_set", "metric"])
    sig = ds.position_signature(profile, run, preds).set_index("metric")
    centre, anywhere = (t.name for t in small.sod_tests)
    for metric, sign in (("F-measure (adaptive)", 1), ("MAE", -1)):
        expected = sign * (gain.loc[(centre, metric), "gain"] - gain.loc[(anywhere, metric), "gain"])
        assert sig.loc[metric, "signature"] == pytest.approx(expected)
        assert sig.loc[metric, "ci_low"] <= sig.loc[metric, "signature"] <= sig.loc[metric, "ci_high"]
        assert sig.loc[metric, "n_seeds"] == 2
    assert ds.position_signature(get_profile("quick").with_overrides(downstream=TINY), ds.train_all(
        get_profile("quick").with_overrides(downstream=dataclasses.replace(TINY, epochs=1))), {}).empty


def test_voc_labels_and_void_are_read_and_ignored():
    labels = np.array([[0, 1], [255, 2]])
    pred = np.array([[0, 1], [2, 1]])
    conf = task_metrics.confusion(pred, labels, 3)
    assert conf.sum() == 3, "the void pixel is not counted"
    miou, iou = task_metrics.mean_iou(pred, labels, 3)
    assert iou.tolist() == [1.0, 0.5, 0.0] and miou == pytest.approx(0.5)


# ---------------------------------------------------------------- the paper profile on tiny folders


def test_paper_downstream_reads_the_paper_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(make_downstream_datasets(tmp_path / "raw")))
    monkeypatch.setenv("POSENC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CI", "1")
    profile = get_profile("paper", downstream={"width": 2, "image_size": 32, "epochs": 1, "batch_size": 4})
    assert ds.missing_datasets(profile.downstream) == []
    run = ds.train_all(profile)
    assert [t.name for t in run.tests["sod"]] == ["ECSSD", "PASCAL-S", "DUT-OMRON"]
    seg = run.tests["seg"][0]
    assert seg.n == 2 and len(seg.classes) == 21 and set(np.unique(seg.labels)) <= {0, 1, 15, 255}
    assert run.models[("seg", "zeros")].net.n_out == 21
    msra = ds.task_data(profile.downstream.sod_train, 32, ds.scene_margin(profile.downstream))
    assert msra.n == 6 and set(np.unique(msra.labels)) == {0, 1} and msra.images.shape[1] == 32 + 2 * msra.margin
    table = ds.table5(profile, run).table
    ecssd = table[(table.test_set == "ECSSD") & (table.metric == "MAE") & (table.padding == "zero padding")]
    assert ecssd.paper.iloc[0] == pytest.approx(0.17) and ecssd.paper_test_set.iloc[0] == "ECSSD"
    voc = table[table.metric == "mIoU"].set_index("padding")
    assert voc.loc["no padding", "paper"] == pytest.approx(0.123) and voc.value.between(0, 1).all()


def test_missing_downstream_folders_are_named(tmp_path, monkeypatch):
    root = make_downstream_datasets(tmp_path / "raw")
    import shutil

    shutil.rmtree(root / "DUT-OMRON")
    (root / "ECSSD" / "ground_truth_mask").rename(root / "ECSSD" / "elsewhere")
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    missing = ds.missing_datasets(get_profile("paper").downstream)
    assert len(missing) == 2
    assert "DUT-OMRON" in missing[1] and "pixelwiseGT-new-PNG" in missing[1] and "saliencydetection.net" in missing[1]
    assert "ECSSD images with their masks" in missing[0] and "ground_truth_mask" in missing[0]
    with pytest.raises(FileNotFoundError, match="notebook 05 cannot run"):
        ds.train_all(get_profile("paper"))


def test_max_f_measure_equals_the_threshold_sweep():
    """The histogram form gives what sweeping every threshold over every image gives."""
    rng = np.random.default_rng(1)
    masks = rng.random((5, 12, 12)) < 0.3
    sal = np.clip(masks * 0.4 + rng.random((5, 12, 12)) * 0.6, 0, 1)
    sal[0, 0, :4] = [0.5, 1 / 256, 255 / 256, 1.0]  # values on thresholds exactly
    masks[4] = False  # an image without object: recall 0
    best = 0.0
    for t in np.linspace(0, 1, 256, endpoint=False)[1:]:
        p = [np.logical_and(s >= t, m).sum() / (s >= t).sum() if (s >= t).any() else 0.0 for s, m in zip(sal, masks)]
        r = [np.logical_and(s >= t, m).sum() / m.sum() if m.any() else 0.0 for s, m in zip(sal, masks)]
        pm, rm = np.mean(p), np.mean(r)
        if pm + rm > 0:
            best = max(best, 1.3 * pm * rm / (0.3 * pm + rm))
    assert task_metrics.max_f_measure(sal, masks) == pytest.approx(best, abs=1e-12)
