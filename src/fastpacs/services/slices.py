"""/series/{id}/ordered-slices: the frames of a series in the order a viewer stacks them.

Orthanc's rule, from the indexed main tags (no file is read):

1. By position (a "Volume"): when the series has more than one instance,
   a slice normal is known (the cross product of the two direction cosines
   of ImageOrientationPatient, from the series or else its first instance),
   every instance has an ImagePositionPatient, no instance is tilted
   against that normal, and the projections of the positions on the normal
   are not all the same. Slices go by increasing projection.
2. Otherwise by IndexInSeries (a "Sequence"), when every instance has one
   (or the series has a single instance).
3. Otherwise the series cannot be ordered (Orthanc's error 2040).

A multi-frame instance contributes all its frames, in order.
"""

import math
from dataclasses import dataclass
from typing import Any

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.imaging.formats import InvalidFrameCountError, number_of_frames
from fastpacs.index.database import Database
from fastpacs.index.schema import Resource

Vector = tuple[float, float, float]
SAME_POSITION = 10 * 1.1920929e-07
"""Orthanc's threshold: ten single-precision epsilons between the first and last projections."""
PARALLEL = 1e-3


@dataclass
class Slice:
    instance: RawId
    frames: int
    position: Vector | None
    normal: Vector | None
    index_in_series: int | None


def _numbers(text: str | None, count: int) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(part) for part in text.split("\\")]
    except ValueError:
        return None
    return values if len(values) == count and all(math.isfinite(value) for value in values) else None


def normal_of(orientation: str | None) -> Vector | None:
    """The slice normal of an ImageOrientationPatient value (row cosines × column cosines)."""
    cosines = _numbers(orientation, 6)
    if cosines is None:
        return None
    (ax, ay, az, bx, by, bz) = cosines
    return (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)


def _dot(a: Vector, b: Vector) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _parallel(a: Vector, b: Vector) -> bool:
    norms = math.sqrt(_dot(a, a) * _dot(b, b))
    return norms > 0 and abs(abs(_dot(a, b)) / norms - 1) < PARALLEL


def _slice(rid: RawId, record: Resource) -> Slice:
    tags = record.main_tags
    position = _numbers(tags.get("ImagePositionPatient"), 3)
    try:
        frames = number_of_frames(tags.get("NumberOfFrames"))
    except InvalidFrameCountError:
        frames = 1
    return Slice(
        instance=rid,
        frames=frames,
        position=(position[0], position[1], position[2]) if position else None,
        normal=normal_of(tags.get("ImageOrientationPatient")),
        index_in_series=record.index_in_series,
    )


def _by_position(slices: list[Slice], normal: Vector | None) -> list[Slice] | None:
    if len(slices) <= 1 or normal is None:
        return None
    for item in slices:
        if item.position is None or (item.normal is not None and not _parallel(item.normal, normal)):
            return None
    ordered = sorted(slices, key=lambda item: _dot(item.position, normal))  # type: ignore[arg-type]
    first, last = (_dot(item.position, normal) for item in (ordered[0], ordered[-1]))  # type: ignore[arg-type]
    return None if abs(last - first) <= SAME_POSITION else ordered


def _by_index(slices: list[Slice]) -> list[Slice] | None:
    if len(slices) <= 1:
        return slices
    if any(item.index_in_series is None for item in slices):
        return None
    return sorted(slices, key=lambda item: item.index_in_series)  # type: ignore[arg-type,return-value]


def ordered_slices(series_id: RawId, series: Resource, slices: list[Slice]) -> dict[str, Any]:
    normal = normal_of(series.main_tags.get("ImageOrientationPatient"))
    if normal is None:
        normal = next((item.normal for item in slices if item.normal is not None), None)
    ordered = _by_position(slices, normal)
    volume = ordered is not None
    if ordered is None:
        ordered = _by_index(slices)
    if ordered is None:
        raise OrthancError(
            ErrorCode.CANNOT_ORDER_SLICES, f"Unable to order the slices of series {format_id(series_id)}"
        )
    paths = [f"/instances/{format_id(item.instance)}" for item in ordered]
    return {
        "Dicom": [f"{path}/file" for path in paths],
        "Slices": [
            f"{path}/frames/{frame}"
            for path, item in zip(paths, ordered, strict=True)
            for frame in range(item.frames)
        ],
        "SlicesShort": [[format_id(item.instance), 0, item.frames] for item in ordered],
        "Type": "Volume" if volume else "Sequence",
    }


class SliceService:
    def __init__(self, database: Database):
        self.database = database

    def ordered(self, series_id: RawId) -> dict[str, Any]:
        with self.database.read() as view:
            series = view.resource_at(series_id, Level.SERIES)
            if series is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            slices = []
            for child in view.children(series_id):
                record = view.resource(child)
                if record is not None:
                    slices.append(_slice(child, record))
        return ordered_slices(series_id, series, slices)
