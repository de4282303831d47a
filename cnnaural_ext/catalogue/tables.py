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


def read_parts(out, dataset: str, empty, all_columns, *, layers=None, features=None, columns=None, filters=()):
    """One of a catalogue's part datasets (``OUT/<dataset>/part-*.parquet``: the activation or the
    clip table) as one pyarrow Table sorted by id, layer, feature: the rows of each track's latest
    ok ledger row's part only, so orphans (a kill between a part's rename and its ledger rows) and
    the rows of redone tracks never show up twice. Parts that do not exist are skipped.

    Args:
        empty: the dataset's table of no rows (its schema).
        all_columns: the dataset's columns, in order.
        layers, features: keep only these (ints or lists of ints); pushed into the Parquet reader,
            as are `filters` (pyarrow's DNF form), so a large catalogue is read a slice at a time.
        columns: keep only these (id, layer and feature are always kept).
    """
    from pathlib import Path

    import pyarrow.compute as pc

    from .ledger import latest_states

    pa, _ = import_pyarrow()
    filters = list(filters)
    for name, value in (("layer", layers), ("feature", features)):
        if value is not None:
            filters.append((name, "in", [int(v) for v in ([value] if isinstance(value, int) else value)]))
    if columns is not None:
        bad = [c for c in columns if c not in all_columns]
        if bad:
            raise CnnauralError(f"the {dataset.rstrip('s')} table has no column {bad[0]!r}; "
                                f"its columns: {', '.join(all_columns)}")
        columns = [c for c in all_columns if c in set(columns) | {"id", "layer", "feature"}]
    keep: dict = {}
    for row in latest_states(out).values():
        if row["status"] == "ok" and row.get("part"):
            keep.setdefault(row["part"], set()).add(row["id"])
    tables = []
    for part, ids in sorted(keep.items()):
        path = Path(out) / dataset / part
        if not path.is_file():
            continue
        t = read_parquet(path, columns=columns, filters=filters or None)
        tables.append(t.filter(pc.is_in(t["id"], value_set=pa.array(sorted(ids), pa.string()))))
    if not tables:
        return empty.select(columns) if columns is not None else empty
    return pa.concat_tables(tables).sort_by([("id", "ascending"), ("layer", "ascending"), ("feature", "ascending")])
