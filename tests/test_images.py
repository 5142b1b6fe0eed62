"""Image sources (synthetic, dead leaves, shipped photos, dataset folders) and the cached sets."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posenc_utils.engine import images
from posenc_utils.primitives.datasets import image_folder
from posenc_utils.engine.images import build_image_set, read_rgb
from posenc_utils.models.profiles import ImageSetSpec


def write_mixed_images(folder: Path, n_good: int, seed: int = 0, broken: bool = True) -> list[str]:
    """``n_good`` small images of mixed modes/formats, plus (optionally) one corrupt 'broken.jpg'."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n_good):
        h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        kind = i % 4
        if kind == 0:
            im, name = Image.fromarray(rgb), f"img{i:02d}.jpg"
        elif kind == 1:
            im, name = Image.fromarray(rgb[..., 0]), f"img{i:02d}.png"  # grayscale "L"
        elif kind == 2:
            im, name = Image.fromarray(np.dstack([rgb, rgb[..., :1]])), f"img{i:02d}.png"  # RGBA
        else:
            im, name = Image.fromarray(rgb).convert("P"), f"img{i:02d}.png"  # palette
        im.save(folder / name)
        names.append(name)
    if broken:
        (folder / "broken.jpg").write_bytes(b"this is not an image \x00\x01\x02" * 10)
    (folder / "notes.txt").write_text("not an image extension: ignored")
    return names


# ---------------------------------------------------------------- generators


def test_synthetic_images():
    black = images.synthetic_image("black", 32)
    white = images.synthetic_image("white", 32)
    assert black.shape == white.shape == (32, 32, 3)
    assert black.dtype == white.dtype == np.uint8
    assert (black == 0).all() and (white == 255).all()
    noise = images.synthetic_image("noise", 64, seed=1)
    assert noise.shape == (64, 64, 3) and noise.dtype == np.uint8
    assert abs(noise.mean() - 127.5) < 5  # N(0.5, 0.25) clipped to [0, 1]
    assert 50 < noise.std() < 70  # 0.25 * 255 ~ 64, a little less after clipping
    assert np.array_equal(noise, images.synthetic_image("noise", 64, seed=1))
    assert not np.array_equal(noise, images.synthetic_image("noise", 64, seed=2))
    with pytest.raises(ValueError, match="unknown synthetic"):
        images.synthetic_image("grey", 8)


def test_dead_leaves_deterministic():
    a = images.dead_leaves_image(32, np.random.default_rng(5))
    b = images.dead_leaves_image(32, np.random.default_rng(5))
    c = images.dead_leaves_image(32, np.random.default_rng(6))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() > 5, "a dead-leaves image is not flat"


def _dead_leaves_reference(size, rng):
    """The first, plain implementation (full coordinate grids, shading everywhere): the optimized
    generator must draw and paint exactly the same images (cached sets depend on it)."""
    from scipy.ndimage import gaussian_filter

    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(0.1, 0.9, 3)
    rmin, rmax = 0.02 * size, 0.5 * size
    u = rng.random(int(rng.integers(300, 700)))
    for r in (rmin**-2 - u * (rmin**-2 - rmax**-2)) ** -0.5:
        cy, cx = rng.uniform(-0.1, 1.1, 2) * size
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        theta = rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        a, b = r, r * rng.uniform(0.4, 1.0)
        u_, v_ = dx * c + dy * s, -dx * s + dy * c
        if rng.random() < 0.7:
            mask = (u_ / a) ** 2 + (v_ / b) ** 2 <= 1
        else:
            mask = (np.abs(u_) <= a * 0.8) & (np.abs(v_) <= b * 0.8)
        colour = np.clip(rng.normal(0.5, 0.22, 3), 0, 1).astype(np.float32)
        shade = np.ones_like(u_)
        if rng.random() < 0.5:
            freq = rng.uniform(0.05, 0.4)
            shade = shade + 0.25 * np.sin(freq * u_ + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            shade = shade + 0.3 * (v_ / max(b, 1.0))
        patch = colour[None, None, :] * shade[..., None]
        img[y0:y1, x0:x1][mask] = patch[mask]
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.2:
        img = gaussian_filter(img, sigma=(sigma, sigma, 0))
    img += rng.normal(0, rng.uniform(0.0, 0.03), img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("size", [32, 96])
def test_dead_leaves_equal_the_plain_implementation(size):
    fast, plain = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(4):  # a sequence: each image must also leave the generator where the plain one does
        assert np.array_equal(images.dead_leaves_image(size, fast), _dead_leaves_reference(size, plain))


def test_photo_crops():
    crops = list(images.photo_crops(3, 32, seed=0))
    assert len(crops) == 3
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    again = list(images.photo_crops(3, 32, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(crops, again))
    assert not np.array_equal(crops[0], crops[1])


def test_shipped_photos_exist():
    found = images.shipped_photo_paths()
    names = {p.name for p in found}
    assert {"astronaut.png", "chelsea.png", "coffee.png"} <= names
    assert all(p.exists() for p in found)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB", "LA"])
def test_read_rgb_converts_modes(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    if mode == "L":
        im = Image.fromarray(rgb[..., 0])
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([rgb, np.full((9, 13, 1), 255, np.uint8)]))
    elif mode == "LA":
        im = Image.fromarray(rgb[..., 0]).convert("LA")
    else:
        im = Image.fromarray(rgb).convert(mode)
    path = tmp_path / f"x_{mode}.png"
    im.save(path)
    out = read_rgb(path)
    assert out.shape == (9, 13, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out == rgb[..., :1]).all()  # grey copied to all three channels
    if mode in ("RGB", "RGBA"):  # opaque alpha: colours unchanged
        assert np.array_equal(out, rgb)


def test_read_rgb_16bit_grayscale(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")
    out = read_rgb(tmp_path / "g16.png")
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[..., 0], ramp / 257.0, atol=1.5)


def test_read_rgb_composites_transparency_on_white(tmp_path):
    im = Image.fromarray(np.zeros((4, 4, 4), np.uint8))  # black, fully transparent
    im.save(tmp_path / "t.png")
    assert (read_rgb(tmp_path / "t.png") == 255).all()


def test_resize():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = images.resize(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert images.resize(out, 16) is out


# ---------------------------------------------------------------- dataset folders


def test_folder_image_set_skips_broken_file(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    monkeypatch.setenv("POSENC_DATA_ROOT", str(root))
    names = write_mixed_images(root / "DUTS-TR" / "DUTS-TR-Image", n_good=5)
    spec = ImageSetSpec("DUTS-TR", "folder", n=None, dataset="DUTS-TR")
    with pytest.warns(UserWarning, match="skipped 1") as rec:
        s = build_image_set(spec, 24)
    assert any("broken.jpg" in str(w.message) for w in rec)
    assert s.n == 5 == len(names)
    arr = s.load()
    assert arr.shape == (5, 24, 24, 3) and arr.dtype == np.uint8
    # the images are the files in name order, read and resized
    files = sorted(names)  # broken.jpg sorts first and is the one dropped
    for i, name in enumerate(files):
        expected = images.resize(read_rgb(root / "DUTS-TR" / "DUTS-TR-Image" / name), 24)
        assert np.array_equal(arr[i], expected), name
    assert "DUTS-TR" in s.description
    # the cached (trimmed) entry is reused: no warning, same data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = build_image_set(spec, 24)
    assert again.key == s.key and again.n == 5


def test_folder_images_direct(tmp_path):
    folder = tmp_path / "imgs"
    write_mixed_images(folder, n_good=3)
    cap, fill = images.folder_images(folder, 16)
    assert cap == 4  # 3 images + broken.jpg (notes.txt is not an image)
    out = np.zeros((cap, 16, 16, 3), np.uint8)
    with pytest.warns(UserWarning, match="skipped 1 unreadable of 4"):
        kept = fill(out)
    assert kept == 3
    cap2, _ = images.folder_images(folder, 16, n=2)
    assert cap2 == 2


def test_folder_of_only_broken_files_raises(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"junk")
    _, fill = images.folder_images(folder, 16)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="could be read"):
        fill(np.zeros((1, 16, 16, 3), np.uint8))


def test_missing_dataset_folder_message(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as e:
        image_folder("DUTS-TR")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "DUTS-TR") in msg
    assert "DUTS-TR-Image" in msg
    assert "saliencydetection.net" in msg
    assert "POSENC_DATA_ROOT" in msg


def test_empty_dataset_folder_message(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    (tmp_path / "DUTS-TR" / "DUTS-TR-Image").mkdir(parents=True)
    (tmp_path / "DUTS-TR" / "DUTS-TR-Image" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="DUTS-TR-Image"):
        image_folder("DUTS-TR")
    with pytest.raises(FileNotFoundError, match="holds no images"):
        images.folder_images(tmp_path / "DUTS-TR" / "DUTS-TR-Image", 16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        images.folder_images(tmp_path / "absent", 16)


def test_missing_dataset_message_with_explicit_root(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path / "env-root"))
    with pytest.raises(FileNotFoundError) as e:
        image_folder("DUTS-TR", root=tmp_path / "given-root")
    assert str(tmp_path / "env-root") not in str(e.value)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        image_folder("ImageNet")


def test_pascal_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    write_mixed_images(tmp_path / "PASCAL-S" / "Imgs", n_good=3, broken=False)
    assert image_folder("PASCAL-S") == tmp_path / "PASCAL-S" / "Imgs"
    s = build_image_set(ImageSetSpec("PASCAL-S", "folder", n=None, dataset="PASCAL-S"), 16)
    assert s.n == 3 and s.load().shape == (3, 16, 16, 3)
    # explicit root argument; images directly inside PASCAL-S/
    other = tmp_path / "other"
    write_mixed_images(other / "PASCAL-S", n_good=2, broken=False)
    assert image_folder("PASCAL-S", root=other) == other / "PASCAL-S" / "."


def test_folder_n_limits_the_set(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    write_mixed_images(tmp_path / "DUTS-TR" / "DUTS-TR-Image", n_good=4, broken=False)
    s = build_image_set(ImageSetSpec("DUTS-TR", "folder", n=2, dataset="DUTS-TR"), 16)
    assert s.n == 2


def test_folder_key_changes_when_files_change(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    folder = tmp_path / "PASCAL-S" / "Imgs"
    write_mixed_images(folder, n_good=2, broken=False)
    spec = ImageSetSpec("PASCAL-S", "folder", n=None, dataset="PASCAL-S")
    a = build_image_set(spec, 16)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "zzz_new.png")
    b = build_image_set(spec, 16)
    assert a.key != b.key and b.n == 3


# ---------------------------------------------------------------- cached sets


def test_build_image_set_is_cached(monkeypatch):
    spec = ImageSetSpec("dead_leaves", "dead_leaves", n=3, seed=0)
    a = build_image_set(spec, 32)
    assert a.n == 3 and a.size == 32
    assert a.path.exists() and a.path.parent == Path(os.environ["POSENC_CACHE_DIR"]) / "images"
    data = np.array(a.load())
    assert data.shape == (3, 32, 32, 3) and data.dtype == np.uint8
    # the set is the generator's output with the spec's seed
    rng = np.random.default_rng(0)
    assert np.array_equal(data[0], images.dead_leaves_image(32, rng))
    assert np.array_equal(data[1], images.dead_leaves_image(32, rng))

    def boom(*a, **k):
        raise AssertionError("regenerated a cached image set")

    monkeypatch.setattr(images, "dead_leaves_image", boom)
    b = build_image_set(spec, 32)
    assert (b.key, b.path, b.n) == (a.key, a.path, a.n)
    assert np.array_equal(np.asarray(b.load()), data)
    f = b.as_float(slice(0, 2))
    assert f.dtype == np.float32 and f.shape == (2, 32, 32, 3) and 0 <= f.min() and f.max() <= 1
    # a different seed, size or count is a different entry
    with pytest.raises(AssertionError, match="regenerated"):
        build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=3, seed=1), 32)


@pytest.mark.parametrize("kind", ["black", "white", "noise"])
def test_synthetic_sets(kind):
    s = build_image_set(ImageSetSpec(kind, kind, seed=1), 16)
    assert s.n == 1
    assert np.array_equal(s.load()[0], images.synthetic_image(kind, 16, 1))


def test_photo_crop_set():
    s = build_image_set(ImageSetSpec("photos", "photo_crops", n=2, seed=3), 24)
    assert s.n == 2
    assert np.array_equal(np.asarray(s.load()), np.stack(list(images.photo_crops(2, 24, 3))))


@pytest.mark.parametrize("size", [15, 8, 0])
def test_build_image_set_too_small(size):
    with pytest.raises(ValueError, match="too small"):
        build_image_set(ImageSetSpec("black", "black"), size)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown image-set kind"):
        build_image_set(ImageSetSpec("x", "mandelbrot"), 16)


def test_describe():
    tr = build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=2), 16)
    te = build_image_set(ImageSetSpec("black", "black"), 16)
    df = images.describe(tr, [te])
    assert list(df["role"]) == ["train", "test"]
    assert list(df["images"]) == [2, 1]


def test_rows_read_without_a_memory_map():
    s = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=5), 32)
    all_ = np.load(s.path)
    assert np.array_equal(s.rows(1, 3), all_[1:3])
    assert np.array_equal(s.rows(3, 99), all_[3:]), "a range past the end stops at the end"
    assert s.rows(0, 5).dtype == np.uint8 and not isinstance(s.rows(0, 5), np.memmap)
