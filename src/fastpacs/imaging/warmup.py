"""Compiling the Numba kernels before any request needs them.

At start-up the server compiles every kernel signature once, in a
throw-away process, into a disk cache (``NUMBA_CACHE_DIR``, set here to a
folder fastpacs owns unless the environment sets it). Each worker then
loads the compiled code from that cache when it starts: compiling from
several processes at once would race on the cache files, and compiling in
the server process would load LLVM there for nothing.

That throw-away process costs a second or more of every start, loading
Numba only to find the cache up to date; a stamp written beside the cache
records what the compiled code depends on (the kernels' source as Numba
checks it, Numba, llvmlite, Python and the CPU), and while it matches the
start-up goes straight to the workers.
"""

import hashlib
import multiprocessing
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CACHE_ENVIRONMENT_VARIABLE = "NUMBA_CACHE_DIR"
STAMP_NAME = "fastpacs-kernels.stamp"
KERNEL_SOURCES = (
    Path(__file__).with_name("kernels.py"),
    Path(__file__).parent.parent / "dicom" / "jpeg_lossless.py",
    Path(__file__).parent.parent / "dicom" / "writer.py",
)
GRAY_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)
"""Stored grayscale pixel types the kernels are compiled for."""
CLAMPED_TYPES = (np.uint8, np.uint16, np.int16)
"""Target types of ``image-uint8``, ``image-uint16`` and ``image-int16``."""


def default_cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastpacs" / "numba"


def configure_cache_folder() -> Path:
    """Point Numba's cache at fastpacs's folder (before Numba is imported by this process or its children)."""
    folder = Path(os.environ.setdefault(CACHE_ENVIRONMENT_VARIABLE, str(default_cache_folder())))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def compile_kernels() -> None:
    """Run every kernel once per signature, which compiles it or loads it from the cache."""
    from fastpacs.imaging import kernels  # noqa: PLC0415 - Numba must see NUMBA_CACHE_DIR first

    for gray in GRAY_TYPES:
        values = np.zeros(4, gray)
        kernels.min_max(values)
        kernels.stretch_to_uint8(values, 0, 1, False)
        kernels.rescale_to_float32(values, 1.0, 0.0)
        kernels.palette_to_rgb(values, np.zeros((1, 3), np.uint8), 0)
        for target in CLAMPED_TYPES:
            kernels.clip_into(values, np.empty(4, target), 0, 1)
    kernels.ybr_full_to_rgb(np.zeros(3, np.uint8))
    kernels.png_up_filter(np.zeros((2, 2), np.uint8))
    kernels.walk_file_meta(np.zeros(8, np.uint8), 0)
    kernels.walk_elements(
        np.zeros(8, np.uint8), 0, False, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64)
    )


def _tiny_ct() -> Dataset:
    """A 4×4 signed 16-bit image, built in memory, to run the whole decode-render-encode path."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.Rows = dataset.Columns = 4
    dataset.SamplesPerPixel = 1
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = np.arange(-8, 8, dtype="<i2").tobytes()
    return dataset


def warm_worker() -> None:
    """A worker's start-up: load the kernels and import every module a rendering touches."""
    from fastpacs.imaging.decode import decode_frame, describe  # noqa: PLC0415
    from fastpacs.imaging.encode import ImageFormat, encode_image  # noqa: PLC0415
    from fastpacs.imaging.render import Operation, render  # noqa: PLC0415

    compile_kernels()
    dataset = _tiny_ct()
    frame = decode_frame(dataset, describe(dataset), 0)
    for image_format in ImageFormat:
        encode_image(render(frame, Operation.PREVIEW), image_format)


def compiled_signatures() -> dict[str, int]:
    """How many signatures each kernel holds in this process (compiled or loaded)."""
    from fastpacs.imaging import kernels  # noqa: PLC0415

    names = ("min_max", "stretch_to_uint8", "clip_into", "rescale_to_float32", "ybr_full_to_rgb")
    names += ("palette_to_rgb", "png_up_filter", "walk_file_meta", "walk_elements")
    return {name: len(getattr(kernels, name).signatures) for name in names}


def prepare_kernel_cache() -> Path:
    """Fill the kernel cache from one child process, unless its stamp shows it is up to date.

    The worker pool must start after this.
    """
    folder = configure_cache_folder()
    stamp = folder / STAMP_NAME
    key = cache_key()
    if stamp.exists() and stamp.read_text() == key and any(folder.rglob("*.nbi")):
        return folder
    compile_in_child()
    temporary = stamp.with_suffix(f".{os.getpid()}")
    temporary.write_text(key)
    temporary.replace(stamp)
    return folder


def compile_every_kernel() -> None:
    """The rendering kernels, and the JPEG Lossless encoder's: the workers load the latter from the
    cache on their first transcoding (a fraction of a second) instead of compiling it (seconds)."""
    from fastpacs.dicom import jpeg_lossless  # noqa: PLC0415 - Numba must see NUMBA_CACHE_DIR first

    compile_kernels()
    jpeg_lossless.warm_up()


def compile_in_child() -> None:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as executor:
        executor.submit(compile_every_kernel).result()


def cache_key() -> str:
    """What Numba's cached code depends on; Numba itself checks the source's time and size."""
    parts = []
    for path in KERNEL_SOURCES:
        source = path.stat()
        parts += [hashlib.sha256(path.read_bytes()).hexdigest(), str(source.st_mtime), str(source.st_size)]
    parts += [
        version("numba"),
        version("llvmlite"),
        sys.version,
        platform.machine(),
        _cpu_description(),
    ]
    return "\n".join(parts) + "\n"


def _cpu_description() -> str:
    """The CPU model and features (Numba compiles for the host CPU)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return hashlib.sha256("\n".join(sorted(set(wanted))).encode()).hexdigest()
