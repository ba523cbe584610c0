"""Lossless compression to JPEG Lossless (ITU T.81 process 14: Huffman, non-hierarchical), as Orthanc
1.10.1 (DCMTK) writes it.

Two transfer syntaxes use it: JPEG Lossless, First-Order Prediction (…4.70, selection value 1: the
sample to the left) and JPEG Lossless (…4.57, any selection value: DCMTK's encoder in Orthanc chooses
6, ``Rb + ((Ra - Rc) >> 1)``). As DCMTK's "true lossless" mode, the pixel cells are encoded as they
are stored, bits above HighBit and two's complement signs included: the precision is BitsAllocated (8
or 16), the first prediction of each component 2^(P-1), point transform 0, differences modulo 2^16.
Every BitsStored up to 16, signed or not, thus comes back byte for byte. One, or three samples per
pixel as one interleaved scan; PlanarConfiguration becomes 0 (colour-by-pixel). One fragment per
frame after a basic offset table.

The stream has DCMTK's (libjpeg's) layout, so that fastpacs's frames are byte-identical to Orthanc's
from the same pixels: a JFIF APP0 for MONOCHROME1/2 and YBR_FULL, component identifiers 1, 2, 3 for
YBR_FULL (luminance with Huffman table 0, chrominance with table 1), 0, 1, 2 for RGB (and 0 for
PALETTE COLOR), all with table 0. Huffman tables are the optimal ones for the frame, computed as
libjpeg does (two passes: the difference categories are counted, then coded): what DCMTK writes, for
microseconds per frame, and smaller than a standard-style fixed table (0.5 % on a 512x512 CT frame,
38 % on full-range noise, whose large categories such a table codes long). A frame of odd length
gets a 0xFF fill byte before its EOI marker, as DCMTK writes it. As DCMTK, the compression is noted at
the head of DerivationDescription, with its ratio; nothing else of the image changes (a lossless
compression makes no derived image: no LossyImageCompression, same SOP Instance UID).

The per-sample work (prediction, categories, Huffman coding with byte stuffing) runs in Numba
kernels; :func:`warm_up` compiles them (or loads them from Numba's cache).
"""

import math
import struct

import numpy as np
from numba import njit
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
SELECTION_VALUES = {JPEG_LOSSLESS_SV1: 1, JPEG_LOSSLESS: 6}
"""The predictor written for each transfer syntax (for …4.57, the one DCMTK's encoder in Orthanc uses)."""

_CATEGORIES = 17
"""Difference categories SSSS 0..16 (T.81 Table H.2): the symbols of a lossless Huffman table."""
_LONGEST_CODE = 16
_DESCRIPTION_LIMIT = 1024
"""The longest DerivationDescription (ST)."""
_JFIF = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
"""JFIF 1.01, no density unit, 1:1 aspect, no thumbnail: libjpeg's default APP0."""


class NotEncodableError(ValueError):
    """The pixel data cannot be written as JPEG Lossless (DCMTK refuses it too)."""


class _Layout:
    """How DCMTK (libjpeg) describes the components of an image with this PhotometricInterpretation:
    their identifiers, the Huffman table of each, and whether a JFIF marker is written."""

    def __init__(self, identifiers: tuple[int, ...], tables: tuple[int, ...], jfif: bool) -> None:
        self.identifiers = identifiers
        self.tables = np.array(tables, np.int64)
        self.jfif = jfif


_LAYOUTS = {
    "MONOCHROME1": _Layout((1,), (0,), jfif=True),
    "MONOCHROME2": _Layout((1,), (0,), jfif=True),
    "PALETTE COLOR": _Layout((0,), (0,), jfif=False),
    "RGB": _Layout((0, 1, 2), (0, 0, 0), jfif=False),
    "YBR_FULL": _Layout((1, 2, 3), (0, 1, 1), jfif=True),
}
"""The PhotometricInterpretations that can be encoded. Subsampled YBR (YBR_FULL_422...) cannot, as in
Orthanc: its stored samples are not one per component and pixel."""


def compress(dataset: Dataset, transfer_syntax: str) -> None:
    """Replace the native pixel data of ``dataset`` (little endian) by JPEG Lossless frames."""
    predictor = SELECTION_VALUES[transfer_syntax]
    frames = native_frames(dataset)
    layout = _LAYOUTS[str(dataset.PhotometricInterpretation)]
    precision = int(dataset.BitsAllocated)
    encoded = [encode_frame(frame, precision, predictor, layout) for frame in frames]
    dataset.PixelData = encapsulate(encoded, has_bot=True)
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    if frames.shape[-1] == 3:
        dataset.PlanarConfiguration = 0
    ratio = frames.size * precision // 8 / sum(len(frame) for frame in encoded)
    _describe_derivation(dataset, predictor, ratio)


def _describe_derivation(dataset: Dataset, predictor: int, ratio: float) -> None:
    """DerivationDescription as DCMTK writes it after a lossless compression: the compression, then the
    description the image had, in brackets (the whole cut to ST's 1024 characters)."""
    description = (
        f"Lossless JPEG compression, selection value {predictor}, point transform 0, "
        f"compression ratio {compression_ratio_text(ratio)}"
    )
    previous = dataset.get("DerivationDescription")
    if previous:
        description += f" [{previous}]"
        if len(description) > _DESCRIPTION_LIMIT:
            description = description[: _DESCRIPTION_LIMIT - 4] + "...]"
    dataset.DerivationDescription = description


def compression_ratio_text(ratio: float, precision: int = 5) -> str:
    """A compression ratio as DCMTK writes it (``OFStandard::ftoa``, ``%G`` with 5 digits), digit by
    digit: as there, zeros opening the fraction of a number of 1 or more are not counted as significant
    digits (5.0196078 is "5.01961" where ``%.5G`` gives "5.0196"); the last digit is rounded half up."""
    fraction, integer = math.modf(ratio)
    if integer >= 10**precision or (not integer and fraction < 0.0001):
        return f"{ratio:.{precision}G}"  # DCMTK's exponent form, for ratios no image comes near
    text = list(str(int(integer))) if integer else ["0"]
    if integer:
        precision -= len(text)
    if precision:
        text.append(".")
        if fraction:
            digit = 0.0
            while not digit:
                fraction, digit = math.modf(fraction * 10)
                text.append(str(int(digit)))
            while (precision := precision - 1) and fraction:
                fraction, digit = math.modf(fraction * 10)
                text.append(str(int(digit)))
    if fraction and math.modf(fraction * 10)[1] > 4:
        _round_up(text)
    if "." in text:
        while text[-1] == "0":
            text.pop()
        if text[-1] == ".":
            text.pop()
    return "".join(text)


def _round_up(digits: list[str]) -> None:
    """Add one to the last digit of a decimal number written as a list of characters, carrying."""
    for index in range(len(digits) - 1, -1, -1):
        if digits[index] == ".":
            continue
        if digits[index] != "9":
            digits[index] = str(int(digits[index]) + 1)
            return
        digits[index] = "0"
    digits.insert(0, "1")


def native_frames(dataset: Dataset) -> np.ndarray:
    """The stored pixel cells as a (frames, rows, columns, samples) array of uint16, whatever the
    planar configuration; :class:`NotEncodableError` for pixel data JPEG Lossless cannot hold."""
    allocated = dataset.get("BitsAllocated")
    stored = dataset.get("BitsStored")
    samples = dataset.get("SamplesPerPixel", 1)
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    layout = _LAYOUTS.get(photometric)
    if (
        "PixelData" not in dataset
        or allocated not in (8, 16)
        or not isinstance(stored, int)
        or not 1 < stored <= allocated
        or layout is None
        or samples != len(layout.identifiers)
    ):
        raise NotEncodableError(
            f"{photometric} with {samples} samples, {stored} of {allocated} bits, or no native pixels"
        )
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    count = int(dataset.get("NumberOfFrames") or 1)
    cells = np.frombuffer(dataset.PixelData, dtype="<u2" if allocated == 16 else "u1")
    needed = count * rows * columns * samples
    if rows == 0 or columns == 0 or count < 1 or cells.size < needed:
        raise NotEncodableError(f"{cells.size} pixel cells for {count} frames of {rows}x{columns}x{samples}")
    cells = cells[:needed]
    if samples == 3 and dataset.get("PlanarConfiguration", 0) == 1:
        view = np.moveaxis(cells.reshape(count, samples, rows, columns), 1, -1)
    else:
        view = cells.reshape(count, rows, columns, samples)
    # A writeable copy: the kernels are compiled for writeable arrays only (a read-only one is another
    # signature, compiled on first use).
    frames = np.empty((count, rows, columns, samples), np.uint16)
    frames[...] = view
    return frames


def encode_frame(samples: np.ndarray, precision: int, predictor: int, layout: _Layout) -> bytes:
    """One JPEG Lossless stream (SOI to EOI) of a (rows, columns, components) uint16 frame."""
    differences, histograms = _differences(samples, precision, predictor, layout.tables)
    tables = sorted(set(layout.tables.tolist()))
    lengths = np.zeros((2, _CATEGORIES), np.int64)
    codes = np.zeros((2, _CATEGORIES), np.int64)
    segments = [b"\xff\xd8"]
    if layout.jfif:
        segments.append(_marker(0xE0, _JFIF))
    rows, columns, components = samples.shape
    frame_header = struct.pack(">BHHB", precision, rows, columns, components)
    for identifier, table in zip(layout.identifiers, layout.tables.tolist(), strict=True):
        frame_header += bytes((identifier, 0x11, table))
    segments.append(_marker(0xC3, frame_header))
    for table in tables:
        counts, symbols = _optimal_table(histograms[table])
        lengths[table], codes[table] = _codes(counts, symbols)
        segments.append(_marker(0xC4, bytes((table,)) + counts[1:].tobytes() + symbols.tobytes()))
    scan_header = bytes((components,))
    for identifier, table in zip(layout.identifiers, layout.tables.tolist(), strict=True):
        scan_header += bytes((identifier, table * 0x11))
    segments.append(_marker(0xDA, scan_header + bytes((predictor, 0, 0))))
    bits = int((histograms * (lengths + np.arange(_CATEGORIES) % 16)).sum())
    segments.append(_entropy_code(differences, layout.tables, codes, lengths, (bits + 7) // 8 * 2).tobytes())
    if sum(len(segment) for segment in segments) % 2:
        segments.append(b"\xff")  # a fill byte before the marker (T.81 B.1.1.2): even fragments
    segments.append(b"\xff\xd9")
    return b"".join(segments)


def _marker(code: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, code, len(payload) + 2) + payload


def _codes(counts: np.ndarray, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The code length and code of each symbol of a table (T.81 Annex C: canonical codes, in the order
    of the symbols by length)."""
    lengths = np.zeros(_CATEGORIES, np.int64)
    codes = np.zeros(_CATEGORIES, np.int64)
    code = 0
    position = 0
    for length in range(1, _LONGEST_CODE + 1):
        for symbol in symbols[position : position + counts[length]]:
            lengths[symbol], codes[symbol] = length, code
            code += 1
        position += counts[length]
        code <<= 1
    return lengths, codes


def warm_up() -> None:
    """Compile the kernels (or load them from the cache) for the one signature they are used with."""
    frame = np.arange(12, dtype=np.uint16).reshape(2, 2, 3)
    encode_frame(frame, 16, 6, _LAYOUTS["YBR_FULL"])


_KERNEL_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}
_BIT_LENGTHS = np.array([int(value).bit_length() for value in range(256)], np.int64)


@njit(**_KERNEL_OPTIONS)
def _category(difference):  # pragma: no cover - compiled
    """SSSS: the bit length of the magnitude of a difference in -32768..32767 (16 for -32768)."""
    magnitude = abs(difference)
    if magnitude < 256:
        return _BIT_LENGTHS[magnitude]
    return 8 + _BIT_LENGTHS[magnitude >> 8]


@njit(**_KERNEL_OPTIONS)
def _differences(samples, precision, predictor, tables):  # pragma: no cover - compiled
    """The difference of each sample from its prediction (T.81 H.1.2.1), modulo 2^16 in -32768..32767,
    and the count of each difference category by Huffman table (first pass)."""
    rows, columns, components = samples.shape
    differences = np.empty((rows, columns, components), np.int32)
    histograms = np.zeros((2, 17), np.int64)
    initial = np.int64(1) << (precision - 1)
    for y in range(rows):
        for x in range(columns):
            for c in range(components):
                if x == 0:
                    prediction = initial if y == 0 else np.int64(samples[y - 1, 0, c])
                elif y == 0:
                    prediction = np.int64(samples[y, x - 1, c])
                else:
                    a = np.int64(samples[y, x - 1, c])
                    b = np.int64(samples[y - 1, x, c])
                    corner = np.int64(samples[y - 1, x - 1, c])
                    if predictor == 1:
                        prediction = a
                    elif predictor == 2:
                        prediction = b
                    elif predictor == 3:
                        prediction = corner
                    elif predictor == 4:
                        prediction = a + b - corner
                    elif predictor == 5:
                        prediction = a + ((b - corner) >> 1)
                    elif predictor == 6:
                        prediction = b + ((a - corner) >> 1)
                    else:
                        prediction = (a + b) >> 1
                difference = ((np.int64(samples[y, x, c]) - prediction + 32768) & 0xFFFF) - 32768
                differences[y, x, c] = difference
                histograms[tables[c], _category(difference)] += 1
    return differences, histograms


@njit(**_KERNEL_OPTIONS)
def _optimal_table(frequencies):  # pragma: no cover - compiled
    """The optimal Huffman table of the counted categories, limited to 16-bit codes, as libjpeg's
    ``jpeg_gen_optimal_table`` builds it (the same table as DCMTK's from the same counts): the count of
    codes of each length 1..16 (index 0 unused) and the symbols by increasing code length."""
    size = 18  # the 17 categories, and one reserved symbol so that no code is all ones
    frequency = np.zeros(size, np.int64)
    frequency[:17] = frequencies
    frequency[17] = 1
    code_size = np.zeros(size, np.int64)
    others = np.full(size, -1, np.int64)
    while True:
        # The two least frequent trees (the later symbol among equals, as libjpeg), merged.
        first = -1
        least = np.int64(1) << 62
        for symbol in range(size):
            if frequency[symbol] != 0 and frequency[symbol] <= least:
                least = frequency[symbol]
                first = symbol
        second = -1
        least = np.int64(1) << 62
        for symbol in range(size):
            if frequency[symbol] != 0 and frequency[symbol] <= least and symbol != first:
                least = frequency[symbol]
                second = symbol
        if second < 0:
            break
        frequency[first] += frequency[second]
        frequency[second] = 0
        code_size[first] += 1
        while others[first] >= 0:
            first = others[first]
            code_size[first] += 1
        others[first] = second
        code_size[second] += 1
        while others[second] >= 0:
            second = others[second]
            code_size[second] += 1
    counts = np.zeros(33, np.int64)
    for symbol in range(size):
        if code_size[symbol]:
            counts[code_size[symbol]] += 1
    # Codes longer than 16 bits: a pair of them become one code one bit shorter and one a prefix longer
    # (JPEG Annex K.2).
    for length in range(32, 16, -1):
        while counts[length] > 0:
            shorter = length - 2
            while counts[shorter] == 0:
                shorter -= 1
            counts[length] -= 2
            counts[length - 1] += 1
            counts[shorter + 1] += 2
            counts[shorter] -= 1
    longest = 16
    while counts[longest] == 0:
        longest -= 1
    counts[longest] -= 1  # the reserved symbol's code
    symbols = np.zeros(17, np.uint8)
    position = 0
    for length in range(1, 33):
        for symbol in range(17):
            if code_size[symbol] == length:
                symbols[position] = symbol
                position += 1
    return counts[:17].astype(np.uint8), symbols[:position]


@njit(**_KERNEL_OPTIONS)
def _entropy_code(differences, tables, codes, lengths, capacity):  # pragma: no cover - compiled
    """The entropy-coded segment (second pass): each difference's category code, then its SSSS low bits
    (ones' complement if negative; none for 16), 0xFF bytes stuffed with 0x00, the last byte padded
    with ones (T.81 F.1.2.3)."""
    output = np.empty(capacity, np.uint8)
    position = 0
    buffer = np.int64(0)
    pending = 0
    rows, columns, components = differences.shape
    for y in range(rows):
        for x in range(columns):
            for c in range(components):
                difference = np.int64(differences[y, x, c])
                category = _category(difference)
                table = tables[c]
                size = lengths[table, category]
                value = codes[table, category]
                if 0 < category < 16:
                    if difference < 0:
                        difference -= 1
                    value = (value << category) | (difference & ((np.int64(1) << category) - 1))
                    size += category
                buffer = (buffer << size) | value
                pending += size
                while pending >= 8:
                    pending -= 8
                    byte = (buffer >> pending) & 0xFF
                    output[position] = byte
                    position += 1
                    if byte == 0xFF:
                        output[position] = 0
                        position += 1
                buffer &= (np.int64(1) << pending) - 1
    if pending:
        byte = ((buffer << (8 - pending)) | ((1 << (8 - pending)) - 1)) & 0xFF
        output[position] = byte
        position += 1
        if byte == 0xFF:
            output[position] = 0
            position += 1
    return output[:position]
