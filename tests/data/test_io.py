"""Tests of image decoding for every pixel mode the benchmarks can bring."""

import logging
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from jaxsr.data import io

RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [0, 0, 0],
                                                [255, 255, 255]]],
    dtype=np.uint8,
)


def _png_bytes(width, height, color_type, bit_depth, rows):
  """A minimal PNG (filter 0 per row), for modes Pillow cannot write."""

  def chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)

  header = struct.pack(
      '>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0
  )
  raw = b''.join(b'\x00' + row.tobytes() for row in rows)
  return (
      b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
      + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
  )


def test_rgb_png_round_trip(tmp_path):
  path = tmp_path / 'sub' / 'rgb.png'
  io.write_image(path, RGB)
  out = io.read_image(path)
  assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
  np.testing.assert_array_equal(out, RGB)
  as_float = io.read_image_float(path)
  assert as_float.dtype == np.float32
  np.testing.assert_allclose(as_float, RGB / 255.0, atol=1e-7)


def test_gray_l_png(tmp_path):
  gray = np.array([[0, 7, 128], [200, 254, 255]], dtype=np.uint8)
  path = tmp_path / 'gray.png'
  io.write_image(path, gray)
  assert Image.open(path).mode == 'L'
  rgb = io.read_image(path)
  assert rgb.shape == (2, 3, 3)
  for channel in range(3):
    np.testing.assert_array_equal(rgb[..., channel], gray)
  as_is = io.read_image(path, keep_gray=True)
  assert as_is.shape == (2, 3) and as_is.dtype == np.uint8
  np.testing.assert_array_equal(as_is, gray)


def test_gray_16_bit_png(tmp_path):
  values = [0, 300, 32896, 33024, 33025, 65535]
  im = Image.new('I;16', (6, 1))
  im.putdata(values)
  path = tmp_path / 'gray16.png'
  im.save(path)
  # round(v * 255 / 65535) = round(v / 257): 300 -> 1.17, 32896 -> 128.0,
  # 33024 -> 128.498, 33025 -> 128.502. Taking the high byte (v >> 8) would
  # give 1, 128, 129, 129 instead.
  out = io.read_image(path, keep_gray=True)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, [[0, 1, 128, 128, 129, 255]])
  assert io.read_image(path).shape == (1, 6, 3)
  precise = io.read_image_float(path, keep_gray=True)
  assert precise.dtype == np.float32
  np.testing.assert_allclose(precise[0], np.array(values) / 65535, rtol=1e-7)


def test_rgba_png_drops_alpha_and_logs(tmp_path, caplog):
  rgba = np.concatenate([RGB, np.full((2, 3, 1), 9, np.uint8)], axis=-1)
  path = tmp_path / 'rgba.png'
  Image.fromarray(rgba, mode='RGBA').save(path)
  with caplog.at_level(logging.INFO):
    out = io.read_image(path)
  np.testing.assert_array_equal(out, RGB)
  assert 'rgba.png' in caplog.text and 'alpha' in caplog.text


def test_gray_with_alpha_png(tmp_path):
  im = Image.new('LA', (2, 1))
  im.putdata([(5, 0), (250, 255)])
  path = tmp_path / 'la.png'
  im.save(path)
  np.testing.assert_array_equal(io.read_image(path, keep_gray=True), [[5, 250]])


def test_palette_png(tmp_path):
  im = Image.new('P', (3, 1))
  palette = [0, 0, 0, 255, 0, 0, 12, 34, 56] + [0] * (256 * 3 - 9)
  im.putpalette(palette)
  im.putdata([2, 1, 0])
  path = tmp_path / 'palette.png'
  im.save(path)
  out = io.read_image(path)
  np.testing.assert_array_equal(out, [[[12, 34, 56], [255, 0, 0], [0, 0, 0]]])


def test_jpeg_and_bmp(tmp_path):
  flat = np.zeros((16, 16, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
  jpeg = tmp_path / 'flat.JPG'
  Image.fromarray(flat).save(jpeg, quality=95)
  out = io.read_image(jpeg)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(int) - flat).max() <= 3  # lossy
  cmyk = tmp_path / 'cmyk.jpg'
  Image.fromarray(flat).convert('CMYK').save(cmyk, quality=95)
  assert io.read_image(cmyk).shape == (16, 16, 3)
  bmp = tmp_path / 'rgb.bmp'
  Image.fromarray(RGB).save(bmp)
  np.testing.assert_array_equal(io.read_image(bmp), RGB)


def test_16_bit_rgb_png_keeps_high_byte(tmp_path, caplog):
  # Pillow's documented limitation: 16-bit RGB decodes to the high byte.
  rows = np.array([[[0, 65535, 40000]]], dtype='>u2')
  path = tmp_path / 'rgb16.png'
  path.write_bytes(_png_bytes(1, 1, 2, 16, rows))
  with caplog.at_level(logging.WARNING):
    out = io.read_image(path)
  np.testing.assert_array_equal(out, [[[0, 255, 40000 >> 8]]])
  assert '16-bit RGB' in caplog.text


def test_missing_and_corrupt_files(tmp_path):
  missing = tmp_path / 'nothing.png'
  with pytest.raises(FileNotFoundError, match='nothing.png'):
    io.read_image(missing)
  corrupt = tmp_path / 'corrupt.png'
  corrupt.write_bytes(np.random.default_rng(0).bytes(200))
  with pytest.raises(ValueError, match='corrupt.png'):
    io.read_image(corrupt)
  # A valid header with a truncated body fails on decoding, not on opening.
  truncated = tmp_path / 'truncated.png'
  io.write_image(tmp_path / 'full.png', np.arange(4096, dtype=np.uint8)
                 .reshape(64, 64))
  truncated.write_bytes((tmp_path / 'full.png').read_bytes()[:80])
  with pytest.raises(ValueError, match='truncated.png'):
    io.read_image(truncated)


def test_write_image_validates(tmp_path):
  with pytest.raises(TypeError, match='float32'):
    io.write_image(tmp_path / 'a.png', RGB.astype(np.float32))
  with pytest.raises(ValueError, match='PNG'):
    io.write_image(tmp_path / 'a.jpg', RGB)
  with pytest.raises(ValueError, match=r'\(2, 3, 4\)'):
    io.write_image(tmp_path / 'a.png', np.zeros((2, 3, 4), np.uint8))


def test_list_images(tmp_path):
  for name in ('b.PNG', 'a.jpg', 'c.jpeg', 'd.bmp', 'e.TIF', 'f.tiff',
               'notes.txt', '._a.png'):
    (tmp_path / name).write_bytes(b'')
  (tmp_path / 'folder.png').mkdir()
  names = [p.name for p in io.list_images(tmp_path)]
  assert names == ['a.jpg', 'b.PNG', 'c.jpeg', 'd.bmp', 'e.TIF', 'f.tiff']
  with pytest.raises(FileNotFoundError, match='missing'):
    io.list_images(tmp_path / 'missing')
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='empty'):
    io.list_images(empty)
