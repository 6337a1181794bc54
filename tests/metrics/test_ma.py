"""Tests of Ma et al.'s NRQM and the Perceptual Index: every feature step
against a closed form or a loop transcription of pyiqa/MATLAB's formulas, the
forest against hand-traced synthetic trees saved in the public model.mat
structure, the loader's errors, and PI's formula."""

import math

import numpy as np
import pytest
from scipy import io as sio
from scipy import signal
from scipy import special
from scipy import stats

from jaxsr.data import io
from jaxsr.metrics import ma
from jaxsr.metrics import ma_features as mf
from jaxsr.metrics.niqe import load_pristine_params
from jaxsr.metrics.niqe import niqe


def _dct_matrix(n=7):
  """Orthonormal DCT-II matrix, C[k, i] = a_k cos(pi (2i + 1) k / 2n)."""
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  c[0] /= np.sqrt(2.0)
  return c


def _ggd_shape_reference(x):
  """gama_gen_gauss.m literally: argmin over the full grid, one vector."""
  x = np.asarray(x, dtype=np.float64)
  rho = np.var(x, ddof=1) / (np.mean(np.abs(x - x.mean())) ** 2 + 1e-7)
  g = np.arange(9971) * 0.001 + 0.03
  r = special.gamma(1 / g) * special.gamma(3 / g) / special.gamma(2 / g) ** 2
  return g[np.argmin(np.abs(rho - r))]


def _abs_cv(x, eps):
  a = np.abs(np.asarray(x, dtype=np.float64))
  return np.std(a, ddof=1) / (np.mean(a) + eps)


# --- generalized Gaussian shape and small statistics -------------------------


def test_ggd_shape_matches_full_grid_argmin():
  rng = np.random.default_rng(0)
  samples = [
      rng.standard_normal(48),
      rng.laplace(size=48),
      rng.uniform(-1, 1, size=200),
      stats.gennorm.rvs(0.4, size=100, random_state=rng),
      np.array([0.0, 0.0, 0.0, 5.0]),
      np.array([1.0, 1.0, 1.0, 1.0]),  # zero variance: rho = 0
  ]
  got = [mf.ggd_shape(s) for s in samples]
  want = [_ggd_shape_reference(s) for s in samples]
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
  # Vectorised over leading axes.
  batch = rng.standard_normal((5, 48))
  np.testing.assert_allclose(
      mf.ggd_shape(batch), [_ggd_shape_reference(b) for b in batch], atol=0
  )


@pytest.mark.parametrize('shape', [1.0, 2.0])
def test_ggd_shape_recovers_laplace_and_gauss(shape):
  x = stats.gennorm.rvs(shape, size=200_000, random_state=1)
  assert mf.ggd_shape(x) == pytest.approx(shape, rel=0.03)


def test_abs_variation_hand_values():
  assert mf.abs_variation(np.array([1.0, -1.0, 1.0, -1.0])) == 0.0
  # |x| = [0, 2]: unbiased std sqrt(2), mean 1.
  assert mf.abs_variation(np.array([0.0, -2.0]), eps=0.0) == pytest.approx(
      math.sqrt(2.0)
  )


def test_tail_means_follow_pyiqa_slices():
  values = np.arange(20.0)[::-1]
  # First ceil(0.1 n) + 1 = 3 sorted values; last n - floor(0.9 n) = 2.
  assert mf._tail_means(values) == (1.0, 18.5, 9.5)


# --- pyramid, DCT blocks, DCT features ---------------------------------------


def test_gaussian_pyramid_matches_conv2_same_and_odd_pixels():
  rng = np.random.default_rng(2)
  plane = rng.uniform(0, 1, (11, 14))
  x = np.array([-1.0, 0.0, 1.0])
  k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 0.5)
  k /= k.sum()
  levels = mf.gaussian_pyramid(plane)
  want1 = signal.convolve2d(plane, k, mode='same')[1::2, 1::2]
  want2 = signal.convolve2d(want1, k, mode='same')[1::2, 1::2]
  assert [lv.shape for lv in levels] == [(11, 14), (5, 7), (2, 3)]
  np.testing.assert_allclose(levels[1], want1, atol=1e-14)
  np.testing.assert_allclose(levels[2], want2, atol=1e-14)


def test_dct_blocks_constant_and_against_matrix_dct():
  c = _dct_matrix()
  const = mf.dct_blocks(np.full((9, 9), 3.0))
  assert const.shape == (9, 7, 7)
  # 9 = 3 * 3: 2 zero rows/cols on each side; the centre block is inside.
  centre = const[4]
  assert centre[0, 0] == pytest.approx(7 * 3.0)
  np.testing.assert_allclose(centre.ravel()[1:], 0.0, atol=1e-12)
  rng = np.random.default_rng(3)
  plane = rng.uniform(0, 1, (10, 8))
  blocks = mf.dct_blocks(plane)
  # ceil(10/3) = 4 block rows: pad 6 split 3 + 3; ceil(8/3) = 3: pad 5
  # split 2 + 3 (TensorFlow 'same').
  padded = np.zeros((16, 13))
  padded[3:13, 2:10] = plane
  want = [
      c @ padded[3 * i : 3 * i + 7, 3 * j : 3 * j + 7] @ c.T
      for i in range(4)
      for j in range(3)
  ]
  np.testing.assert_allclose(blocks, np.array(want), atol=1e-12)


def _oriented_groups_reference(b):
  """pyiqa oriented_dct_rho's three groups of one 7 x 7 block, spelled out."""
  g1 = np.concatenate([b[0, 1:], b[1, 2:], b[2, 4:], b[3, 5:]])
  g2 = np.concatenate(
      [b[1, 1:2], b[2, 2:4], b[3, 2:5], b[4, 3:], b[5, 4:], b[6, 4:]]
  )
  g3 = np.concatenate([b[1:, 0], b[2:, 1], b[4:, 2], b[5:, 3]])
  return g1, g2, g3


def test_block_dct_features_match_loop_transcription():
  rng = np.random.default_rng(4)
  level = rng.uniform(0, 1, (13, 11))
  c = _dct_matrix()
  # ceil(13/3) = 5 block rows, pad 6 = 3 + 3; ceil(11/3) = 4, pad 5 = 2 + 3.
  padded = np.pad(level, ((3, 3), (2, 3)))
  shapes, cvs, oris = [], [], []
  for i in range(5):
    for j in range(4):
      b = c @ padded[3 * i : 3 * i + 7, 3 * j : 3 * j + 7] @ c.T
      ac = b.ravel()[1:]
      shapes.append(_ggd_shape_reference(ac))
      cvs.append(_abs_cv(ac, 1e-7))
      oris.append(
          np.var([_abs_cv(g, 1e-8) for g in _oriented_groups_reference(b)],
                 ddof=1)
      )
  shapes, cvs, oris = np.sort(shapes), np.sort(cvs), np.sort(oris)
  # 20 blocks: first ceil(2) + 1 = 3, last 20 - 18 = 2.
  want = [
      shapes[:3].mean(), shapes.mean(), cvs[18:].mean(), cvs.mean(),
      oris[18:].mean(), oris.mean(),
  ]
  np.testing.assert_allclose(mf.block_dct_features(level), want, rtol=1e-12)


def test_dct_features_concatenate_three_levels_of_plane_over_255():
  rng = np.random.default_rng(5)
  plane = rng.integers(0, 256, (20, 22)).astype(np.float64)
  levels = mf.gaussian_pyramid(plane / 255.0)
  want = np.concatenate([mf.block_dct_features(lv) for lv in levels])
  got = mf.dct_features(plane)
  assert got.shape == (18,)
  np.testing.assert_allclose(got, want, rtol=1e-12)


# --- PCA (singular value) features -------------------------------------------


def test_pca_features_constant_closed_form_and_svd():
  # A constant 10 x 10 level: four identical patches of 25 values c/255,
  # a rank-one matrix with singular value sqrt(4 * 25) * c / 255.
  got = mf.pca_features(np.full((10, 10), 51.0))
  assert got.shape == (75,)
  assert got[0] == pytest.approx(10 * 51.0 / 255.0)
  np.testing.assert_allclose(got[1:25], 0.0, atol=1e-12)
  rng = np.random.default_rng(6)
  plane = rng.uniform(0, 255, (12, 9))
  level0 = np.zeros((15, 10))
  level0[:12, :9] = plane / 255.0
  rows = [
      level0[i : i + 5, j : j + 5].T.ravel()  # MATLAB's column order
      for j in range(0, 10, 5)
      for i in range(0, 15, 5)
  ]
  want = np.linalg.svd(np.array(rows), compute_uv=False)
  got = mf.pca_features(plane)
  np.testing.assert_allclose(got[:6], want, rtol=1e-10)
  # Fewer than 25 patches: the missing singular values are 0 (as if padded
  # with zero patches), so every level still gives 25 numbers.
  np.testing.assert_array_equal(got[6:25], 0.0)
  assert got.shape == (75,)


# --- steerable pyramid, normalisation, SSIM, GSM features ---------------------


def test_steerable_pyramid_of_a_grating_closed_form():
  # cos(2 pi 16 x / 64) sits at radius 0.5 (x 2 / 64 per bin), where the
  # level-0 radial masks are exactly 1 and the residual mask is 0. Band b
  # keeps the spectral peak inside its half-plane with weight
  # 2 sqrt(const) cos(theta - pi b / 6)^5, and (-i) times half a cosine
  # peak is a sine of amplitude sqrt(const) |cos|^5.
  x = np.arange(64)
  image = np.tile(np.cos(2 * np.pi * 16 * x / 64), (64, 1))
  hp, bands = mf.steerable_pyramid(image)
  const = 2**10 * math.factorial(5) ** 2 / (6 * math.factorial(10))
  cosines = np.abs(np.cos(np.pi * np.arange(6) / 6)) ** 5
  cosines[3] = 0.0
  np.testing.assert_allclose(hp, 0.0, atol=1e-9)
  sine = np.tile(np.sin(2 * np.pi * 16 * x / 64), (64, 1))
  for b, band in enumerate(bands[0]):
    amp = np.sqrt(const) * cosines[b]
    assert np.max(np.abs(np.abs(band) - amp * np.abs(sine))) < 1e-4
  assert [b.shape for b in bands[1]] == [(32, 32)] * 6
  np.testing.assert_allclose(np.array(bands[1]), 0.0, atol=1e-9)


def test_steerable_pyramid_level1_grating_closed_form():
  # Radius 0.25 (8 bins of 64) passes the level-0 low-pass and the level-1
  # high-pass exactly and no level-0 band. The 32 x 32 inverse FFT of the
  # cropped spectrum divides by 1024 instead of 4096: amplitudes x 4.
  x = np.arange(64)
  image = np.tile(np.cos(2 * np.pi * 8 * x / 64), (64, 1))
  hp, bands = mf.steerable_pyramid(image)
  const = 2**10 * math.factorial(5) ** 2 / (6 * math.factorial(10))
  cosines = np.abs(np.cos(np.pi * np.arange(6) / 6)) ** 5
  cosines[3] = 0.0
  np.testing.assert_allclose(hp, 0.0, atol=1e-9)
  np.testing.assert_allclose(np.array(bands[0]), 0.0, atol=1e-9)
  sine = np.abs(np.tile(np.sin(2 * np.pi * 8 * np.arange(32) / 32), (32, 1)))
  for b, band in enumerate(bands[1]):
    amp = 4 * np.sqrt(const) * cosines[b]
    assert np.max(np.abs(np.abs(band) - amp * sine)) < 1e-4


def test_steerable_pyramid_odd_sizes_and_flat_image():
  hp, bands = mf.steerable_pyramid(np.full((47, 50), 100.0))
  assert hp.shape == (47, 50)
  assert bands[0][0].shape == (47, 50)
  assert bands[1][0].shape == (math.ceil(47 / 2 - 0.25), 25)
  # A constant lives at DC, which only the low-pass keeps.
  np.testing.assert_allclose(hp, 0.0, atol=1e-9)
  np.testing.assert_allclose(np.array(bands[0]), 0.0, atol=1e-9)


def _normalize_reference(bands):
  """norm_sender_normalized with an explicit per-pixel loop (tiny bands)."""
  out = []
  for si in range(2):
    for bi in range(6):
      band = bands[si][bi]
      h, w = band.shape
      parent = None
      if si == 0:
        parent = mf.imresize_to(bands[1][bi], band.shape)
      rows = []
      for r in range(1, h - 1):
        for c in range(1, w - 1):
          v = list(band[r - 1 : r + 2, c - 1 : c + 2].ravel())
          if parent is not None:
            v.append(parent[r, c])
          v += [bands[si][n][r, c] for n in range(6) if n != bi]
          rows.append(v)
      v = np.array(rows)
      cov = np.mean([np.outer(row, row) for row in v], axis=0)
      lam, q = np.linalg.eigh(cov)
      lam_pos = np.maximum(lam, 0)
      lam = lam_pos * lam.sum() / lam_pos.sum()
      inv = np.linalg.inv(q @ np.diag(lam) @ q.T)
      n = 10 if si == 0 else 9
      z = np.sqrt([row @ inv @ row / n for row in v])
      centre = band[1:-1, 1:-1].ravel()
      g = ((centre - centre.mean()) / z).reshape(h - 2, w - 2)
      gb = 16 >> si
      g = g[gb:-gb, gb:-gb]
      out.append(g - g.mean())
  return out


def test_divisive_normalization_matches_loop_and_is_homogeneous():
  rng = np.random.default_rng(7)
  bands = [
      [rng.standard_normal((38, 37)) for _ in range(6)],
      [rng.standard_normal((19, 19)) for _ in range(6)],
  ]
  got = mf.divisive_normalization(bands)
  want = _normalize_reference(bands)
  assert [g.shape for g in got] == [(4, 3)] * 6 + [(1, 1)] * 6
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
  # The divisor is a Mahalanobis norm (scale-free): output scales with input.
  scaled = mf.divisive_normalization(
      [[7.0 * b for b in level] for level in bands]
  )
  for g, s in zip(got, scaled):
    np.testing.assert_allclose(s, 7.0 * g, rtol=1e-8, atol=1e-12)


def test_ssim_cs_matches_window_loop():
  rng = np.random.default_rng(8)
  x = rng.uniform(0, 255, (13, 14))
  y = 0.5 * x + rng.uniform(0, 100, (13, 14))
  t = np.arange(11) - 5.0
  win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
  win /= win.sum()
  c2 = (0.03 * 255) ** 2
  vals = []
  for r in range(3):
    for c in range(4):
      a, b = x[r : r + 11, c : c + 11], y[r : r + 11, c : c + 11]
      ma_, mb = np.sum(win * a), np.sum(win * b)
      va = np.sum(win * a * a) - ma_**2
      vb = np.sum(win * b * b) - mb**2
      cab = np.sum(win * a * b) - ma_ * mb
      vals.append(max((2 * cab + c2) / (va + vb + c2), 0.0))
  assert mf.ssim_cs(x, y) == pytest.approx(np.mean(vals), rel=1e-12)
  assert mf.ssim_cs(x, x) == pytest.approx(1.0)
  # Anti-correlated strong signals give negative maps, clipped to 0.
  assert mf.ssim_cs(x, -x) == 0.0
  with pytest.raises(ValueError, match='11 x 11'):
    mf.ssim_cs(x[:10], y[:10])


def test_ma_features_shapes_and_size_check():
  rng = np.random.default_rng(9)
  plane = rng.integers(0, 256, (48, 50)).astype(np.float64)
  f1, f2, f3 = mf.ma_features(plane)
  assert (f1.shape, f2.shape, f3.shape) == ((18,), (45,), (75,))
  assert np.all(np.isfinite(np.concatenate([f1, f2, f3])))
  # Shapes lie on the grid; SSIM terms in [0, 1]; singular values sorted.
  assert np.all((f2[:18] >= 0.03) & (f2[:18] <= 10.0))
  assert np.all((f2[18:] >= 0) & (f2[18:] <= 1.0 + 1e-12))
  assert np.all(np.diff(f3[:25]) <= 1e-12)
  with pytest.raises(ValueError, match='at least 45x45'):
    mf.ma_features(plane[:44])
  with pytest.raises(ValueError, match='H x W plane'):
    mf.ma_features(np.zeros((48, 48, 3)))


# --- forests and the model file ----------------------------------------------


def _rf_struct(l_dau, r_dau, upper, avnode, mbest, coef=(0.0, 0.0)):
  """A regRF_train struct (1-based, nrnodes x ntree) as savemat writes it."""
  l_dau = np.asarray(l_dau, dtype=np.float64)
  return {
      'lDau': l_dau,
      'rDau': np.asarray(r_dau, dtype=np.float64),
      'nodestatus': np.where(l_dau > 0, -3, -1).astype(np.int8),
      'nrnodes': float(l_dau.shape[0]),
      'upper': np.asarray(upper, dtype=np.float64),
      'avnode': np.asarray(avnode, dtype=np.float64),
      'mbest': np.asarray(mbest, dtype=np.float64),
      'ndtree': np.sum(np.asarray(avnode) != 0, axis=0).astype(np.float64),
      'ntree': float(l_dau.shape[1]),
      'coef': np.asarray(coef, dtype=np.float64),
  }


# Tree 1: node 1 splits feature 2 at 0.5 (left leaf 2: 1.0; right node 3
# splits feature 1 at -1: leaves 4: 2.0 and 5: 3.0). Tree 2: one leaf, 10.
TWO_TREES = dict(
    l_dau=[[2, 0], [0, 0], [4, 0], [0, 0], [0, 0]],
    r_dau=[[3, 0], [0, 0], [5, 0], [0, 0], [0, 0]],
    upper=[[0.5, 0], [0, 0], [-1.0, 0], [0, 0], [0, 0]],
    avnode=[[9.0, 10.0], [1.0, 0], [7.0, 0], [2.0, 0], [3.0, 0]],
    mbest=[[2, 0], [0, 0], [1, 0], [0, 0], [0, 0]],
)


def _one_leaf(value):
  return _rf_struct([[0]], [[0]], [[0.0]], [[value]], [[0]])


def _save_model(path, rfs, linear, cell_shape=(1, 3)):
  cells = np.empty(cell_shape, dtype=object)
  for i, rf in enumerate(rfs):
    cells.flat[i] = rf
  sio.savemat(
      path,
      {'model': {'rf': cells, 'linear': np.asarray(linear, float)[:, None]}},
  )
  return path


@pytest.mark.parametrize(
    'x, want',
    [
        ([0.0, 0.7], (3.0 + 10.0) / 2),  # right, then right
        ([-2.0, 0.7], (2.0 + 10.0) / 2),  # right, then left
        ([5.0, 0.5], (1.0 + 10.0) / 2),  # x2 == cut value goes left
        ([5.0, -9.0], (1.0 + 10.0) / 2),
    ],
)
def test_forest_predict_hand_traced(x, want):
  forest = ma.make_forest(**TWO_TREES)
  assert ma.forest_predict(forest, np.array(x)) == want


def test_forest_bias_correction_and_bad_feature_index():
  forest = ma.make_forest(**TWO_TREES, coef=[1.0, 2.0])
  assert ma.forest_predict(forest, np.array([0.0, 0.7])) == 1.0 + 2.0 * 6.5
  with pytest.raises(ValueError, match='feature 2, but the vector has 1'):
    ma.forest_predict(ma.make_forest(**TWO_TREES), np.array([0.0]))


@pytest.mark.parametrize('cell_shape', [(1, 3), (3, 1)])
def test_load_model_reads_public_structure(tmp_path, cell_shape):
  rfs = [_rf_struct(**TWO_TREES), _one_leaf(4.0), _one_leaf(-2.0)]
  path = _save_model(
      tmp_path / 'model.mat', rfs, [1.5, 0.5, 0.25, 2.0], cell_shape
  )
  model = ma.load_model(path)
  assert model.forests[0].left.shape == (5, 2)
  np.testing.assert_array_equal(model.linear, [1.5, 0.5, 0.25, 2.0])
  f1 = np.zeros(18)
  f1[:2] = [-2.0, 0.7]  # tree 1 ends in leaf 4 (2.0): forest 6.0
  score = ma.ma_score_from_features([f1, np.zeros(45), np.zeros(75)], model)
  assert score == pytest.approx(1.5 + 0.5 * 6.0 + 0.25 * 4.0 + 2.0 * -2.0)


def test_ma_score_on_an_image_with_leaf_forests(tmp_path):
  rfs = [_one_leaf(7.0), _one_leaf(1.0), _one_leaf(3.0)]
  model = ma.load_model(
      _save_model(tmp_path / 'm.mat', rfs, [0.5, 1.0, -1.0, 0.5])
  )
  rng = np.random.default_rng(10)
  image = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
  assert ma.ma_score(image, model, crop_border=4) == pytest.approx(8.0)
  with pytest.raises(ValueError, match='at least 45x45'):
    ma.ma_score(image[:52, :52], model, crop_border=4)


def test_load_model_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='sr-metric'):
    ma.load_model(tmp_path / 'absent.mat')
  (tmp_path / 'junk.mat').write_bytes(b'not a mat file at all' * 10)
  with pytest.raises(ValueError, match='not a MATLAB .mat file'):
    ma.load_model(tmp_path / 'junk.mat')
  sio.savemat(tmp_path / 'other.mat', {'weights': np.zeros(3)})
  with pytest.raises(KeyError, match="no variable 'model'.*weights"):
    ma.load_model(tmp_path / 'other.mat')
  leaves = [_one_leaf(1.0)] * 3
  with pytest.raises(ValueError, match='4 x 1, found 3'):
    ma.load_model(_save_model(tmp_path / 'a.mat', leaves, [1, 2, 3]))
  with pytest.raises(ValueError, match='3-element cell, found 2'):
    ma.load_model(
        _save_model(tmp_path / 'b.mat', leaves[:2], [1, 2, 3, 4], (1, 2))
    )
  broken = dict(_one_leaf(1.0))
  del broken['avnode']
  with pytest.raises(KeyError, match="rf\\{2\\} lacks field 'avnode'"):
    ma.load_model(
        _save_model(tmp_path / 'c.mat', [leaves[0], broken, leaves[0]],
                    [1, 2, 3, 4])
    )
  bad = _rf_struct([[7]], [[1]], [[0.0]], [[1.0]], [[1]])
  with pytest.raises(ValueError, match='lDau must hold node numbers in 0..1'):
    ma.load_model(
        _save_model(tmp_path / 'd.mat', [bad] + leaves[:2], [1, 2, 3, 4])
    )


# --- image handling and the Perceptual Index ---------------------------------


def test_ma_plane_y_gray_and_crop():
  image = np.zeros((6, 7, 3), dtype=np.uint8)
  image[..., 0] = 255
  # MATLAB rgb2ycbcr: 16 + 65.481 = 81.481 -> 81; luma 0.299 * 255 = 76.2.
  assert np.all(ma.ma_plane(image) == 81.0)
  assert np.all(ma.ma_plane(image, convert_to='gray') == 76.0)
  assert ma.ma_plane(image, crop_border=2).shape == (2, 3)
  with pytest.raises(ValueError, match='0..255'):
    ma.ma_plane(np.full((4, 4, 3), 300.0))
  with pytest.raises(ValueError, match="'y' or 'gray'"):
    ma.ma_plane(image, convert_to='yiq')


def test_perceptual_index_hand_values():
  assert ma.perceptual_index(6.0, 4.0) == 4.0
  assert ma.perceptual_index(8.5, 3.2) == pytest.approx(2.35)
  assert ma.perceptual_index(10.0, 0.0) == 0.0


def test_pi_combines_ma_and_cropped_y_niqe(tmp_path, shared_data):
  params = load_pristine_params(shared_data / 'niqe' / 'niqe_pris_params.npz')
  image = io.read_image(shared_data / 'niqe' / 'baboon.png')[:104, :104]
  rfs = [_one_leaf(2.0), _one_leaf(2.0), _one_leaf(2.0)]
  model = ma.load_model(_save_model(tmp_path / 'm.mat', rfs, [0, 1, 1, 1]))
  # Ma = 6 from the leaves; NIQE on Y after the same 4-pixel crop.
  want = ((10.0 - 6.0) + niqe(image, 4, params, convert_to='y')) / 2.0
  assert ma.pi(image, model, params, crop_border=4) == pytest.approx(want)
