"""Parquet through pyarrow, imported lazily: the catalogue is the only part of the package that
needs it, and a missing pyarrow is a user error that says what to install."""
from __future__ import annotations

from ..errors import CnnauralError
from ..io.files import atomic_write


def import_pyarrow():
    """(pyarrow, pyarrow.parquet), or a CnnauralError saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CnnauralError("catalogues need pyarrow: pip install cnnaural_ext[catalogue] "
                            "(or pip install pyarrow)") from None
    return pa, pq


def write_parquet(path, table, *, fsync: bool = False):
    """Write a pyarrow Table atomically (temp file + rename); `fsync` makes the data durable
    before the rename, so whoever sees the file sees all of it even after a power loss."""
    import os

    _, pq = import_pyarrow()

    def write(tmp):
        pq.write_table(table, tmp, compression="zstd")
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    return atomic_write(path, write)


def read_parquet(path, *, columns=None, filters=None):
    """A Parquet file as a pyarrow Table: all of it, or only `columns` and the rows `filters`
    (pyarrow's DNF form, e.g. [("layer", "in", [1, 5])]) keep, pushed into the reader."""
    _, pq = import_pyarrow()
    return pq.read_table(str(path), columns=columns, filters=filters)
