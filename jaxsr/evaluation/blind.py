"""Blind-SR test sets for `jaxsr.evaluate`: LR made from HR by a named blur protocol, per kernel width.

`--degradation gaussian --kernel_width W[,W2,...]` and `--degradation
gaussian8` (IKC's 8 widths) replace each HR image's LR by
`degradations.degrade_image(hr, W, scale)`: the isotropic Gaussian of width
W on 21x21 (sum 1), reflect-padded correlation, MATLAB-exact bicubic
downscale, one rounding to uint8. Every model (blind or not) and the bicubic
baseline get that LR; none sees the kernel.

A set's scores are those of all (image, width) pairs pooled. Every width
scores the same images, so a pooled mean is the mean of the per-width means,
as Table 1 of the AMGAN supplement averages widths 0.2, 1.3 and 2.6; the
per-width means are kept under 'per_width'.

`kernel_error`: for a restored model that offers `predict_code(lr) ->
(1, dim)` (LR float32 (1, h, w, 3) in [0, 1]) and `encode_kernel(kernels
(1, k, k)) -> (1, dim)` (the true code, in the model's own PCA, noise entry
0), the per-image mean squared difference of the two codes.
"""

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from jaxsr.data import degradations
from jaxsr.data import io
from jaxsr.evaluation import metric_suite
from jaxsr.evaluation import report

KERNEL_ERROR = 'kernel_error'


def parse_widths(text) -> tuple[float, ...]:
  """'1.3' or '0.2,1.3,2.6' (or a sequence of numbers) -> widths."""
  if text is None or text == '':
    return ()
  parts = text.split(',') if isinstance(text, str) else list(text)
  try:
    return tuple(float(p) for p in parts if str(p).strip())
  except ValueError:
    raise ValueError(f'--kernel_width expects comma-separated numbers such as '
                     f'0.2,1.3,2.6, found {text!r}') from None


def widths(protocol: str | None, scale: int, kernel_width) -> tuple[float, ...]:
  """The kernel widths to evaluate; () when no protocol is named."""
  given = parse_widths(kernel_width)
  if protocol is None:
    if given:
      raise ValueError('--kernel_width needs --degradation gaussian')
    return ()
  return degradations.protocol_widths(protocol, scale, given)


def label(width: float) -> str:
  """A width as a folder / file tag: 1.3 -> 'sigma1.3'."""
  return f'sigma{width:g}'


def lr_folder(save_lr: str | None, set_name: str, width: float | None,
              several_sets: bool, several_widths: bool) -> str | None:
  """Where a set's LR images go: DIR[/set][/sigmaW] (None: not saved)."""
  if not save_lr:
    return None
  parts = [save_lr]
  if several_sets:
    parts.append(set_name)
  if several_widths and width is not None:
    parts.append(label(width))
  return os.path.join(*parts)


def has_code(model) -> bool:
  """Whether a restored model can predict and encode degradation codes."""
  return (callable(getattr(model, 'predict_code', None))
          and callable(getattr(model, 'encode_kernel', None)))


def kernel_error(predicted, true) -> float:
  """Mean squared difference of a predicted and a true (1, dim) code."""
  predicted = np.asarray(predicted, np.float64)
  true = np.asarray(true, np.float64)
  if predicted.shape != true.shape:
    raise ValueError(f'predicted code has shape {predicted.shape}, the true '
                     f'code {true.shape}')
  return float(np.mean((predicted - true)**2))


def degraded_images(hr_paths: Sequence, load_hr: Callable[[str], np.ndarray],
                    width: float, scale: int, save_dir: str | None = None,
                    code_models: dict | None = None,
                    errors: dict | None = None
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """(name, uint8 HR, uint8 blurred LR) of each HR file, at one width.

  Writes each LR to save_dir/name.png when save_dir is given, and the
  kernel_error of each of code_models ({column: model}) into
  errors[name][column].
  """
  kernel = degradations.gaussian_kernel_np(width)[None].astype(np.float32)
  for path in hr_paths:
    name = os.path.splitext(os.path.basename(str(path)))[0]
    hr = load_hr(str(path))
    lr = degradations.degrade_image(hr, width, scale)
    if save_dir:
      io.write_image(os.path.join(save_dir, f'{name}.png'), lr)
    if code_models:
      rgb = lr if lr.ndim == 3 else np.repeat(lr[..., None], 3, axis=-1)
      x = (rgb.astype(np.float32) / 255.0)[None]
      errors[name] = {m: kernel_error(model.predict_code(x),
                                      model.encode_kernel(kernel))
                      for m, model in code_models.items()}
    yield name, hr, lr


def add_kernel_errors(rows: dict, errors: dict) -> None:
  """Puts errors[name][method] into the per-image rows of those methods."""
  for method, method_rows in rows.items():
    for row in method_rows:
      if method in errors.get(row['name'], {}):
        row[KERNEL_ERROR] = errors[row['name']][method]


def summarize(per_width: dict, names: Sequence[str]) -> dict:
  """{method: pooled set values + 'per_width': {'W': values}} of
  {width: {method: per-image rows}}; kernel_error is added where present."""
  methods = list(next(iter(per_width.values())))
  out = {}
  for m in methods:
    keys = tuple(names)
    if all(KERNEL_ERROR in r for rows in per_width.values() for r in rows[m]):
      keys += (KERNEL_ERROR,)
    pooled = [r for rows in per_width.values() for r in rows[m]]
    out[m] = metric_suite.summarize(pooled, keys)
    out[m]['widths'] = [float(w) for w in per_width]
    out[m]['per_width'] = {f'{w:g}': metric_suite.summarize(rows[m], keys)
                           for w, rows in per_width.items()}
  return out


def per_width_sets(summary: dict) -> dict:
  """{'Set5 sigma1.3': {method: values}} from a blind summary, for a table."""
  out = {}
  for set_name, by_method in summary.items():
    first = next(iter(by_method.values()))
    for w in first['per_width']:
      out[f'{set_name} {label(float(w))}'] = {
          m: v['per_width'][w] for m, v in by_method.items()}
  return out


def kernel_error_table(summary: dict) -> str:
  """Markdown rows of kernel_error (set, method, value); '' when none."""
  rows = [[s, m, v[KERNEL_ERROR]] for s, by_method in summary.items()
          for m, v in by_method.items() if KERNEL_ERROR in v]
  if not rows:
    return ''
  return ('Kernel code error (mean squared difference, lower is better):\n'
          + report.markdown_table(['set', 'method', KERNEL_ERROR], rows))


def default_metrics(files: metric_suite.MetricFiles) -> str:
  """The blind default: PSNR, SSIM, NIQE, and LPIPS when its weights are given.

  NIQE reads --niqe_params (or its default file); LPIPS needs --lpips_lin.
  """
  return 'psnr,ssim,niqe' + (',lpips' if files.lpips_lin else '')


def protocol_note(protocol: str, widths_: Sequence[float], scale: int) -> str:
  """One line saying how the LR images were made."""
  shown = ', '.join(f'{w:g}' for w in widths_)
  return (f'LR = degradation {protocol!r} at x{scale}: isotropic Gaussian of '
          f'width {shown} on 21x21 (sum 1), reflect padding, correlation, '
          'MATLAB bicubic downscale (float), rounded to uint8; set values pool '
          'all widths (= the mean of the per-width means).')
