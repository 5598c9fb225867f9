"""The few fields of an ONNX file the model contract needs, read from its protobuf bytes.

A model's contract is checked before any backend exists (a bad model is refused before a
session or a server connection is made), and the local backend's session is then the only
one built for the model: onnxruntime has no way to read `metadata_props` without loading
the whole graph, weights included. So this reads the protobuf wire format directly and
skips everything else by its length prefix: `ModelProto.metadata_props` (field 14, key 1
and value 2) and the names of `ModelProto.graph` (field 7) inputs (11) and outputs (12).
Field numbers from onnx/onnx.proto, which keeps them stable across IR versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_MODEL_GRAPH = 7
_MODEL_METADATA = 14
_GRAPH_INPUT = 11
_GRAPH_OUTPUT = 12
_VALUE_INFO_NAME = 1
_ENTRY_KEY = 1
_ENTRY_VALUE = 2

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX protobuf (not ONNX at all, or cut short)."""


@dataclass(frozen=True)
class OnnxSummary:
    metadata: dict[str, str]
    inputs: list[str]  # graph inputs as the file lists them
    outputs: list[str]


def read_summary(data: bytes | memoryview) -> OnnxSummary:
    """Metadata and graph input/output names; OnnxFormatError for anything malformed."""
    view = memoryview(data)
    metadata: dict[str, str] = {}
    graph: memoryview | None = None
    for number, value in _fields(view):
        if number == _MODEL_GRAPH and isinstance(value, memoryview):
            graph = value
        elif number == _MODEL_METADATA and isinstance(value, memoryview):
            entry = dict(_strings(value, (_ENTRY_KEY, _ENTRY_VALUE)))
            metadata[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    if graph is None:
        raise OnnxFormatError("it has no graph")
    inputs: list[str] = []
    outputs: list[str] = []
    for number, value in _fields(graph):
        if number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and isinstance(value, memoryview):
            name = dict(_strings(value, (_VALUE_INFO_NAME,))).get(_VALUE_INFO_NAME, "")
            (inputs if number == _GRAPH_INPUT else outputs).append(name)
    return OnnxSummary(metadata, inputs, outputs)


def _strings(message: memoryview, wanted: tuple[int, ...]) -> Iterator[tuple[int, str]]:
    for number, value in _fields(message):
        if number in wanted and isinstance(value, memoryview):
            try:
                yield number, bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise OnnxFormatError(f"field {number} is not UTF-8 text") from None


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for scalars, the bytes for the rest."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == _LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise OnnxFormatError(f"a field of {size} bytes runs past the end at byte {pos}")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise OnnxFormatError("a fixed-size field runs past the end")
            yield number, 0  # no field we read is fixed-size
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise OnnxFormatError(f"wire type {wire} at byte {pos}")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("the file ends inside a number")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError(f"a number longer than 10 bytes at byte {pos}")
