"""Differences from the reference Orthanc that the differential tests accept.

Keys are ``(request name, difference path)``; ``*`` matches any text in either
(see ``harness.py`` for the paths). Every entry says why.

``ALLOWED``: deliberate, harmless differences.
``KNOWN_BUGS``: fastpacs bugs found by these tests and not fixed yet; a test
meeting one is reported as an expected failure with the text given here.
Remove the entry with the fix (the terminal summary lists entries no test met).
"""

ALLOWED: dict[tuple[str, str], str] = {
    ("*", "error-header:content-type"): (
        "Orthanc sends its error answers without a Content-Type; fastpacs's framework always labels "
        "them (application/json for the JSON error body, text/plain for an empty one). Clients act on "
        "the status code, and a labelled JSON body is the more correct HTTP."
    ),
    ("after-upload *", "$*.IsStable"): (
        "Compared right after an upload, a resource whose last new instance arrived about StableAge "
        "ago can turn stable between the request to Orthanc and the one to fastpacs."
    ),
    ("*", "*[5da4226e-dd6b44a9-4ebc294f-cafcba5d-338e476d].MainDicomTags.ImageOrientationPatient"): (
        "Series of J2K_pixelrep_mismatch.dcm, an ISO 2022 IR 13 file: Orthanc turns the value "
        "delimiter 0x5C of multi-valued DS into '¥' (the JIS X 0201 glyph at that code); fastpacs keeps "
        "the backslash DICOM defines as the delimiter, so clients splitting values keep working."
    ),
    ("*", "*[8f9fa05b-2e546f2f-5862b5b8-b0a6d482-33abb909].MainDicomTags.Image*Patient"): (
        "Instance of J2K_pixelrep_mismatch.dcm: the same '¥' delimiter as its series above."
    ),
    ("* negative *", "*"): (
        "Negative since/limit: Orthanc passes a negative offset to SQLite (200 with an arbitrary pair "
        "of resources) and wraps a negative limit to 2^32-1, which overflows ('/changes?limit=-1' → no "
        "change but Done true; '/patients?limit=-1' → everything). fastpacs refuses them in listings "
        "as any other malformed number (400 'Bad type for a parameter') and reads them as 0 in /changes."
    ),
    ("*", "*[d5b45f0e-8c2ade11-739bcb86-d0e5a860-9af1fbb4].MainDicomTags.PatientName"): (
        "Patient of chrH32.dcm (ISO 2022 IR 13 + IR 87): Orthanc loses the kanji "
        "('ﾔﾏﾀﾞ^ﾀﾛｳ=;3ED^B@O:=$d$^$@^$?$m$&'); fastpacs decodes it as pydicom and the DICOM standard's "
        "example do ('ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう')."
    ),
    ("*", "*[4c6178a8-c4ac4bfc-603cf65a-329e3698-8187a067].PatientMainDicomTags.PatientName"): (
        "Study of chrH32.dcm: the same PatientName as its patient above."
    ),
    ("*", "*[5da4226e-dd6b44a9-4ebc294f-cafcba5d-338e476d].MainDicomTags.0020,0037*"): (
        "The same ImageOrientationPatient as above, its tag by number (?short, ?full)."
    ),
    ("*", "*[8f9fa05b-2e546f2f-5862b5b8-b0a6d482-33abb909].MainDicomTags.0020,003*"): (
        "The same Image*Patient as above, their tags by number (?short, ?full)."
    ),
    ("*", "*[d5b45f0e-8c2ade11-739bcb86-d0e5a860-9af1fbb4].MainDicomTags.0010,0010*"): (
        "The same PatientName as above, its tag by number (?short, ?full)."
    ),
    ("*", "*[4c6178a8-c4ac4bfc-603cf65a-329e3698-8187a067].PatientMainDicomTags.0010,0010*"): (
        "The same PatientName as above, its tag by number (?short, ?full)."
    ),
    ("* with plus sign", "*"): (
        "Query-string decoding: Orthanc neither percent-decodes query arguments nor reads '+' as a "
        "space ('limit=%2B3' and even 'limit=%33' are malformed for it, 'limit=+3' is 3); fastpacs "
        "decodes them as HTTP clients encode them (httpx sends '+' as %2B and a space as '+')."
    ),
    ("* with a space", "*"): ("Query-string decoding, as in the entry above."),
    ("wrong-level ID * relatives", "*"): (
        "A child list or parent asked of an ID of another level: Orthanc answers inconsistently "
        "(/patients/{study}/studies → 200 [], /studies/{series}/series → 200 [], "
        "/series/{instance}/instances → 400 'Bad type for a parameter', /instances/{patient}/patient "
        "→ empty 404); fastpacs answers 404 'Unknown resource' as for any unknown ID below a route."
    ),
    ("upload multipart", "*"): (
        "Orthanc stores every part of a multipart/form-data upload but answers 200 with an empty body "
        "(no Content-Type); fastpacs answers the list of upload results, as for a ZIP. The stored "
        "resources are compared right after."
    ),
    ("system", "$.FastpacsVersion"): (
        "fastpacs adds its own version to /system (Version stays 1.10.1, the API level it implements)."
    ),
}


def _content_paths(attributes: dict[str, str]) -> list[str]:
    """Where attributes (tag: keyword) appear in the content views: /tags, ?short, ?simplify."""
    return [path for tag, name in attributes.items() for path in (f"$.{tag}.Value", f"$.{tag}", f"$.{name}")]


_YEN_DELIMITER = (
    "ISO 2022 IR 13 file: Orthanc turns the value delimiter 0x5C of multi-valued strings into '¥' "
    "('ORIGINAL¥PRIMARY¥AXIAL¥NORMAL'; see the main-tags entries above); fastpacs keeps the backslash."
)
ALLOWED.update(
    {
        ("content J2K_pixelrep_mismatch.dcm *", path): _YEN_DELIMITER
        for path in _content_paths(
            {
                "0008,0005": "SpecificCharacterSet",
                "0008,0008": "ImageType",
                "0020,0020": "PatientOrientation",
                "0020,0032": "ImagePositionPatient",
                "0020,0037": "ImageOrientationPatient",
                "0028,0030": "PixelSpacing",
                "0028,1050": "WindowCenter",
                "0028,1051": "WindowWidth",
            }
        )
    }
)
ALLOWED.update(
    {
        ("content J2K_pixelrep_mismatch.dcm tags", f"$.{tag}.PrivateCreator"): (
            "J2K_pixelrep_mismatch.dcm encodes the creator elements of its private blocks (0009,0011 "
            "'HMC - CT - ID', 0019,0010 'SET WINDOW') as UN: Orthanc does not tie the block's elements to "
            "them and gives no PrivateCreator; fastpacs reads the creator's text and names it."
        )
        for tag in ("0009,1100", "0009,1101", "0019,1000", "0019,1001")
    }
)
ALLOWED.update(
    {
        ("content chrH32.dcm *", path): _YEN_DELIMITER
        for path in _content_paths({"0008,0005": "SpecificCharacterSet"})
    }
)
ALLOWED.update(
    {
        ("content chrH32.dcm *", path): (
            "PatientName of chrH32.dcm (ISO 2022 IR 13 + IR 87): Orthanc keeps the raw escape-sequence "
            "bytes of the kanji and hiragana groups ('ﾔﾏﾀﾞ^ﾀﾛｳ=;3ED^B@O:=$d$^$@^$?$m$&'); fastpacs decodes "
            "them as pydicom does ('ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう'), the correct Unicode."
        )
        for path in _content_paths({"0010,0010": "PatientName"})
    }
)

KNOWN_BUGS: dict[tuple[str, str], str] = {}

# Attachments, resource helpers, tools and HTTP (tests/differential/test_api_rest_vs_orthanc.py).
ALLOWED.update(
    {
        ("*attachment*info", "$.Uuid"): (
            "Orthanc gives each stored attachment a random UUID; fastpacs derives it from the blob's "
            "SHA-256 (its storage address), so it is stable and shared by identical contents."
        ),
    }
)

# Modify, anonymize, split and merge (tests/differential/test_modify_vs_orthanc.py).
_OVERLAYS_REMOVED = (
    "Overlay Data and Overlay Comments (60xx,3000, 60xx,4000; Curve Data 50xx too): the 2017c and 2021b "
    "profiles remove them (X), and Orthanc does inside sequence items but not at the top level; fastpacs "
    "removes them at the top level as well, as the standard says."
)
ALLOWED.update(
    {
        ("anonymize*", "*.value[*].0010,0010.value"): (
            "PatientName inside sequence items: Orthanc 1.10.1 keeps it (it replaces the top-level one by "
            "AnonymizedN and forgets the others); PS3.15's basic profile says Z for Patient's Name wherever "
            "it is, and fastpacs empties it, rather than leave a patient's name in an anonymized file."
        ),
        ("anonymize*", "*.Value[*].0010,0010.Value"): "The same PatientName in items, seen through /tags.",
        ("anonymize*", "*.6000,3000"): _OVERLAYS_REMOVED,
        ("anonymize*", "*.6000,4000"): _OVERLAYS_REMOVED,
    }
)
ALLOWED.update(
    {
        ("root*", "header:content-type"): (
            "The 301 of GET / has no body; Orthanc sends no Content-Type, fastpacs's framework labels it."
        ),
    }
)

# The DICOM network (tests/differential/test_network_vs_orthanc.py).
ALLOWED.update(
    {
        ("c-store-*", "$.PixelDataOffset"): (
            "A file received by C-STORE starts with the receiver's own file meta group, which names its "
            "implementation: DCMTK's class UID for Orthanc, fastpacs's (16 bytes longer) for fastpacs. The "
            "dataset that follows is the same bytes, so only offsets into the file differ."
        ),
        ("c-store-*", "*.FileSize"): "The receiver's own file meta group, as for PixelDataOffset above.",
    }
)

# Orthanc peers (tests/differential/test_peers_vs_orthanc.py).
_PEER_ERROR_TEXT = (
    "Orthanc repeats libcurl's text ('libCURL error: Couldn't connect to server'); fastpacs names the "
    "instance, the request, the peer's URL and the cause. Error code, description and status are the same."
)
ALLOWED.update(
    {
        ("peer-put-not-json", "*"): (
            "A PUT /peers/{name} body that is not JSON: Orthanc sends no answer at all, which its server "
            "turns into an empty 404; fastpacs answers 400 'Bad file format', as for any malformed body."
        ),
        ("peers-expand", "$.props.Other"): (
            "Orthanc keeps the unknown fields of a peer as text 'user properties' (for its plugins) and "
            "shows them; fastpacs has no plugins and ignores them, in PUT bodies as in OrthancPeers."
        ),
        ("peer-user-property-configuration", "$.Other"): "User properties, as in the entry above.",
        ("peer-system", "$.*Port"): (
            "Both servers pass on the reference Orthanc's /system; the harness replaces each server's own "
            "ports by placeholders, so Orthanc's ports show as numbers in fastpacs's copy only."
        ),
        ("peer-store-compress", "$.Size"): (
            "Compress: the gzip streams differ (Orthanc's zlib, fastpacs's isal at its fastest level), so "
            "the bytes sent differ; the peer stores the same file."
        ),
        ("peer-store-straight-not-dicom", "$.Details"): (
            "fastpacs adds the peer's answer to Orthanc's 'Cannot send DICOM to remote peer: {name}'."
        ),
        ("peer-store-down", "$.Details"): _PEER_ERROR_TEXT,
        ("peer-system-down", "$.Details"): _PEER_ERROR_TEXT,
        ("peer-job-*", "$*.ErrorDetails"): _PEER_ERROR_TEXT,
        ("peer-job-*", "$*.Content.Size"): (
            "Orthanc adds an instance's size before sending it, so a job that failed on its first instance "
            "shows that size; fastpacs's Size counts the bytes the peer accepted (0 here)."
        ),
        ("peer-job-downfull", "$*.Content.Peer.HttpHeaders"): (
            "Orthanc shows the values of the peer's HTTP headers (often tokens) in a job's content; "
            "fastpacs lists their names only, as GET /peers does."
        ),
        ("exports-after-refused-stores", "*"): (
            "Orthanc logs an export for store requests it then refuses (an unknown peer, an unknown "
            "resource after known ones, a malformed option after the resources); nothing left the server, "
            "so fastpacs logs nothing for them (services/peers.py)."
        ),
    }
)
ALLOWED[("modify replace-private *", "$.dataset.0009,1001.*")] = (
    "Replacing a private attribute whose creator no dictionary knows ('ACME'): Orthanc writes it as UN "
    "(and pads it with a NUL), fastpacs keeps the VR the file gives it (LO), so the value stays readable "
    "as text."
)

# Bulk modify and anonymize (tests/differential/test_bulk_modify_vs_orthanc.py).
ALLOWED[('bulk-modify error {"Resources": [], "Level": 3}', "*")] = (
    "A Level that is not a string: Orthanc fails with an unhandled exception (500 Internal error); "
    "fastpacs answers 400 Bad file format naming the field, as bad input never gets a 500."
)

# Edge cases of modify and anonymize (tests/differential/test_modify_edge_cases_vs_orthanc.py).
_GROUP_OF_GENERATED_UIDS = (
    "The group lengths of groups 0008 and 0020 (retired, written again for the modified file by both "
    "servers) count the generated UIDs (SOP, Study, Series Instance UIDs...), whose lengths differ by "
    "design (Orthanc's 1.2.276.0.7230010.3.1.4... and fastpacs's 2.25.<uuid>)."
)
_TEXT_OUTSIDE_CHARACTER_SET = (
    "A replacement with characters the file's SpecificCharacterSet cannot encode (Cyrillic or CJK in "
    "Latin-1, 'é' in ISO_IR 144): Orthanc drops them silently ('Mller'), fastpacs writes a '?' for each "
    "('M?ller'), so the loss stays visible. Neither switches the character set, and the rest is equal."
)
ALLOWED.update(
    {
        ("modify edge replace-with-creator *", "$.dataset.0009,1001.*"): ALLOWED[
            ("modify replace-private *", "$.dataset.0009,1001.*")
        ],
        ("modify edge us-negative *", "*"): (
            "A negative value for an unsigned VR (Rows '-1'): Orthanc's C++ cast wraps it around (65535; "
            "'-65535' gives 1) and writes that; fastpacs refuses it with the 400 'out-of-range value' "
            "Orthanc gives other values that do not fit ('70000', 'abc'), rather than write a number nobody "
            "sent."
        ),
        ("modify edge at-bad* *", "*"): (
            "A value that is no tag for an AT attribute ('zz'): Orthanc answers 500 'Unknown DICOM tag'; "
            "fastpacs answers the 400 'out-of-range value' of the other VRs, as bad input never gets a 500."
        ),
        ("modify edge unencodable *", "$.dataset.*.value"): _TEXT_OUTSIDE_CHARACTER_SET,
        ("modify edge latin-1 chrRuss.dcm", "$.dataset.*.value"): _TEXT_OUTSIDE_CHARACTER_SET,
        ("modify edge sequence-item chrRuss.dcm", "$.dataset.*.value"): _TEXT_OUTSIDE_CHARACTER_SET,
        ("* edge latin-1* chrH31.dcm", "$.dataset.*.value"): (
            "Latin-1 letters in a file whose SpecificCharacterSet is '\\ISO 2022 IR 87' (ASCII and JIS X "
            "0208, which has no 'ü'): neither server can write them in a declared set. Orthanc switches to "
            "JIS X 0212 by an escape sequence the file does not declare (pydicom shows the raw escapes); "
            "fastpacs writes their Latin-1 bytes, which readers of this ISO 2022 default (pydicom) show as "
            "sent."
        ),
        ("modify edge sequence-item chrH31.dcm", "$.dataset.*.value"): "As for 'modify edge latin-1 chrH31'.",
        ("modify edge * SC_rgb_jpeg_dcmtk.dcm", "$.dataset.7fe0,0010.*"): (
            "JPEG 8-bit RGB decompressed into a native syntax: Orthanc (DCMTK) writes the pixels as OW, "
            "fastpacs (pydicom) as OB, both allowed for 8 bits; in big endian OW swaps each pair of bytes "
            "(hence another SHA-256). The pixel values read back are the same."
        ),
        ("modify edge rle *", "*"): (
            "Transcode to RLE Lossless: Orthanc 1.10.1 without plugins has no RLE encoder (500 'Cannot "
            "transcode'); fastpacs encodes it (pydicom)."
        ),
        ("modify edge jpeg-2000 *", "*"): (
            "Transcode to JPEG 2000 Lossless: Orthanc 1.10.1 without plugins has no JPEG 2000 codec (500 "
            "'Cannot transcode'); fastpacs encodes it (pydicom, OpenJPEG)."
        ),
    }
)
ALLOWED.update(
    {
        ("modify edge pixel-data-text *", "*"): (
            "PixelData replaced by a text: Orthanc fails with 500 'Internal error'; fastpacs writes the "
            "bytes asked for, as for any other binary attribute."
        ),
        ("modify edge private-sequence *", "*"): (
            "A private attribute no dictionary knows, replaced by an array of objects: Orthanc answers 400 "
            "'Bad Parameter type' (it writes such attributes as UN); fastpacs writes the sequence asked for."
        ),
        ("modify edge body-*", "*"): (
            "A body that is not strict JSON (a UTF-8 byte order mark, text after the object, invalid UTF-8 "
            "in a string): Orthanc's JsonCpp reader skips the mark, stops after the first value and takes "
            "the bytes as they are; fastpacs answers 400 Bad file format, as for any malformed body."
        ),
        ("modify edge replace-in-other-creator-block *", "*"): (
            "A private attribute of another creator's block (0011,1010 of CT_small, SS by its file) replaced "
            "with PrivateCreator 'OTHER' and a text: Orthanc writes it as UN; fastpacs keeps the VR the "
            "file gives it, as for 'modify replace-private', and refuses a text that is no SS number (400)."
        ),
        ("modify edge data-uri-rows *", "$.Details"): (
            "A data: URI whose bytes (0x00 0x01) are no number for Rows: the same 400, but Orthanc's Details "
            "end at the first NUL byte of the value; fastpacs's show the value."
        ),
        ("* edge every file *", "$.dataset.0008,0000.value"): _GROUP_OF_GENERATED_UIDS,
        ("* edge every file *", "$.dataset.0020,0000.value"): _GROUP_OF_GENERATED_UIDS,
        ("* edge every file rtdose_rle*.dcm", "$.meta.0002,0002.value"): (
            "RLE RT Dose: Orthanc writes DCMTK's private placeholder 1.2.276.0.7230010.3.1.0.1 as the file "
            "meta's MediaStorageSOPClassUID; fastpacs writes the dataset's SOPClassUID (RT Dose Storage)."
        ),
    }
)

# Lua scripting (tests/differential/test_lua_vs_orthanc.py).
ALLOWED.update(
    {
        ("dump json boolean key", "$.*"): (
            "DumpJson of a table with a boolean key: Orthanc's converter throws an uncaught C++ exception "
            "(500 'Internal error', -1); fastpacs raises a Lua error that names the problem (500, 2031), "
            "which a script can catch with pcall like any other."
        ),
        ("callback arguments", "$.stored DicomProtocol[*].metadata.PixelDataOffset"): (
            "The instance received by C-STORE: the receiver's own file meta group, as for c-store-* above."
        ),
    }
)

# The OpenAPI document and the routes it describes (tests/differential/test_openapi_vs_orthanc.py).
ALLOWED.update(
    {
        ("openapi DELETE /tools/default-encoding", "error-header:allow"): (
            "fastpacs also accepts POST /tools/default-encoding, the method of the 2019 API specification "
            "fastpacs implements; Orthanc 1.10.1 takes PUT only."
        ),
        ("catch-all GET /app/explorer.html", "body"): (
            "Orthanc serves its web interface (Orthanc Explorer) there; fastpacs has none and serves a page "
            "that says so and links to the API (api/home.py)."
        ),
        ("catch-all GET /app/explorer.html", "header:content-type"): (
            "The page above: fastpacs names its charset (text/html; charset=utf-8), Orthanc sends text/html."
        ),
    }
)
ALLOWED[("query-retrieve-empty-target", "$.Details")] = (
    "An empty TargetAet: both fail the C-MOVE with the same 500 'Error in the network protocol'. Orthanc "
    "sends the request with an empty Move Destination and shows the remote's refusal (0xC000); "
    "fastpacs's SCU (pynetdicom) refuses to send a destination that is no valid AE title, and says so."
)
ALLOWED[("find-worklist * identifier", "$.00091001.InlineBinary")] = (
    "A private tag's text in a worklist query: Orthanc sends its odd length as is ('x'), fastpacs pads it "
    "to an even length with a NUL (PS3.5 7.1.1: every value has an even length)."
)
ALLOWED[("find-instance 8", "*")] = (
    "A find-* value its VR cannot hold (InstanceNumber 'x'): fastpacs's C-FIND SCU sends it empty (a "
    "universal match, so the series' instances come back); Orthanc sends the text as is and its SCP "
    "matches nothing. Either way no error; fastpacs does not send malformed values."
)

# Transcoding on the DICOM network (tests/differential/test_transcoding_vs_orthanc.py).
_JPEG_2000_DECODED = (
    "A JPEG 2000 file sent to a peer that does not accept JPEG 2000 (C-STORE SCU, C-MOVE or C-GET SCP): "
    "Orthanc 1.10.1 without plugins has no JPEG 2000 decoder and fails ('Cannot transcode from "
    "1.2.840.10008.1.2.4.91 to one of [ ... ]', a failed sub-operation); fastpacs decodes it (OpenJPEG) "
    "and sends it uncompressed, as Orthanc does for the syntaxes it can decode. The test checks that the "
    "pixels fastpacs sent are the original's."
)
ALLOWED.update(
    {
        ("* JPEG2000.dcm to unc", "*"): _JPEG_2000_DECODED,
        ("* JPEG2000.dcm to impl", "*"): _JPEG_2000_DECODED,
        ("* JPEG2000.dcm to be", "*"): _JPEG_2000_DECODED,
        ("*c-get JPEG2000.dcm to all", "*"): _JPEG_2000_DECODED,
    }
)
ALLOWED.update(
    {
        ("lost file *", "$.Details"): (
            "A stored file missing when read: both name the missing file's path, which is each "
            "server's own storage layout (Orthanc's attachment UUID, fastpacs's SHA-256 of the content)."
        ),
    }
)

# Query matching probe (tests/differential/test_find_matching_vs_orthanc.py).
ALLOWED.update(
    {
        ("c-find patients", "$.Answers[*].PatientName"): (
            "A C-FIND answer whose value Latin-1 cannot hold (FIND-P7's Greek name), for a query without a "
            "SpecificCharacterSet: Orthanc writes every answer in its default encoding and drops the Greek "
            "letters ('^'); fastpacs's answer switches to ISO_IR 192 and keeps them. The same patients match."
        ),
        (
            "c-find patients",
            "$.Answers[*].SpecificCharacterSet",
        ): "As for 'c-find patients' PatientName above.",
    }
)
_ODD_SIZED_JPEG = (
    "JPEG baseline of SC_rgb_small_odd.dcm (3x3 RGB): DCMTK's encoder pads an odd-sized colour image "
    "differently and notes '[Scaled image]' in DerivationDescription, so its stream is 666 bytes where "
    "Pillow's (libjpeg) is 642: the compression ratio (0.040541 / 0.042042) and the description differ. "
    "The frames of the other images are byte for byte DCMTK's."
)
ALLOWED.update(
    {
        ("modify edge transcode series jpeg-baseline*", "$.instances[*].0008,2111.Value"): _ODD_SIZED_JPEG,
        ("modify edge transcode series jpeg-baseline*", "$.instances[*].0028,2112.Value"): _ODD_SIZED_JPEG,
    }
)
ALLOWED.update(
    {
        ("modify edge jpeg-ls *", "$.dataset.7fe0,0010.value.sha256"): (
            "Transcode to JPEG-LS: fastpacs encodes with CharLS (pyjpegls), Orthanc with DCMTK's encoder; "
            "their lossless streams of chrX1 (8-bit) differ byte-wise (coding parameters); the pixels "
            "they decode to are the same."
        ),
    }
)
# JSON request bodies (tests/differential/test_json_bodies_vs_orthanc.py).
_NOT_AN_OBJECT = ("bare string", "bare number", "true", "empty array", "nested 100 deep")
_ORTHANC_500 = (
    "A body that is JSON but not an object: Orthanc 1.10.1 answers 500 'Internal error' (JsonCpp throws "
    "when asked for a member of a scalar or an array); fastpacs answers a 400 as to a body that is not JSON."
)
_AET_TEXT = (
    "bom only",
    "two boms",
    "utf-16le bom",
    "utf-16be bom",
    "garbage",
    "truncated",
    "nan",
    "infinity",
    "minus infinity",
    "duplicate key last",
    "lone comma",
    "unclosed comment",
    "single quotes",
)
ALLOWED.update(
    {
        ("json-body create-archive *", "body"): (
            "A ZIP answered by both (the body was read alike): Orthanc deflates and signs its ZIP "
            "('Created by Orthanc'), fastpacs stores; the test compares statuses and headers."
        ),
        ("json-body create-media *", "body"): "A ZIP answered by both, as for create-archive above.",
        ("json-body study-archive *", "body"): "A ZIP answered by both, as for create-archive above.",
        ("json-body study-media *", "body"): "A ZIP answered by both, as for create-archive above.",
        **{
            (f"json-body {route} {case}", "*"): _ORTHANC_500
            for route in (
                "modality-find-worklist",
                "study-split",
                "query-child",
                "query-retrieve",
                "query-retrieve-answer",
            )
            for case in _NOT_AN_OBJECT
        },
        ("json-body modality-find-worklist null", "*"): (
            "A worklist query of null: Orthanc answers 'Bad type for a parameter', fastpacs the 'Must "
            "provide a JSON object' Orthanc gives a body that is not JSON."
        ),
        ("json-body study-split null", "*"): (
            "A split of null: Orthanc reads null as an object without members ('Bad request', neither "
            "Series nor Instances); fastpacs answers 'Bad file format' as to a body that is not JSON."
        ),
        **{
            (f"json-body study-merge {case}", "$.Details"): (
                "A merge whose body is JSON but not an object: both answer 'Bad file format'; Orthanc "
                "details 'List of strings expected in field: Resources', fastpacs none."
            )
            for case in (*_NOT_AN_OBJECT, "null")
        },
        **{
            (f"json-body query-retrieve* {case}", "$.Details"): (
                "A retrieve whose body is not JSON names the target AET: both fail the C-MOVE, fastpacs "
                "words the failure otherwise (pynetdicom refuses an AET of more than 16 characters or "
                "not ASCII before sending; a 0xC000 status without Orthanc's guess 'resource not found ?')."
            )
            for case in _AET_TEXT
        },
        ("json-body query-retrieve* whitespace only", "*"): (
            "A retrieve whose body is only whitespace: Orthanc asks a C-MOVE to that whitespace (which "
            "fails, 500); fastpacs trims the AET text, finds none and retrieves to itself, as for an "
            "empty body."
        ),
    }
)

# User dictionary (tests/differential/test_user_dictionary_vs_orthanc.py).
ALLOWED.update(
    {
        ("c-find no creator", "$.Answers[*].43211001"): (
            "A private attribute the Dictionary option declares without a private creator ('4321,1001' "
            "DS): Orthanc names it and reads its value as DS in /tags, but answers it in C-FIND as UN "
            "(NUL-padded bytes); fastpacs answers it in the declared VR, as it reads it everywhere else."
        ),
        ("anonymize * implicit", "$.dataset.0029,1103.*"): (
            "A private sequence only the user dictionary knows, in an Implicit VR file kept through an "
            "anonymization: Orthanc writes it with a defined length, fastpacs with an undefined one. The "
            "test reads the files with a pydicom that does not know the attribute, which can tell a "
            "sequence only by its undefined length: the 42 bytes Orthanc wrote are the same one item "
            "(PrivateCreator and AcmeLeaf) fastpacs wrote."
        ),
        ("modify replace private tag explicit", "$.dataset.0029,1101.*"): (
            "Replacing a private attribute by its tag without PrivateCreator: Orthanc writes it as UN, "
            "fastpacs keeps the VR the file gives it (LO), as for 'modify replace-private' above."
        ),
    }
)

# IngestTranscoding (tests/differential/test_ingest_transcoding_vs_orthanc.py).
ALLOWED.update(
    {
        ("ingest-transcoding * MR_jpeg_2000", "$.TransferSyntax"): (
            "A JPEG 2000 file to be stored in another syntax: Orthanc 1.10.1 (DCMTK, no JPEG 2000 decoder) "
            "cannot decode it and stores it as received; fastpacs decodes it (OpenJPEG) and converts it as "
            "asked. The pixels are the same."
        ),
        ("ingest-transcoding * JPEG_12_bit", "$.TransferSyntax"): (
            "pydicom's JPEG-lossy.dcm (12-bit JPEG extended, with a scan header libjpeg refuses: 'scan "
            "start must be zero'): DCMTK decodes it and Orthanc converts it; fastpacs's decoders cannot, "
            "and store it as received, as Orthanc does with any file it cannot convert."
        ),
        ("ingest-transcoding * JPEG_12_bit", "$.Pixels"): (
            "The same file: the test's pydicom decodes Orthanc's converted copy, not the original fastpacs "
            "stored."
        ),
    }
)

# POST /tools/create-dicom (tests/differential/test_create_dicom_vs_orthanc.py).
ALLOWED.update(
    {
        ("create-dicom * metadata?expand*", "$.PixelDataOffset"): (
            "The created files differ in layout before the pixels (Orthanc's file meta names DCMTK's "
            "implementation, fastpacs's its own): the offset differs, the pixels do not (frames/0/raw)."
        ),
        ("create-dicom public OB data uri *", "*"): (
            "A public binary attribute (EncapsulatedDocument) given as an application/octet-stream data "
            "URI: Orthanc 1.10.1 stores the decoded bytes as PixelData instead; fastpacs stores them in "
            "the attribute named."
        ),
        ("create-dicom private creator element tags", "$.0009,1001.PrivateCreator"): (
            "A private attribute no dictionary knows (written UN) in a block whose creator element the "
            "request also gave: Orthanc's /tags omits its PrivateCreator, fastpacs's names it."
        ),
    }
)
