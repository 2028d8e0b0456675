"""torchvision's augmentation ops on whole uint8 batches, each image with its own op and its
own magnitude, on the batch's device.

`apply_ops(images, ops, magnitudes)` gives image b what
`torchvision.transforms.v2.functional` gives it for op `ops[b]` at the magnitude
`torchvision.transforms.autoaugment._apply_op` hands that op (a shear factor, a translation
in pixels, degrees, an enhancement offset from 1, posterize bits, a solarize threshold), with
NEAREST interpolation. The batch is grouped by family of op (the affine ops, and each other
op): one pass per family present, none per image.

Exactness. The point ops (Brightness, Color, Contrast, Sharpness, Posterize, Solarize,
AutoContrast, Equalize, Invert) repeat torchvision's float32 arithmetic step for step and are
bit-exact. torchvision blends with `a.add_(b, alpha=r)` under a scalar r, which the CPU
computes as one fused multiply-add; with one r per image the blend is computed in float64
(exact for 8-bit pixels) and rounded once to float32, which is that fused result. The
geometric ops (Shear, Translate, Rotate) build torchvision's inverse affine matrix per image
in float64 tensor maths instead of Python's `math`, then sample as torchvision does
(`grid_sample`, nearest, zero padding, rounding); integer translations are exact, and a
shear or rotation can differ where a sampling coordinate lies within float rounding of a
pixel boundary (measured: see tests/test_augment_ops.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
Fill = float | Sequence[float]
# A kernel: (images of one family, their op positions in OPS, magnitudes, fill) -> images.
Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Fill], torch.Tensor]


def op_codes(ops: Sequence[str] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """`ops` as int64 positions in OPS on `device`: names, or positions already."""
    if isinstance(ops, torch.Tensor):
        if ops.dtype.is_floating_point or ops.dtype == torch.bool or ops.shape != (batch,):
            raise ValueError(
                f"ops must be {batch} op names or an integer tensor of shape ({batch},), got "
                f"{ops.dtype} {tuple(ops.shape)}"
            )
        codes = ops.to(device=device, dtype=torch.int64)
        if len(codes) and not 0 <= int(codes.min()) <= int(codes.max()) < len(OPS):
            raise ValueError(f"op positions must be in 0..{len(OPS) - 1}, got {codes.tolist()}")
        return codes
    names = list(ops)
    if len(names) != batch:
        raise ValueError(f"ops must name one op per image ({batch}), got {len(names)}")
    unknown = sorted({name for name in names if name not in OPS}, key=str)
    if unknown:
        raise ValueError(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    return torch.tensor([OPS.index(name) for name in names], dtype=torch.int64, device=device)


def apply_ops(
    images: torch.Tensor,
    ops: Sequence[str] | torch.Tensor,
    magnitudes: torch.Tensor | Sequence[float],
    fill: Fill = 0,
) -> torch.Tensor:
    """A new uint8 (B, 3, H, W) batch: image b after op `ops[b]` at `magnitudes[b]`.

    `ops` holds B names from OPS (or their positions as an integer tensor); `magnitudes`
    B signed floats; `fill` the value (or one per channel) of pixels a geometric op uncovers.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be a uint8 (B, 3, H, W) tensor, got {type(images).__name__} "
            f"{getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
        )
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 (RGB) channels, got {images.shape[1]}")
    batch, device = images.shape[0], images.device
    codes = op_codes(ops, batch, device)
    magnitudes = torch.as_tensor(magnitudes, device=device).to(torch.float64)
    if magnitudes.shape != (batch,):
        raise ValueError(
            f"magnitudes must be one number per image, shape ({batch},), got "
            f"{tuple(magnitudes.shape)}"
        )
    _check_magnitudes(codes, magnitudes)
    _check_fill(fill)
    # Sorted by family (into a copy), each family is one slice, which its pass overwrites;
    # one gather at the end puts every image back in its place.
    family_of = _FAMILY_OF.to(device)[codes]
    order = torch.argsort(family_of, stable=True)
    sizes = torch.bincount(family_of, minlength=len(FAMILIES)).tolist()
    images = images.index_select(0, order)
    codes, magnitudes = codes[order], magnitudes[order]
    start = 0
    for (_, kernel), size in zip(FAMILIES, sizes, strict=True):
        part = slice(start, start + size)
        if size and kernel is not None:
            images[part] = kernel(images[part], codes[part], magnitudes[part], fill)
        start += size
    return images.index_select(0, torch.argsort(order))


# What torchvision's functionals accept, per op: low <= magnitude <= high. int(magnitude)
# must be 0..8 for Posterize; 1 + magnitude >= 0 for the enhancements.
_BELOW_9 = math.nextafter(9.0, 0.0)
_LIMITS = {
    "Brightness": (-1.0, math.inf, "1 + magnitude >= 0"),
    "Color": (-1.0, math.inf, "1 + magnitude >= 0"),
    "Contrast": (-1.0, math.inf, "1 + magnitude >= 0"),
    "Sharpness": (-1.0, math.inf, "1 + magnitude >= 0"),
    "Posterize": (0.0, _BELOW_9, "bits in 0..8"),
    "Solarize": (-math.inf, 255.0, "a threshold of at most 255"),
}
_LOW = torch.tensor([_LIMITS.get(op, (-math.inf,))[0] for op in OPS], dtype=torch.float64)
_HIGH = torch.tensor([_LIMITS.get(op, (0, math.inf))[1] for op in OPS], dtype=torch.float64)


def _check_magnitudes(codes: torch.Tensor, magnitudes: torch.Tensor) -> None:
    """The magnitudes torchvision's functionals would refuse, named with their images."""
    if not bool(torch.isfinite(magnitudes).all()):
        raise ValueError(f"magnitudes must be finite, got {magnitudes.tolist()}")
    device = magnitudes.device
    ok = (magnitudes >= _LOW.to(device)[codes]) & (magnitudes <= _HIGH.to(device)[codes])
    if bool(ok.all()):
        return
    b = int((~ok).nonzero()[0, 0])
    name = OPS[int(codes[b])]
    raise ValueError(
        f"image {b}: {name} needs {_LIMITS[name][2]}, got magnitude {float(magnitudes[b])}"
    )


def _check_fill(fill: Fill) -> None:
    """A uint8 fill: one value, or one per channel, each in 0..255."""
    try:
        values = torch.as_tensor(fill, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        values = torch.empty(0)
    if values.numel() not in (1, 3) or not bool(((values >= 0) & (values <= 255)).all()):
        raise ValueError(
            f"fill must be one value or one per channel (3), each in 0..255, got {fill!r}"
        )


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _is(codes: torch.Tensor, name: str) -> torch.Tensor:
    return codes == OPS.index(name)


def _to_uint8(values: torch.Tensor) -> torch.Tensor:
    return values.clamp_(0, 255).to(torch.uint8)


# ----- the blends: Brightness, Color, Contrast ------------------------------------------------


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """torchvision's float luma (ITU-R 601-2), floored as it floors it for uint8 images."""
    r, g, b = images.unbind(dim=-3)
    luma = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)
    return luma.unsqueeze(dim=-3).floor_()


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend`: images * r + other * (1 - r), clamped, as uint8; r per image,
    `other` (B, 1, H, W) or (B, 1, 1, 1).

    torchvision computes `images.mul(r).add_(other, alpha=1 - r)` with both factors rounded to
    float32 and the add fused (one rounding); float64 holds that sum exactly."""
    ratio32 = _per_image(ratio.to(torch.float32))
    alpha64 = _per_image((1.0 - ratio).to(torch.float32).double())
    scaled = images.to(torch.float32).mul_(ratio32)
    fused = scaled.double().add_(other.double().mul_(alpha64))
    return _to_uint8(fused.to(torch.float32))


def _brightness(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """A blend with black: the fused add adds 0, so torchvision's result is images * r in
    float32, with no float64 needed."""
    ratio32 = _per_image((1.0 + magnitudes).to(torch.float32))
    return _to_uint8(images.to(torch.float32).mul_(ratio32))


def _color(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """A blend with the image's grey."""
    return _blend(images, _grayscale(images), 1.0 + magnitudes)


def _contrast(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """A blend with the mean of the image's grey, one number per image."""
    mean = torch.mean(_grayscale(images), dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, 1.0 + magnitudes)


# ----- the other point ops --------------------------------------------------------------------


def _sharpness(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """Blends the inner pixels with their 3x3 smoothing (1s around a 5, over 13; the border
    stays), as torchvision. Its float32 convolution, rounded, is round(S / 13) for the integer
    stencil sum S (at most 13 * 255, an int16): S / 13 never lies within float error of a
    half, so the integer stencil is exact, and far cheaper than a convolution on a few
    images."""
    x = images.to(torch.int16)
    rows = x[..., :, :-2] + x[..., :, 1:-1]
    rows += x[..., :, 2:]
    stencil = rows[..., :-2, :] + rows[..., 1:-1, :]
    stencil += rows[..., 2:, :]
    inner = x[..., 1:-1, 1:-1]
    stencil.add_(inner, alpha=4)
    smooth = stencil.to(torch.float64).div_(13).round_()
    # inner + alpha * (smooth - inner), fused as torchvision's add_(..., alpha=) is: exact
    # in float64, then rounded once to float32
    alpha = _per_image((1.0 - (1.0 + magnitudes)).to(torch.float32).double())
    inner64 = inner.to(torch.float64)
    sharpened = smooth.sub_(inner64).mul_(alpha).add_(inner64).to(torch.float32)
    output = images.clone()
    output[..., 1:-1, 1:-1] = _to_uint8(sharpened)
    return output


def _posterize(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    bits = magnitudes.to(torch.int64)  # int(magnitude), as _apply_op
    mask = ((1 << bits) - 1) << (8 - bits)
    mask = torch.where(bits >= 8, 255, mask).to(torch.uint8)
    return images & _per_image(mask)


def _solarize(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    # torchvision compares uint8 >= a Python float in float32; for integer pixels that is
    # pixel >= ceil(float32 threshold).
    threshold = _per_image(torch.ceil(magnitudes.to(torch.float32)).to(torch.int16))
    return torch.where(images.to(torch.int16) >= threshold, images.bitwise_not(), images)


def _unparameterised(function: Callable[[torch.Tensor], torch.Tensor]) -> Kernel:
    """An op without a magnitude: torchvision's own batched functional (per image and
    channel already)."""
    return lambda images, codes, magnitudes, fill: function(images)


def _equalize(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """torchvision's `equalize_image` (PIL's lookup table, per image and channel), with two
    savings that keep its result: a plane whose table is undefined (step 0) gets the identity
    table instead of a pass choosing between images, and the table's floor division runs in
    float64, exact for these integers."""
    height, width = images.shape[-2:]
    device = images.device
    pixels = images.reshape(-1, height * width).to(torch.int64)
    histogram = torch.zeros(pixels.shape[0], 256, dtype=torch.int32, device=device)
    ones = torch.ones(1, dtype=torch.int32, device=device).expand_as(pixels)
    histogram.scatter_add_(1, pixels, ones)
    cumulative = histogram.cumsum(1, dtype=torch.int32)
    # PIL's step: the pixels other than those of the plane's largest value, over 255
    largest = histogram.gather(1, cumulative.argmax(1, keepdim=True))
    step = (height * width - largest).div_(255, rounding_mode="floor").double()
    table = torch.zeros(pixels.shape[0], 256, dtype=torch.float64, device=device)
    shifted = cumulative[:, :-1].double().add_(torch.floor(step / 2))
    torch.floor(shifted.div_(step.clamp(min=1)), out=table[:, 1:])
    identity = torch.arange(256, dtype=torch.float64, device=device)
    table = torch.where(step == 0, identity, table.clamp_(0, 255)).to(torch.uint8)
    return table.gather(1, pixels).view_as(images)


# ----- the affine ops: ShearX/Y, TranslateX/Y, Rotate -----------------------------------------


def _inverse_affine(
    angle: torch.Tensor,
    translate: tuple[torch.Tensor, torch.Tensor],
    shear: tuple[torch.Tensor, torch.Tensor],
    center: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """torchvision's `_get_inverse_affine_matrix` (scale 1) for one angle, translation, shear
    (degrees, pixels) and centre per image: float64 (B, 2, 3)."""
    rot, sx, sy = (torch.deg2rad(v) for v in (angle, *shear))
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx = torch.cos(sy), torch.tan(sx)
    a = torch.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / cos_sy
    d = torch.cos(rot) - c * tan_sx
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=1).view(-1, 2, 3)


def _warp(images: torch.Tensor, matrix: torch.Tensor, fill: Fill) -> torch.Tensor:
    """torchvision's `_affine_grid` and `_apply_grid_transform` (nearest), one matrix per
    image."""
    batch, channels, height, width = images.shape
    device = images.device
    theta = matrix.to(torch.float32)
    base = torch.empty(1, height, width, 3, dtype=torch.float32, device=device)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    base[..., 0].copy_(xs)
    base[..., 1].copy_(ys.unsqueeze_(-1))
    base[..., 2].fill_(1)
    halves = torch.tensor([0.5 * width, 0.5 * height], dtype=torch.float32, device=device)
    rescaled = theta.transpose(1, 2).div_(halves)
    grid = base.view(1, height * width, 3).expand(batch, -1, -1).bmm(rescaled)
    grid = grid.view(batch, height, width, 2)
    pixels = images.to(torch.float32)
    fills = torch.as_tensor(fill, dtype=torch.float32, device=device).flatten()
    if bool((fills != 0).any()):  # zero padding is a fill of 0; others need torchvision's mask
        mask = torch.ones(batch, 1, height, width, dtype=torch.float32, device=device)
        both = F.grid_sample(torch.cat((pixels, mask), dim=1), grid, "nearest", "zeros", False)
        pixels, mask = both[:, :channels], both[:, channels:]
        colour = fills.view(1, -1, 1, 1).expand_as(pixels)
        pixels = torch.where(mask.expand_as(pixels) < 0.5, colour, pixels)
    else:
        pixels = F.grid_sample(pixels, grid, "nearest", "zeros", False)
    return pixels.round_().to(torch.uint8)


def _affine(
    images: torch.Tensor, codes: torch.Tensor, magnitudes: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """The five affine ops as `_apply_op` calls F.affine and F.rotate, one warp for all:
    shears by atan(m) in degrees about the top-left corner, translations by int(m) pixels,
    rotations by m degrees (modulo 360, as F.rotate takes it) about the centre."""
    height, width = images.shape[-2:]
    zero = torch.zeros_like(magnitudes)
    degrees = torch.rad2deg(torch.atan(magnitudes))
    pixels = magnitudes.trunc()
    shears = _is(codes, "ShearX") | _is(codes, "ShearY")
    matrix = _inverse_affine(
        angle=torch.where(_is(codes, "Rotate"), -torch.remainder(magnitudes, 360.0), zero),
        translate=(
            torch.where(_is(codes, "TranslateX"), pixels, zero),
            torch.where(_is(codes, "TranslateY"), pixels, zero),
        ),
        shear=(
            torch.where(_is(codes, "ShearX"), degrees, zero),
            torch.where(_is(codes, "ShearY"), degrees, zero),
        ),
        center=(
            torch.where(shears, -0.5 * width, zero),
            torch.where(shears, -0.5 * height, zero),
        ),
    )
    return _warp(images, matrix, fill)


# The families of ops, each one pass of apply_ops: (its ops, its kernel; None for Identity).
FAMILIES: tuple[tuple[tuple[str, ...], Kernel | None], ...] = (
    (("Identity",), None),
    (("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"), _affine),
    (("Brightness",), _brightness),
    (("Color",), _color),
    (("Contrast",), _contrast),
    (("Sharpness",), _sharpness),
    (("Posterize",), _posterize),
    (("Solarize",), _solarize),
    (("AutoContrast",), _unparameterised(TF.autocontrast)),
    (("Equalize",), _equalize),
    (("Invert",), _unparameterised(TF.invert)),
)
_FAMILY_OF = torch.tensor(
    [next(f for f, (ops, _) in enumerate(FAMILIES) if op in ops) for op in OPS]
)
