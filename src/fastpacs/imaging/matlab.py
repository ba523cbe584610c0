"""Orthanc's ``/matlab`` text: the stored values of a frame as a MATLAB/Octave expression.

Grayscale: ``double([ v v ... ; v v ... ])``, one ``;``-separated group per
row. Colour: ``double(permute(reshape([ r g b r g b ... ], [ 3 H W ]), [ 3 2 1 ]))``
(rows before columns: Orthanc's order, kept for byte-identical answers).
"""

import numpy as np


def _values(pixels: np.ndarray) -> str:
    return " ".join(map(str, pixels.reshape(-1).tolist()))


def matlab_text(pixels: np.ndarray) -> bytes:
    if pixels.ndim == 3:
        height, width = pixels.shape[:2]
        text = f"double(permute(reshape([ {_values(pixels)} ], [ 3 {height} {width} ]), [ 3 2 1 ]))"
    else:
        text = f"double([ {' ; '.join(_values(row) for row in pixels)} ])"
    return text.encode()
