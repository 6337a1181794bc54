"""Tests for jaxsr.pretrained.weights.resolve: paths, 'random', messages."""

import logging

import pytest

from jaxsr.pretrained import weights


def test_random_returns_none_and_warns(caplog):
  with caplog.at_level(logging.WARNING):
    path = weights.resolve('random', 'VGG19', weights.WHERE_TO_GET['vgg19'])
  assert path is None
  assert 'random-initialised VGG19' in caplog.text
  assert 'not comparable' in caplog.text


def test_missing_file_says_what_and_where(tmp_path):
  missing = tmp_path / 'vgg19-dcbb9e9d.pth'
  with pytest.raises(FileNotFoundError) as info:
    weights.resolve(str(missing), 'VGG19', weights.WHERE_TO_GET['vgg19'])
  message = str(info.value)
  assert str(missing) in message
  assert 'vgg19-dcbb9e9d.pth' in message and 'torchvision' in message
  assert 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5' in message
  with pytest.raises(ValueError, match="'random'"):
    weights.resolve('', 'VGG16', weights.WHERE_TO_GET['vgg16'])


def test_existing_file_is_returned(tmp_path):
  path = tmp_path / 'w.pth'
  path.write_bytes(b'x')
  assert weights.resolve(str(path), 'VGG16', 'anywhere') == path
