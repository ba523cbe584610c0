#!/usr/bin/env python3
"""Build ``src/fastpacs/dicom/dcmtk_dictionary.json.gz`` from DCMTK's data dictionaries.

Orthanc names attributes with DCMTK's dictionary (public keywords, ``RETIRED_``
prefixes, ACR-NEMA and vendor private names), so fastpacs uses the same data
to give the same names. DCMTK's dictionaries are (C) OFFIS e.V., distributed
under a BSD-style licence that allows redistribution with its notice, which
is kept in the generated file.

    scripts/build_dictionary.py [/usr/share/libdcmtk17]   (apt-get install libdcmtk17)
"""

import gzip
import json
import re
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "src/fastpacs/dicom/dcmtk_dictionary.json.gz"
NOTICE = (
    "Derived from DCMTK's data dictionaries (acrnema.dic, dicom.dic, private.dic), "
    "Copyright (C) 1994-2020, OFFIS e.V., BSD-style licence: "
    "https://github.com/DCMTK/dcmtk/blob/master/COPYRIGHT"
)
VR_ALIASES = {"xs": "US or SS", "ox": "OB or OW", "lt": "OW", "na": "NONE", "px": "OB or OW"}
"""DCMTK's own VR codes as DICOM VRs; "up" (an offset, UL in files) stays, Orthanc shows no value for it."""
_RANGE = re.compile(r"^([0-9A-Fa-f]{4})(?:-([oue])?-?([0-9A-Fa-f]{4}))?$")


def _parse_range(text: str) -> tuple[int, int, str]:
    """``6000-60FF`` → (0x6000, 0x60FF, "e"); ``0009-o-00FF`` → odd; a single value → (v, v, "u")."""
    parts = text.split("-")
    if len(parts) == 1:
        value = int(parts[0], 16)
        return value, value, "u"
    if len(parts) == 2:
        return int(parts[0], 16), int(parts[1], 16), "e"
    return int(parts[0], 16), int(parts[2], 16), parts[1]


def parse(path: Path, public: dict, public_ranges: list, private: dict, private_ranges: list) -> None:
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        tag, vr, name = fields[0].strip("()"), fields[1], fields[2].replace(" ", "")
        vr = VR_ALIASES.get(vr, vr)
        if '"' in tag:
            group_text, creator, element_text = re.match(r'^([^,]+),"(.*)",([0-9A-Fa-f-]+)$', tag).groups()
            low, high, parity = _parse_range(group_text)
            element = int(element_text, 16)
            if low == high:
                private[f"{low:04x}|{creator}|{element:04x}"] = [name, vr]
            else:
                private_ranges.append([low, high, parity, creator, element, name, vr])
            continue
        group_text, element_text = tag.split(",")
        group_low, group_high, parity = _parse_range(group_text)
        element_low, element_high, _ = _parse_range(element_text)
        if group_low == group_high and element_low == element_high:
            public[f"{group_low:04x}{element_low:04x}"] = [name, vr]
        else:
            public_ranges.append([group_low, group_high, parity, element_low, element_high, name, vr])


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/libdcmtk17")
    public: dict = {}
    public_ranges: list = []
    private: dict = {}
    private_ranges: list = []
    for name in ("acrnema.dic", "dicom.dic", "private.dic"):
        parse(folder / name, public, public_ranges, private, private_ranges)
    document = {
        "notice": NOTICE,
        "public": public,
        "public_ranges": public_ranges,
        "private": private,
        "private_ranges": private_ranges,
    }
    OUTPUT.write_bytes(gzip.compress(json.dumps(document, sort_keys=True).encode(), mtime=0))
    print(f"{OUTPUT}: {len(public)} public, {len(public_ranges)} ranges, {len(private)} private entries")


if __name__ == "__main__":
    main()
