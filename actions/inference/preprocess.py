"""Image bytes -> the model's input tensor, exactly as the manifest says, and fast.

On a small device the preprocessing can cost more than the network, so:
- JPEGs are decoded with libjpeg's DCT scaling (`Image.draft`) when the image is at least twice the
  size we need, which skips most of the decode;
- resize and center crop are one `resize(box=...)` call, so only the cropped region is resampled;
- the default filter is a box (area) filter, the right one for shrinking and half the taps of
  bilinear;
- normalisation is one fused multiply-add into a preallocated NCHW float32 buffer.
"""

from __future__ import annotations

import io

import numpy as np

from actions.errors import ImageError
from actions.inference.artifact import Preprocessing

_FILTERS = {"box": 4, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


class Preprocessor:
    """Turns encoded images (or RGB arrays) into normalised NCHW float32 tensors."""

    def __init__(self, spec: Preprocessing) -> None:
        from PIL import Image  # imported here so that importing actions stays cheap

        self._image = Image
        self.spec = spec
        self._filter = _FILTERS[spec.interpolation]
        std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
        mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
        self._scale = (1.0 / std).astype(np.float32)
        self._bias = (-mean / std).astype(np.float32)
        self._bgr = spec.color == "BGR"  # mean and std are given in the model's channel order

    def decode(self, data: bytes):
        """Decode image bytes to an RGB PIL image, using JPEG DCT scaling when it is lossless for us."""
        Image = self._image
        try:
            img = Image.open(io.BytesIO(data))
            if img.format == "JPEG":
                w, h = img.size
                # Ask for the smallest DCT scale whose shorter side still covers `resize`.
                scale = self.spec.resize / min(w, h)
                img.draft("RGB", (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
            img.load()
            if img.mode != "RGB":  # convert() copies even when the mode is already right
                img = img.convert("RGB")
        except Image.UnidentifiedImageError:
            raise ImageError("not an image file (unrecognised format)") from None
        except Image.DecompressionBombError:
            raise ImageError("image is too large to decode safely (more pixels than Pillow's limit)") from None
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... for damaged data
            raise ImageError(f"image data is truncated or corrupt ({str(exc)[:80]})") from None
        return img

    def __call__(self, image) -> np.ndarray:
        """Return a (1, 3, crop, crop) float32 tensor from image bytes, a PIL image or an HxWx3 uint8 array."""
        Image = self._image
        if isinstance(image, (bytes, bytearray, memoryview)):
            img = self.decode(bytes(image))
        elif isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = np.stack([image] * 3, axis=-1)
            if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
                raise ImageError("an image array must be HxWx3 uint8 RGB")
            img = Image.fromarray(np.ascontiguousarray(image[..., :3]))
        else:
            img = image.convert("RGB")
        spec = self.spec
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageError("image has no pixels")
        # Resize the shorter side to `resize`, then crop `crop` from the centre: in source
        # coordinates the crop is a square of side crop / scale.
        side = spec.crop * min(w, h) / spec.resize
        left = (w - side) / 2.0
        top = (h - side) / 2.0
        img = img.resize((spec.crop, spec.crop), self._filter, box=(left, top, left + side, top + side))
        pixels = np.asarray(img)  # HWC uint8
        if self._bgr:
            pixels = pixels[..., ::-1]
        out = np.empty((1, 3, spec.crop, spec.crop), dtype=np.float32)
        np.multiply(pixels.transpose(2, 0, 1), self._scale, out=out[0])
        out[0] += self._bias
        return out
