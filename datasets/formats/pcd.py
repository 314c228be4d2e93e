"""PCD, the Point Cloud Library's format (what PCL, Open3D and most LiDAR tools write): reader and writer.

A PCD file is a text header (`VERSION`, `FIELDS`, `SIZE`, `TYPE`, `COUNT`, `WIDTH`, `HEIGHT`, `VIEWPOINT`,
`POINTS`, then `DATA ascii|binary|binary_compressed`) followed by the points:

* `ascii`: one point per line, the fields' values in order;
* `binary`: the points as packed little-endian records, one after the other (row-major);
* `binary_compressed`: two uint32 (compressed size, uncompressed size), then LZF-compressed data whose
  uncompressed form is column-major: all values of the first field, then all of the second, ...

Only x, y, z (any float or integer type) and a colour are read; other fields (normals, intensity, labels,
feature histograms with COUNT > 1) are skipped. The colour is PCL's packed `rgb` / `rgba` field (4 bytes,
0x00RRGGBB, stored as a float or an unsigned int) or separate `r g b` / `red green blue` fields. Points with
a non-finite coordinate are PCL's invalid points (organised clouds mark missing returns so): they are
dropped, as PCL's `removeNaNFromPointCloud` does.

Every declared size is checked against the file's length before anything is allocated, so a small file that
declares billions of points is refused with one line instead of exhausting memory.

Reference: the PCD format as documented by PCL (pointclouds.org, "The PCD (Point Cloud Data) file format");
LZF by Marc Lehmann (liblzf), the compressor PCL uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape, read_bytes

_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "<i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
          ("U", 1): "<u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}
_HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_MAX_HEADER = 64 * 1024
# An LZF back-reference writes at most 264 bytes from 3 bytes of input, a literal run 32 from 33.
_LZF_MAX_RATIO = 88


def read_pcd(path: str | Path) -> Shape:
    """The points of a PCD file (float64) and their colours (float32 in [0, 1]; None without a colour field)."""
    path = Path(path)
    header, body = _split_header(path, read_bytes(path))
    fields = _fields(path, header)
    count = _point_count(path, header)
    encoding = header["DATA"][0].lower()
    record = np.dtype([(name, dtype) for name, dtype in fields])
    if encoding == "ascii":
        table = _ascii_points(path, body, fields, count)
    elif encoding == "binary":
        if count * record.itemsize > len(body):
            raise DataError(f"{path}: PCD declares {count} points of {record.itemsize} bytes, but the file holds "
                            f"{len(body)} bytes of data (truncated, or a wrong POINTS)")
        table = np.frombuffer(body, dtype=record, count=count)
    elif encoding == "binary_compressed":
        table = _compressed_points(path, body, fields, count, record)
    else:
        raise DataError(f"{path}: PCD DATA '{header['DATA'][0]}' is not ascii, binary or binary_compressed")
    names = [name for name, _ in fields]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise DataError(f"{path}: PCD has no field {', '.join(missing)} (FIELDS {' '.join(names)})")
    xyz = np.stack([np.asarray(table[axis], dtype=np.float64).reshape(count, -1)[:, 0] for axis in "xyz"], axis=1)
    rgb = _colours(table, fields, count)
    valid = np.isfinite(xyz).all(axis=1)
    if not valid.all():
        xyz = xyz[valid]
        rgb = rgb[valid] if rgb is not None else None
    return Shape(xyz, None, rgb)


def _split_header(path: Path, data: bytes) -> tuple[dict[str, list[str]], bytes]:
    header: dict[str, list[str]] = {}
    position = 0
    while "DATA" not in header:
        end = data.find(b"\n", position)
        if end < 0 or end > _MAX_HEADER:
            raise DataError(f"{path}: not a PCD file (no DATA line in its header)")
        line = data[position:end].split(b"#", 1)[0].decode("ascii", "replace").split()
        position = end + 1
        if not line:
            continue
        key = line[0].upper()
        if key not in _HEADER_KEYS:
            raise DataError(f"{path}: not a PCD file (header line '{line[0]}')")
        header[key] = line[1:]
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise DataError(f"{path}: PCD header has no {key} line")
    if not header["DATA"]:
        raise DataError(f"{path}: PCD DATA line names no encoding")
    return header, data[position:]


def _integer(path: Path, header: dict, key: str, values: list[str]) -> list[int]:
    try:
        numbers = [int(value) for value in values]
    except ValueError:
        raise DataError(f"{path}: PCD {key} '{' '.join(values)}' is not a list of integers") from None
    if any(number < 0 for number in numbers):
        raise DataError(f"{path}: PCD {key} '{' '.join(values)}' is negative")
    return numbers


def _fields(path: Path, header: dict) -> list[tuple[str, np.dtype | tuple]]:
    names, types = header["FIELDS"], [t.upper() for t in header["TYPE"]]
    sizes = _integer(path, header, "SIZE", header["SIZE"])
    counts = _integer(path, header, "COUNT", header["COUNT"]) if "COUNT" in header else [1] * len(names)
    if not names or not len(names) == len(sizes) == len(types) == len(counts):
        raise DataError(f"{path}: PCD header lists {len(names)} FIELDS, {len(sizes)} SIZE, {len(types)} TYPE and "
                        f"{len(counts)} COUNT values; they must match")
    fields = []
    for index, (name, size, kind, count) in enumerate(zip(names, sizes, types, counts)):
        if (kind, size) not in _TYPES:
            raise DataError(f"{path}: PCD field '{name}' has TYPE {kind} SIZE {size}, not a PCD type")
        if count < 1:
            raise DataError(f"{path}: PCD field '{name}' has COUNT {count}")
        # PCL pads records with fields named '_'; numpy needs distinct names
        unique = name if name != "_" and name not in names[:index] else f"_{index}"
        fields.append((unique, _TYPES[kind, size] if count == 1 else (_TYPES[kind, size], (count,))))
    return fields


def _point_count(path: Path, header: dict) -> int:
    if "POINTS" in header:
        values = _integer(path, header, "POINTS", header["POINTS"])
        if len(values) == 1:
            return values[0]
    width = _integer(path, header, "WIDTH", header.get("WIDTH", ["0"]))
    height = _integer(path, header, "HEIGHT", header.get("HEIGHT", ["1"]))
    if len(width) != 1 or len(height) != 1:
        raise DataError(f"{path}: PCD header has no usable POINTS or WIDTH/HEIGHT")
    return width[0] * height[0]


def _ascii_points(path: Path, body: bytes, fields, count: int) -> np.ndarray:
    """The values as float64 fields of the declared shapes (a packed colour is converted in `_colours`)."""
    widths = [_width(dtype) for _, dtype in fields]
    columns = sum(widths)
    if count * 2 * columns > len(body) + 1:  # a value takes at least a digit and a separator
        raise DataError(f"{path}: PCD declares {count} points, but its {len(body)} bytes of ascii data cannot "
                        "hold them (truncated, or a wrong POINTS)")
    lines = body.split(b"\n", count)[:count]
    try:
        values = np.array(b" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: PCD ascii data holds something that is not a number") from None
    if values.size != count * columns:
        raise DataError(f"{path}: PCD ascii data has {values.size} values where {count} points of {columns} "
                        "values were declared (truncated, or a wrong POINTS)")
    values = values.reshape(count, columns)
    table = np.empty(count, dtype=[(name, "<f8", (width,)) for (name, _), width in zip(fields, widths)])
    starts = np.cumsum([0] + widths)
    for (name, _), start, width in zip(fields, starts, widths):
        table[name] = values[:, start:start + width]
    return table


def _width(dtype) -> int:
    return 1 if isinstance(dtype, str) else dtype[1][0]


def _base(dtype) -> str:
    return dtype if isinstance(dtype, str) else dtype[0]


def _compressed_points(path: Path, body: bytes, fields, count: int, record: np.dtype) -> np.ndarray:
    if len(body) < 8:
        raise DataError(f"{path}: PCD binary_compressed data is shorter than its 8-byte size header")
    compressed, uncompressed = (int(v) for v in np.frombuffer(body[:8], dtype="<u4"))
    if compressed > len(body) - 8:
        raise DataError(f"{path}: PCD says {compressed} compressed bytes follow, the file holds {len(body) - 8}")
    if uncompressed != count * record.itemsize:
        raise DataError(f"{path}: PCD binary_compressed data unpacks to {uncompressed} bytes, but {count} points "
                        f"of {record.itemsize} bytes need {count * record.itemsize}")
    if uncompressed > _LZF_MAX_RATIO * compressed + 32:
        raise DataError(f"{path}: PCD declares {uncompressed} bytes packed into {compressed}, more than LZF can "
                        "expand (a damaged header)")
    try:
        raw = lzf_decompress(body[8:8 + compressed], uncompressed)
    except ValueError as error:
        raise DataError(f"{path}: PCD binary_compressed data is damaged ({error})") from None
    table = np.empty(count, dtype=record)
    offset = 0
    for name, dtype in fields:  # column-major: all values of one field, then the next field's
        values = np.frombuffer(raw, dtype=_base(dtype), count=count * _width(dtype), offset=offset)
        table[name] = values.reshape(table[name].shape)
        offset += values.nbytes
    return table


def _colours(table: np.ndarray, fields, count: int) -> np.ndarray | None:
    declared = dict(fields)
    packed = next((name for name in ("rgb", "rgba") if name in declared), None)
    if packed is not None and np.dtype(_base(declared[packed])).itemsize == 4:
        values = np.asarray(table[packed]).reshape(count, -1)[:, 0]
        # the 4 bytes 0x00RRGGBB (0xAARRGGBB for rgba), stored as the float or the unsigned int they spell
        kind = np.dtype(_base(declared[packed])).kind
        bits = values.astype("<f4").view("<u4") if kind == "f" else values.astype("<u4")
        channels = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1)
        return channels.astype(np.float32) / np.float32(255)
    for triple in (("r", "g", "b"), ("red", "green", "blue")):
        if all(name in declared for name in triple):
            rgb = np.stack([np.asarray(table[name], dtype=np.float64).reshape(count, -1)[:, 0] for name in triple], 1)
            integer = any(np.dtype(_base(declared[name])).kind in "iu" for name in triple)
            scale = 255.0 if integer or rgb.max(initial=0) > 1 else 1.0
            return np.clip(rgb / scale, 0, 1).astype(np.float32)
    return None


# ---------------------------------------------------------------------------------------------- writing
_TYPE_CHARS = {"f": "F", "i": "I", "u": "U"}


def write_pcd(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None, *, encoding: str = "binary",
              packed_rgb: str = "F", extra: dict[str, np.ndarray] | None = None) -> None:
    """Write a PCD v0.7 file in `encoding` (ascii, binary or binary_compressed): float32 x y z; with `rgb`
    ((n, 3) in [0, 1]) a packed `rgb` field, stored as a float (`packed_rgb="F"`, as PCL and Open3D write it)
    or an unsigned int ("U"); then the `extra` fields, name -> (n,) or (n, c) values, typed by their dtype."""
    xyz = np.asarray(xyz, dtype="<f4").reshape(-1, 3)
    count = len(xyz)
    columns: list[tuple[str, np.ndarray]] = [("x", xyz[:, 0]), ("y", xyz[:, 1]), ("z", xyz[:, 2])]
    if rgb is not None:
        channels = np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * 255), 0, 255).astype(np.uint32)
        bits = ((channels[:, 0] << 16) | (channels[:, 1] << 8) | channels[:, 2]).astype("<u4")
        columns.append(("rgb", bits.view("<f4") if packed_rgb == "F" else bits))
    for name, values in (extra or {}).items():
        columns.append((name, np.asarray(values)))
    columns = [(name, values.reshape(count, -1).astype(values.dtype.newbyteorder("<"))) for name, values in columns]
    header = "\n".join([
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7",
        "FIELDS " + " ".join(name for name, _ in columns),
        "SIZE " + " ".join(str(values.dtype.itemsize) for _, values in columns),
        "TYPE " + " ".join(_TYPE_CHARS[values.dtype.kind] for _, values in columns),
        "COUNT " + " ".join(str(values.shape[1]) for _, values in columns),
        f"WIDTH {count}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {count}", f"DATA {encoding}", ""]).encode()
    if encoding == "ascii":  # repr of the float64 of a float32 is exact, so the values read back bit for bit
        blocks = [values.tolist() for _, values in columns]
        payload = "".join(" ".join(repr(value) for block in blocks for value in block[i]) + "\n"
                          for i in range(count)).encode()
    elif encoding == "binary":
        record = np.empty(count, dtype=[(name, values.dtype, (values.shape[1],)) for name, values in columns])
        for name, values in columns:
            record[name] = values
        payload = record.tobytes()
    elif encoding == "binary_compressed":
        raw = b"".join(np.ascontiguousarray(values).tobytes() for _, values in columns)
        packed = lzf_compress(raw)
        payload = np.array([len(packed), len(raw)], dtype="<u4").tobytes() + packed
    else:
        raise ValueError(f"write_pcd: encoding must be ascii, binary or binary_compressed, got {encoding!r}")
    Path(path).write_bytes(header + payload)


# ---------------------------------------------------------------------------------------------- LZF
def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF-decompress `data` into exactly `size` bytes (ValueError if it does not decode to that).

    An LZF stream is a sequence of tokens. A control byte below 32 starts a literal run of control + 1 bytes;
    otherwise its top 3 bits are a length (7: add the next byte) and, with the next byte, its low 5 bits an
    offset: copy length + 2 bytes from offset + 1 bytes back in the output (the copy may overlap itself).
    """
    out = bytearray()
    position, end = 0, len(data)
    while position < end:
        control = data[position]
        position += 1
        if control < 32:
            run = control + 1
            if position + run > end:
                raise ValueError("a literal run past the end of the data")
            out += data[position:position + run]
            position += run
            continue
        length = control >> 5
        if length == 7:
            if position >= end:
                raise ValueError("a back-reference cut off")
            length += data[position]
            position += 1
        if position >= end:
            raise ValueError("a back-reference cut off")
        start = len(out) - ((control & 31) << 8) - data[position] - 1
        position += 1
        length += 2
        if start < 0:
            raise ValueError("a back-reference before the start of the output")
        distance = len(out) - start
        if distance >= length:
            out += out[start:start + length]
        else:  # overlapping: the last `distance` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (length // distance + 1))[:length]
        if len(out) > size:
            raise ValueError(f"the data unpacks to more than the declared {size} bytes")
    if len(out) != size:
        raise ValueError(f"the data unpacks to {len(out)} bytes, not the declared {size}")
    return bytes(out)


def lzf_compress(data: bytes) -> bytes:
    """LZF-compress `data` (greedy matching on 3-byte hashes, as liblzf does; any LZF decoder reads it)."""
    out = bytearray()
    literals = bytearray()
    table: dict[bytes, int] = {}
    position, end = 0, len(data)

    def flush():
        for start in range(0, len(literals), 32):
            chunk = literals[start:start + 32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        literals.clear()

    while position < end:
        key = data[position:position + 3]
        candidate = table.get(key) if len(key) == 3 else None
        table[key] = position
        if candidate is not None and position - candidate - 1 < 8192:
            length = 3
            limit = min(264, end - position)
            while length < limit and data[candidate + length] == data[position + length]:
                length += 1
            flush()
            offset = position - candidate - 1
            code = length - 2
            if code < 7:
                out.append((code << 5) | (offset >> 8))
            else:
                out.append((7 << 5) | (offset >> 8))
                out.append(code - 7)
            out.append(offset & 255)
            position += length
        else:
            literals.append(data[position])
            position += 1
    flush()
    return bytes(out)
