"""One image: safe opening and the same normalisation for training and prediction."""

import gc
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import images
from cnnlab.data.images import ImageError, load_array, normalize, open_image
from helpers import image_bytes

WHITE = [255, 255, 255]


def encode(img: Image.Image, fmt: str, **save_args) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose (valid) header claims `width` x `height` RGB pixels but holds almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def noise(height=24, width=24, channels=3, seed=0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------------------- normalisation


def test_exif_orientation_is_applied():
    # Landscape 40x20 photo, left half red, right half blue, tagged "rotate 90 degrees clockwise".
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(array), "JPEG", exif=exif, quality=95)

    img = open_image(data)
    assert img.size == (20, 40)  # (width, height): now portrait
    out = normalize(img, (40, 20))
    assert out.shape == (40, 20, 3) and out.dtype == np.uint8
    # The left (red) half is now on top, the right (blue) half at the bottom.
    assert np.all(np.abs(out[:15].astype(int) - (255, 0, 0)) <= 12)
    assert np.all(np.abs(out[25:].astype(int) - (0, 0, 255)) <= 12)


def test_no_exif_leaves_orientation_alone():
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = 255
    out = load_array(image_bytes(array), (20, 40))
    np.testing.assert_array_equal(out, array)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:, :4, 3] = 0  # ... fully transparent on the left half
    rgba[:, 4:, 3] = 255
    out = load_array(image_bytes(rgba), (8, 8))
    assert out[:, :4].tolist() == [[WHITE] * 4] * 8
    assert out[:, 4:].tolist() == [[[255, 0, 0]] * 4] * 8


def test_half_transparent_pixels_blend_with_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128  # half-transparent black
    out = load_array(image_bytes(rgba), (4, 4))
    assert np.all(np.abs(out.astype(int) - 127) <= 1)


def test_la_is_composited_on_white():
    la = Image.new("LA", (6, 6), (0, 0))  # black, fully transparent
    out = load_array(encode(la, "PNG"), (6, 6), color_mode="grayscale")
    assert out.shape == (6, 6, 1)
    assert np.all(out == 255)
    opaque = load_array(encode(Image.new("LA", (6, 6), (30, 255)), "PNG"), (6, 6), color_mode="grayscale")
    assert np.all(opaque == 30)


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 1)
    out = load_array(encode(img, "PNG", transparency=0), (4, 4))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 1].tolist() == WHITE  # palette index 0 is transparent, not black
    gif = load_array(encode(img, "GIF", transparency=0), (4, 4))
    assert gif[1, 1].tolist() == WHITE and gif[0, 0].tolist() == [255, 0, 0]


def test_palette_without_transparency_keeps_its_colours():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    img.putpixel((3, 2), 1)
    out = load_array(encode(img, "PNG"), (4, 4))
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[2, 3].tolist() == [200, 100, 50]


def test_rgb_and_grayscale_with_a_transparent_colour_key():
    rgb = load_array(encode(Image.new("RGB", (4, 4), (10, 20, 30)), "PNG", transparency=(10, 20, 30)), (4, 4))
    assert np.all(rgb == 255)
    gray = load_array(encode(Image.new("L", (4, 4), 10), "PNG", transparency=10), (4, 4), color_mode="grayscale")
    assert np.all(gray == 255)


@pytest.mark.parametrize("fmt", ["memory", "JPEG", "TIFF"])
def test_cmyk_becomes_rgb_with_the_right_colours(fmt):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    cmyk.paste((255, 0, 255, 0), (0, 0, 4, 8))  # full cyan and yellow: green on the left half
    source = cmyk if fmt == "memory" else encode(cmyk, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    out = load_array(source, (8, 8)).astype(int)
    tolerance = 12 if fmt == "JPEG" else 0
    assert np.all(np.abs(out[:, 5:] - (255, 0, 0)) <= tolerance)
    assert np.all(np.abs(out[:, :3] - (0, 255, 0)) <= tolerance)


def test_grayscale_image_in_rgb_mode_has_three_equal_channels():
    gray = noise(10, 12, channels=1)
    out = load_array(image_bytes(gray), (10, 12), color_mode="rgb")
    assert out.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgb_image_in_grayscale_mode_uses_luminance():
    rgb = np.zeros((4, 3, 3), np.uint8)
    rgb[:, 0] = (255, 0, 0)
    rgb[:, 1] = (0, 255, 0)
    rgb[:, 2] = (0, 0, 255)
    out = load_array(image_bytes(rgb), (4, 3), color_mode="grayscale")
    assert out.shape == (4, 3, 1) and out.dtype == np.uint8
    # ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000
    assert [int(v) for v in out[0, :, 0]] == pytest.approx([76, 150, 29], abs=1)


@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_16_bit_grayscale_is_scaled_not_clipped(color_mode, channels):
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    img = Image.fromarray(values)
    data = encode(img, "PNG")
    assert open_image(data).mode.startswith("I")
    out = load_array(data, (2, 2), color_mode=color_mode)
    assert out.shape == (2, 2, channels)
    expected = np.array([[0, 128], [255, 4]])
    for c in range(channels):
        np.testing.assert_array_equal(out[..., c], expected)


def test_32_bit_float_image_is_scaled_by_its_range():
    img = Image.fromarray(np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32))
    assert img.mode == "F"
    out = normalize(img, (2, 2), "grayscale")
    np.testing.assert_array_equal(out[..., 0], [[0, 64], [128, 255]])


def test_bilevel_image_is_black_and_white():
    img = Image.new("1", (4, 4), 0)
    img.putpixel((0, 0), 1)
    out = normalize(img, (4, 4), "rgb")
    assert out[0, 0].tolist() == WHITE and out[1, 1].tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------- resizing


@pytest.mark.parametrize("resize_mode", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("color_mode, channels", [("rgb", 3), ("grayscale", 1)])
def test_every_resize_mode_gives_the_requested_shape(resize_mode, color_mode, channels):
    data = image_bytes(noise(30, 50))
    out = load_array(data, (16, 24), color_mode=color_mode, resize_mode=resize_mode)
    assert out.shape == (16, 24, channels) and out.dtype == np.uint8


def test_pad_keeps_the_aspect_ratio_with_white_borders():
    black = np.zeros((20, 40, 3), np.uint8)  # wide image into a square: bars above and below
    out = load_array(image_bytes(black), (32, 32), resize_mode="pad")
    assert out.shape == (32, 32, 3)
    assert np.all(out[:7] == 255) and np.all(out[-7:] == 255)
    assert np.all(out[10:22] == 0)
    tall = load_array(image_bytes(np.zeros((40, 20), np.uint8)), (32, 32), "grayscale", "pad")
    assert np.all(tall[:, :7] == 255) and np.all(tall[:, -7:] == 255) and np.all(tall[:, 10:22] == 0)


def test_crop_cuts_the_centre_and_stretch_squeezes():
    array = np.zeros((20, 60, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:40] = (0, 255, 0)
    array[:, 40:] = (0, 0, 255)
    cropped = load_array(image_bytes(array), (10, 10), resize_mode="crop")
    assert cropped.shape == (10, 10, 3)
    assert np.all(cropped[:, 1:-1] == (0, 255, 0))  # only the green centre is left (edges blend a little)
    assert cropped[..., 0].max() < 64 and cropped[..., 2].max() < 64
    stretched = load_array(image_bytes(array), (10, 30), resize_mode="stretch")
    assert stretched[:, 2].tolist() == [[255, 0, 0]] * 10 and stretched[:, -3].tolist() == [[0, 0, 255]] * 10


def test_large_jpeg_is_drafted_but_still_right():
    array = np.zeros((400, 600, 3), np.uint8)
    array[:, :300] = (250, 250, 250)
    out = load_array(image_bytes(array, "JPEG", quality=95), (32, 32))
    assert out.shape == (32, 32, 3)
    assert out[:, :14].min() > 235 and out[:, 18:].max() < 20


def test_bad_modes_are_value_errors():
    img = Image.new("RGB", (4, 4))
    with pytest.raises(ValueError, match=r"Unknown color_mode.*Received: color_mode='hsv'"):
        normalize(img, (4, 4), color_mode="hsv")
    with pytest.raises(ValueError, match=r"Unknown resize_mode.*Received: resize_mode='squash'"):
        normalize(img, (4, 4), resize_mode="squash")


def test_all_sources_give_the_same_array(tmp_path):
    array = noise(12, 12)
    data = image_bytes(array)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    expected = load_array(data, (12, 12))
    np.testing.assert_array_equal(expected, array)
    for source in (path, str(path), io.BytesIO(data), Image.fromarray(array)):
        np.testing.assert_array_equal(load_array(source, (12, 12)), expected)


# ------------------------------------------------------------------------------------ bad input


def assert_one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert f"'{name}'" in message
    assert "Received:" in message
    return message


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty file") as exc:
        open_image(b"", name="blank.png")
    assert_one_line(exc, "blank.png")


def test_empty_file_on_disk(tmp_path):
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file") as exc:
        load_array(path, (8, 8))
    assert_one_line(exc, "zero.jpg")


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="not found") as exc:
        open_image(tmp_path / "gone.png")
    assert_one_line(exc, "gone.png")


def test_text_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n" * 5)
    with pytest.raises(ImageError, match="not an image") as exc:
        open_image(path)
    assert_one_line(exc, "notes.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(fmt):
    data = image_bytes(noise(64, 64), fmt)
    with pytest.raises(ImageError, match="truncated or corrupt") as exc:
        open_image(data[: len(data) // 2], name=f"cut.{fmt.lower()}")
    assert_one_line(exc, f"cut.{fmt.lower()}")


def test_a_huge_header_is_refused_before_decoding():
    # 100000 x 100000 pixels claimed: Pillow itself would refuse; either way it is an ImageError.
    with pytest.raises(ImageError, match="too large|safety cap") as exc:
        open_image(png_header_only(100_000, 100_000), name="bomb.png")
    assert_one_line(exc, "bomb.png")


def test_the_pixel_cap_is_checked_from_the_header():
    # The header claims 3000x3000 pixels but there is no pixel data: decoding would say "truncated",
    # so the cap message proves the check happened before decoding.
    data = png_header_only(3000, 3000)
    with pytest.raises(ImageError, match="truncated"):
        open_image(data, name="fake.png")
    with pytest.raises(ImageError, match=r"3000x3000 pixels, over the 1,000,000-pixel safety cap") as exc:
        open_image(data, max_pixels=1_000_000, name="fake.png")
    assert_one_line(exc, "fake.png")
    with pytest.raises(ImageError, match="safety cap"):
        load_array(image_bytes(noise(40, 40)), (8, 8), max_pixels=1000, name="real.png")
    with pytest.raises(ImageError, match="safety cap"):
        open_image(Image.new("RGB", (40, 40)), max_pixels=1000)


@pytest.mark.parametrize("fmt, name", [("ICO", "icon.ico"), ("PPM", "frame.ppm")])
def test_unsupported_formats_are_refused(fmt, name):
    data = encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt)
    with pytest.raises(ImageError, match=f"{fmt}.*not supported.*Received: format='{fmt}'") as exc:
        open_image(data, name=name)
    assert_one_line(exc, name)


def test_files_are_closed_after_a_refusal_and_after_an_animation(tmp_path):
    misnamed = tmp_path / "frame.png"  # really a PPM
    misnamed.write_bytes(encode(Image.new("RGB", (4, 4)), "PPM"))
    animation = tmp_path / "spinner.gif"
    Image.new("P", (4, 4), 0).save(animation, save_all=True, append_images=[Image.new("P", (4, 4), 1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="not supported"):
            open_image(misnamed)
        assert load_array(animation, (4, 4)).shape == (4, 4, 3)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)
    assert ".png" in images.SUPPORTED_EXTENSIONS and ".ico" not in images.SUPPORTED_EXTENSIONS


def test_thumbnails_are_small_8_bit_rgb_whatever_the_mode(tmp_path):
    wide16 = Image.fromarray(np.tile(np.linspace(0, 65535, 400).astype(np.uint16), (100, 1)))
    thumb = images.thumbnail(encode(wide16, "PNG"), max_side=80)
    assert thumb.dtype == np.uint8 and thumb.shape == (20, 80, 3)
    assert thumb[0, 0, 0] < 5 and thumb[0, -1, 0] > 250  # scaled from 16 bits, not clipped to white
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (images.thumbnail(encode(clear, "PNG")) == 255).all()  # transparency shows as white
    with pytest.raises(ImageError, match="not found"):
        images.thumbnail(tmp_path / "gone.png")
