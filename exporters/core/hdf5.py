"""What every HDF5 file nasflow reads (NIR graphs, lava-dl ``.net`` files) must pass before any value is read.

HDF5 can point outside the file it is in: an *external link* names another file, a *virtual dataset* maps other
files' data, and *external storage* keeps a dataset's bytes in a raw file beside it. A file from someone else could
thus read ``/etc/passwd`` or a device into a graph's weights. A dataset may also declare a shape that implies
terabytes (compressed, the file stays tiny), and hard links may make the group tree a cycle. ``check_hdf5`` walks
the whole tree once and refuses all of these by name, so that readers never follow them.
"""

from __future__ import annotations

from pathlib import Path

import h5py

__all__ = ["MAX_DECLARED_BYTES", "check_hdf5"]

#: The most bytes the datasets of one file may declare in all (a graph of 500M float32 parameters).
MAX_DECLARED_BYTES = 2 * 1024**3


def check_hdf5(f: h5py.File, path: str | Path, error: type[Exception]) -> None:
    """Raise ``error`` naming ``path`` and the object for external links, soft links, virtual datasets, external
    storage, hard-link cycles, or datasets declaring more than ``MAX_DECLARED_BYTES`` together."""
    try:
        _walk(f, path, error)
    except error:
        raise
    except (KeyError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise error(f"{path}: a damaged HDF5 object ({type(err).__name__}: {err}); the file is corrupt") from None


def _walk(f: h5py.File, path: str | Path, error: type[Exception]) -> None:
    total = 0
    seen = {h5py.h5o.get_info(f.id).addr}
    stack: list[tuple[str, h5py.Group]] = [("", f)]
    while stack:
        prefix, group = stack.pop()
        for name in group:
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise error(f"{path}: {where} is an external link to {link.filename}:{link.path}; nasflow reads no "
                            "data from outside the file")
            if isinstance(link, h5py.SoftLink):
                raise error(f"{path}: {where} is a soft link to {link.path}; NIR and netx files hold plain groups "
                            "and datasets")
            obj = group[name]
            addr = h5py.h5o.get_info(obj.id).addr
            if isinstance(obj, h5py.Group):
                if addr in seen:
                    raise error(f"{path}: {where} links back to a group already read (a cycle of hard links)")
                seen.add(addr)
                stack.append((where, obj))
                continue
            if not isinstance(obj, h5py.Dataset):
                raise error(f"{path}: {where} is a {type(obj).__name__}, not a group or dataset")
            if obj.is_virtual:
                raise error(f"{path}: {where} is a virtual dataset mapping other files; nasflow reads no data from "
                            "outside the file")
            if obj.external:
                raise error(f"{path}: {where} keeps its data in external file(s) {[e[0] for e in obj.external]}; "
                            "nasflow reads no data from outside the file")
            total += int(obj.size) * max(int(obj.dtype.itemsize), 1)
            if total > MAX_DECLARED_BYTES:
                raise error(f"{path}: {where} declares shape {obj.shape} of {obj.dtype}, which takes the file's "
                            f"datasets past {MAX_DECLARED_BYTES / 1024**3:g} GiB; refusing to read it")
