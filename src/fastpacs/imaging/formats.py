"""What the server process needs to know of images, without the decoders and Numba kernels.

The server process names operations and formats, checks frame counts and
turns imaging errors into answers; the pixels themselves are only touched
in the worker processes (``fastpacs.pool.images``), which import the
kernels. Keeping this module free of them keeps Numba and LLVM (about 60 MB)
out of the server process.
"""

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_JPEG_QUALITY = 90


class ImageFormat(StrEnum):
    """Output formats, by media type."""

    PNG = "image/png"
    JPEG = "image/jpeg"
    PAM = "image/x-portable-arbitrarymap"


class Operation(StrEnum):
    PREVIEW = "preview"
    UINT8 = "image-uint8"
    UINT16 = "image-uint16"
    INT16 = "image-int16"


@dataclass(frozen=True)
class Rendering:
    """What a /rendered request asks for; ``None`` means "from the file" or "unchanged"."""

    window_center: float | None = None
    window_width: float | None = None
    width: int = 0
    height: int = 0
    smooth: bool = False


class ImagingError(Exception):
    """A frame that cannot be given in the form asked for."""


class NoPixelDataError(ImagingError):
    """The instance has no pixel data (a structured report, an RT plan, an encapsulated PDF...)."""


class FrameOutOfRangeError(ImagingError):
    """The frame index is not below the number of frames."""


class UndecodableImageError(ImagingError):
    """Pixel data that no codec can decode, or a pixel layout that makes no image."""


class BadPixelDataError(UndecodableImageError):
    """Pixel data Orthanc refuses as a bad file (400 "Bad file format" for ``raw``, ``matlab``, ``numpy``):
    native pixel data shorter than the frames its attributes declare, or 32-bit float pixels
    (FloatPixelData)."""


class InvalidFrameCountError(ImagingError):
    """NumberOfFrames is present but not a number (Orthanc: "Bad file format")."""


class UnsupportedConversionError(ImagingError):
    """A conversion the pixels do not allow (``image-uint8`` of a colour image, for instance)."""


NATIVE_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    }
)
"""Transfer syntaxes whose pixel data is not encapsulated (any other is)."""


def out_of_range_is_not_found(transfer_syntax: str | None) -> bool:
    """Whether Orthanc answers a frame index beyond the last with an empty 404 rather than a 415.

    Orthanc 1.10.1 finds the frames of native pixel data by their length (an index beyond them is a
    404, once the image has been decoded: undecodable pixels are its 415 first) and the fragments of
    encapsulated pixel data by their offsets (an index beyond them is a 415), whatever the number of
    frames.
    """
    return transfer_syntax is None or transfer_syntax in NATIVE_TRANSFER_SYNTAXES


def number_of_frames(value: object) -> int:
    """NumberOfFrames as Orthanc reads it: 1 when absent or empty, an error when not a number."""
    text = "" if value is None else str(value).strip()
    if not text:
        return 1
    try:
        return max(int(text), 1)
    except ValueError:
        raise InvalidFrameCountError() from None
