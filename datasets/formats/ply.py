"""PLY (Stanford polygon format): vertices, colours and faces, ascii or binary, read with numpy.

The header declares elements (`element vertex 2048`), each with scalar properties (`property float x`) and
list properties (`property list uchar int vertex_indices`). What is read: the `vertex` element's x, y, z and
its colour (red/green/blue, r/g/b or diffuse_red/green/blue) and the `face` element's vertex index list, if
any; every other element and property is read past. A PLY with faces is a mesh, one without is a point set.

Each element's declared count is checked against the bytes (binary) or lines (ascii) the file has left
before anything is allocated for it, so a small file that declares billions of vertices is one line, not an
exhausted memory. Binary elements are viewed in place (numpy `frombuffer`); a face element whose lists all
have the same length (triangles, quads) too, others are walked face by face.

Reference: G. Turk, "The PLY Polygon File Format" (Stanford, 1994), and its ascii / binary_little_endian /
binary_big_endian encodings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape, numbers, polygons, read_bytes

_SCALARS = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
            "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
            "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 64 * 1024
_COLOURS = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass
class _Property:
    name: str
    type: str                 # numpy type code without byte order ("f4")
    count_type: str | None    # list properties: the type of the length; None for scalars


@dataclass
class _Element:
    name: str
    count: int
    properties: list[_Property] = field(default_factory=list)

    @property
    def has_lists(self) -> bool:
        return any(p.count_type is not None for p in self.properties)


def ply_header(path: Path, data: bytes) -> tuple[str | None, list[_Element], int]:
    """(byte order '<' / '>' or None for ascii, the elements, the offset of the body)."""
    if not data.startswith(b"ply"):
        raise DataError(f"{path}: not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise DataError(f"{path}: PLY header has no end_header line in its first {_MAX_HEADER // 1024} KiB")
    newline = data.find(b"\n", end)
    body = newline + 1 if newline >= 0 else len(data)
    order, seen_format, elements = None, False, []
    for number, raw in enumerate(data[:end].decode("ascii", "replace").splitlines()[1:], 2):
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2 and words[1] in _FORMATS:
            order, seen_format = _FORMATS[words[1]], True
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _SCALARS:
            elements[-1].properties.append(_Property(words[2], _SCALARS[words[1]], None))
        elif (words[0] == "property" and elements and len(words) == 5 and words[1] == "list"
              and words[2] in _SCALARS and words[3] in _SCALARS):
            elements[-1].properties.append(_Property(words[4], _SCALARS[words[3]], _SCALARS[words[2]]))
        else:
            raise DataError(f"{path}: PLY header line {number} is not understood: '{raw.strip()[:60]}'")
    if not seen_format:
        raise DataError(f"{path}: PLY header has no format line (ascii, binary_little_endian, binary_big_endian)")
    return order, elements, body


def read_ply(path: str | Path, *, faces: bool = True) -> Shape:
    """The vertices (and colours) of a PLY file and, with `faces`, its triangulated faces."""
    path = Path(path)
    data = read_bytes(path)
    order, elements, offset = ply_header(path, data)
    wanted = {"vertex", "face"} if faces else {"vertex"}
    if "vertex" not in [element.name for element in elements]:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    reader = _Binary(path, data, offset, order) if order else _Ascii(path, data, offset)
    tables: dict[str, dict[str, np.ndarray]] = {}
    for element in elements:
        if not wanted - set(tables):
            break
        tables[element.name] = reader.read(element)
    vertex = tables["vertex"]
    missing = [axis for axis in "xyz" if axis not in vertex]
    if missing:
        raise DataError(f"{path}: PLY vertex element lacks {', '.join(missing)}")
    xyz = np.stack([vertex[axis].astype(np.float64) for axis in "xyz"], axis=1)
    if not np.isfinite(xyz).all():
        raise DataError(f"{path}: PLY has NaN/Inf coordinates")
    vertex_element = next(element for element in elements if element.name == "vertex")
    return Shape(xyz, _faces(path, tables.get("face"), len(xyz)), _colours(vertex, vertex_element))


def _colours(vertex: dict[str, np.ndarray], element: _Element) -> np.ndarray | None:
    types = {p.name: p.type for p in element.properties}
    for names in _COLOURS:
        if all(name in vertex for name in names):
            rgb = np.stack([vertex[name].astype(np.float64) for name in names], axis=1)
            kind = np.dtype(types[names[0]])
            scale = np.iinfo(kind).max if kind.kind in "iu" else (255.0 if rgb.max(initial=0) > 1 else 1.0)
            return np.clip(rgb / scale, 0, 1).astype(np.float32)
    return None


def _faces(path: Path, face: dict[str, np.ndarray] | None, vertex_count: int) -> np.ndarray | None:
    if face is None:
        return None
    name = next((n for n in _FACE_LISTS if n in face), None)
    if name is None:
        return None
    sizes, indices = face[name]
    return polygons(path, sizes, indices.astype(np.int64), vertex_count)


class _Binary:
    """Reads binary elements one after the other: scalar properties as arrays; a list property as its
    (lengths, concatenated items)."""

    def __init__(self, path: Path, data: bytes, offset: int, order: str):
        self.path, self.data, self.offset, self.order = path, data, offset, order

    def _type(self, code: str) -> np.dtype:
        return np.dtype(self.order + code)

    def read(self, element: _Element) -> dict:
        left = len(self.data) - self.offset
        smallest = sum(np.dtype(p.count_type or p.type).itemsize for p in element.properties)
        if element.count * smallest > left:
            raise DataError(f"{self.path}: PLY declares {element.count} '{element.name}' elements of at least "
                            f"{smallest} bytes, but only {left} bytes follow (truncated, or a wrong count)")
        if not element.has_lists:
            record = np.dtype([(p.name, self._type(p.type)) for p in element.properties])
            table = np.frombuffer(self.data, dtype=record, count=element.count, offset=self.offset)
            self.offset += record.itemsize * element.count
            return {name: table[name] for name in record.names}
        return self._uniform(element) or self._walk(element)

    def _uniform(self, element: _Element) -> dict | None:
        """All lists of the element as long as the first element's (triangles only, say): one view."""
        fields, position = [], self.offset
        for p in element.properties:
            if p.count_type is None:
                fields.append((p.name, self._type(p.type)))
                position += np.dtype(p.type).itemsize
                continue
            if element.count == 0 or position + np.dtype(p.count_type).itemsize > len(self.data):
                return None
            length = int(np.frombuffer(self.data, self._type(p.count_type), 1, position)[0])
            fields += [(p.name + "\nlength", self._type(p.count_type)), (p.name, self._type(p.type), (length,))]
            position += np.dtype(p.count_type).itemsize + length * np.dtype(p.type).itemsize
        record = np.dtype(fields)
        if record.itemsize * element.count > len(self.data) - self.offset:
            return None
        table = np.frombuffer(self.data, dtype=record, count=element.count, offset=self.offset)
        lists = [p for p in element.properties if p.count_type is not None]
        if not all((table[p.name + "\nlength"] == table[p.name].shape[1]).all() for p in lists):
            return None
        self.offset += record.itemsize * element.count
        out = {p.name: table[p.name] for p in element.properties if p.count_type is None}
        for p in lists:
            items = table[p.name]
            out[p.name] = (np.full(element.count, items.shape[1], np.int64), items.reshape(-1))
        return out

    def _walk(self, element: _Element) -> dict:
        """Lists of varying length: element by element (a Python loop, for polygon meshes of mixed sizes)."""
        data, position = self.data, self.offset
        scalars = {p.name: [] for p in element.properties if p.count_type is None}
        lists = {p.name: ([], []) for p in element.properties if p.count_type is not None}
        types = {p.name: (self._type(p.type), self._type(p.count_type) if p.count_type else None)
                 for p in element.properties}
        try:
            for _ in range(element.count):
                for p in element.properties:
                    kind, count_kind = types[p.name]
                    if count_kind is None:
                        scalars[p.name].append(np.frombuffer(data, kind, 1, position)[0])
                        position += kind.itemsize
                    else:
                        length = int(np.frombuffer(data, count_kind, 1, position)[0])
                        position += count_kind.itemsize
                        lists[p.name][0].append(length)
                        lists[p.name][1].append(np.frombuffer(data, kind, length, position))
                        position += length * kind.itemsize
        except ValueError:  # frombuffer past the end
            raise DataError(f"{self.path}: PLY '{element.name}' data ends before its {element.count} elements "
                            "(truncated)") from None
        self.offset = position
        out = {name: np.asarray(values) for name, values in scalars.items()}
        for name, (lengths, items) in lists.items():
            out[name] = (np.asarray(lengths, np.int64),
                         np.concatenate(items) if items else np.zeros(0, types[name][0]))
        return out


class _Ascii:
    """Reads ascii elements as blocks of lines: one element per line, its properties' values in order."""

    def __init__(self, path: Path, data: bytes, offset: int):
        self.path = path
        self.lines = [line for line in data[offset:].split(b"\n") if line.strip()]
        self.line = 0

    def read(self, element: _Element) -> dict:
        left = len(self.lines) - self.line
        if element.count > left:
            raise DataError(f"{self.path}: PLY declares {element.count} '{element.name}' elements, but only {left} "
                            "lines follow (truncated, or a wrong count)")
        if element.count == 0:
            return {p.name: np.zeros(0, p.type) if p.count_type is None else
                    (np.zeros(0, np.int64), np.zeros(0, p.type)) for p in element.properties}
        block = self.lines[self.line:self.line + element.count]
        self.line += element.count
        values, widths = numbers(self.path, block, f"PLY '{element.name}' lines")
        lists = [i for i, p in enumerate(element.properties) if p.count_type is not None]
        if not lists:
            expected = len(element.properties)
            if element.count and not (widths == expected).all():
                bad = int(np.argmax(widths != expected))
                raise DataError(f"{self.path}: PLY '{element.name}' line {bad + 1} has {int(widths[bad])} values, "
                                f"{expected} declared")
            table = values.reshape(element.count, expected)
            return {p.name: table[:, i].astype(p.type) for i, p in enumerate(element.properties)}
        if len(lists) > 1:
            raise DataError(f"{self.path}: PLY '{element.name}' has several list properties; ascii PLY reads one")
        before, after = lists[0], len(element.properties) - lists[0] - 1
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        lengths = values[starts + before] if element.count else np.zeros(0)
        if (lengths < 0).any() or (widths != before + 1 + lengths + after).any():
            bad = int(np.argmax((lengths < 0) | (widths != before + 1 + lengths + after)))
            raise DataError(f"{self.path}: PLY '{element.name}' line {bad + 1} does not hold the values its list "
                            "length announces")
        lengths = lengths.astype(np.int64)
        out = {}
        for i, p in enumerate(element.properties):
            if i < before:
                out[p.name] = values[starts + i].astype(p.type)
            elif i > before:
                out[p.name] = values[starts + before + 1 + lengths + (i - before - 1)].astype(p.type)
        first = np.repeat(starts + before + 1, lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[element.properties[before].name] = (lengths, values[first + within].astype(element.properties[before].type))
        return out


def encode_ply_points(points: np.ndarray) -> bytes:
    """The bytes of a binary little-endian PLY with one vertex element of float x, y, z (ShapeNet's layout)."""
    points = np.ascontiguousarray(points, dtype="<f4")
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\nproperty float x\n"
              "property float y\nproperty float z\nend_header\n")
    return header.encode("ascii") + points.tobytes()
