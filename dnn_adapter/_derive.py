"""File format 5: the fields of a compressed entry that a reader derives from the rest.

A version 4 header spells out, for every RAS, numbers the reader can compute (the operand
count is the tensor's size, a tree's length is the operands plus the delimiters and the flag
and end symbols, its largest symbol is the end symbol), and for every buffer its element type
and shape, which follow from the codec tree (a tree's ``WRDS`` holds its bit count in 64-bit
words, ``raw`` is ``nplanes x n`` bytes, ...). Those numbers are most of what is left of a
small model's compressed header.

A version 5 writer leaves a field out when the rule below gives it back exactly from what is
left (:func:`compact` checks it: a rule that does not fit an entry only costs bytes, never
correctness). A reader fills the fields in (:func:`expand`) and then validates the entry as
version 4 has it. The rules are part of the format (``docs/dnn_format.md``): changing one is
a new version.

The rules, per RAS meta (``n``, ``block_len``, ``wt[0]``, ``wt[2]``, ``wt[7]``, ``tags``) and
per buffer (an item ``part`` or ``[part, dtype]`` for ``[part, dtype, shape]``, and the
whole list when it is in the writer's order), are listed in ``docs/dnn_format.md``, "Derived
fields"; :func:`_ras_defaults` and :func:`_part_spec` are them in code.
"""

from __future__ import annotations

import copy
import math

from ._bits import dtype_info

TAGS = ["WRDS", "SYMC", "CNTS", "NACT"]
TAGS_CTL = ["WRDS", "CNTS", "NACT"]  # a RAS with "ctl": its symbol order is derived
_WT_DERIVED = (0, 2, 7)  # the tree's length, symbol count and largest symbol
# what a malformed compact entry can raise while it is filled in
ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError,
          RecursionError)


def _uint(v: int) -> str:
    """The smallest unsigned numpy type (as a dtype string) holding *v*."""
    for nb, s in ((1, "|u1"), (2, "<u2"), (4, "<u4")):
        if v < 1 << (8 * nb):
            return s
    return "<u8"


def _uint_of(dtype: str, count: int = 1) -> str:
    """The unsigned type of *count* elements of the tensor type *dtype*."""
    nb = dtype_info(dtype).uint.itemsize * count
    if nb not in (1, 2, 4, 8):
        raise ValueError(f"no {nb}-byte unsigned type")
    return "|u1" if nb == 1 else f"<u{nb}"


def _size(meta: dict) -> int:
    return math.prod(meta["shape"])


def _ras_defaults(r: dict, meta: dict, under_sparse: bool) -> dict:
    """The rules' values for RAS meta *r* (whose ``nblocks`` and ``k`` are given), in order:
    each uses only fields given or filled in before it."""
    out = {"n": meta["nnz"] if "nnz" in meta else meta["n"] if "n" in meta else _size(meta)}
    n, nb = r.get("n", out["n"]), r["nblocks"]
    out["block_len"] = 0 if under_sparse or not nb or n % nb else n // nb
    out["wt0"] = n + nb + 2
    out["wt2"] = out["wt7"] = r["k"] + 3
    return out


def _trees(tree: dict, under_sparse: bool = False):
    """Every (tree, is or is under a sparse tree) of a codec tree, children after their
    parent."""
    under_sparse = under_sparse or tree["codec"] == "sparse"
    yield tree, under_sparse
    for c in (tree.get("children") or {}).values():
        yield from _trees(c, under_sparse)


def _part_spec(tree: dict, name: str) -> tuple[str | None, list | None]:
    """``(dtype, shape)`` of the buffer *name* of a full codec tree by the rules; ``None``
    where no rule applies."""
    while "/" in name:
        child, name = name.split("/", 1)
        tree = tree["children"][child]
    meta, ras, codec = tree["meta"], tree["ras"], tree["codec"]
    r_name, _, tag = name.partition(".")
    if tag and r_name in ras:
        wt = ras[r_name]["wt"]
        if tag == "WRDS":
            return "<u8", [-(-wt[8] // 64)]
        if tag == "SYMC":
            return _uint(wt[7]), [wt[2]]
        if tag == "CNTS":
            return _uint(wt[2]), [wt[1] + 1]
        if tag == "NACT":
            return _uint(wt[0]), [wt[1] + 1]
        return None, None
    if codec == "float" and "exp" in ras:
        r = ras["exp"]
        wide = dtype_info(meta["dtype"]).exp_bits + meta.get("k", 0) > 8
        return {"exp_table": ("<u2" if wide else "|u1", [r["k"]]),
                "raw": ("|u1", [meta["nplanes"], r["n"]]),
                "raw_top": ("|u1", [-(-r["n"] * meta["rem"] // 8)])}.get(name, (None, None))
    if codec == "dict" and name == "table" and "codes" in ras and "run_codes" not in meta:
        return _uint_of(meta["dtype"], meta.get("group", 1)), [ras["codes"]["k"]]
    if codec == "sparse":
        if name in ("gap_table", "val_index") and "gaps" in ras:
            return None, [ras["gaps"]["k"]]
        if name == "zero_sign":
            return "|u1", [-(-(_size(meta) - meta["nnz"]) // 8)]
    if codec == "narrow" and name == "rows":
        return "|u1", [-(-(_size(meta) // meta["row_len"]) // 8)]
    if codec == "raw" and name == "data":
        return _uint_of(meta["dtype"]), list(meta["shape"])
    return None, None


def _names(tree: dict, prefix: str = ""):
    """The parts of a codec tree in the order ``Encoded.flatten`` gives them."""
    yield from (prefix + a for a in tree["arrays"])
    for r_name, r in tree["ras"].items():
        yield from (f"{prefix}{r_name}.{t}" for t in r["tags"])
    for c_name, c in (tree.get("children") or {}).items():
        yield from _names(c, f"{prefix}{c_name}/")


def _canonical(tree: dict) -> list[str]:
    """The parts of a full codec tree in the order a writer puts them (widest element type
    first, in tree order within a width), when the rules give every part's type."""
    names = list(_names(tree))
    sizes = []
    for name in names:
        dt, shape = _part_spec(tree, name)
        if dt is None or shape is None:
            raise ValueError(f"buffer {name!r} cannot be derived")
        sizes.append(-int(dt[2:]))
    order = sorted(range(len(names)), key=sizes.__getitem__)
    return [names[i] for i in order]


def compact(entry: dict) -> dict:
    """A version 5 copy of the version 4 compressed entry *entry* (tree and ``[part, dtype,
    shape]`` buffer list): every field the rules give back exactly is left out. Checked: the
    copy expands to *entry*."""
    out = dict(entry, tree=copy.deepcopy(entry["tree"]))
    for tree, under_sparse in _trees(out["tree"]):
        for r in tree["ras"].values():
            d = _ras_defaults(r, tree["meta"], under_sparse)
            wt = r["wt"] = list(r["wt"])
            for i in _WT_DERIVED:
                if len(wt) > i and wt[i] == d[f"wt{i}"]:
                    wt[i] = None
            if r["block_len"] == d["block_len"]:
                del r["block_len"]
            if r["n"] == d["n"]:
                del r["n"]
            if r["tags"] == (TAGS_CTL if "ctl" in r else TAGS):
                del r["tags"]
    items = []
    for part, dt, shape in entry["buffers"]:
        try:
            sdt, sshape = _part_spec(entry["tree"], part)
        except ERRORS:
            sdt = sshape = None
        if sshape != shape:
            items.append([part, dt, shape])
        elif sdt != dt:
            items.append([part, dt])
        else:
            items.append(part)
    try:
        canonical = _canonical(entry["tree"])
    except ERRORS:
        canonical = None
    if all(isinstance(b, str) for b in items) and items == canonical:
        del out["buffers"]
    else:
        out["buffers"] = items
    if expand(copy.deepcopy(out)) != entry:
        raise AssertionError("format 5 header compaction does not round-trip")
    return out


def expand(entry: dict) -> dict:
    """Fill in, in place, the fields a version 5 compressed entry leaves out; returns it. A
    malformed entry raises one of :data:`ERRORS`; the filled-in entry is validated after."""
    for tree, under_sparse in _trees(entry["tree"]):
        for r in tree["ras"].values():
            d = _ras_defaults(r, tree["meta"], under_sparse)
            r.setdefault("n", d["n"])
            r.setdefault("block_len", d["block_len"])
            wt = r["wt"]
            if not isinstance(wt, list):
                raise TypeError("wt is not a list")
            for i in _WT_DERIVED:
                if len(wt) > i and wt[i] is None:
                    wt[i] = d[f"wt{i}"]
            r.setdefault("tags", list(TAGS_CTL if "ctl" in r else TAGS))
    if "buffers" not in entry:
        entry["buffers"] = _canonical(entry["tree"])
    if not isinstance(entry["buffers"], list):
        raise TypeError("the buffer list is not a list")
    items = []
    for b in entry["buffers"]:
        if isinstance(b, str) or (isinstance(b, list) and len(b) == 2):
            part = b if isinstance(b, str) else b[0]
            if not isinstance(part, str):
                raise TypeError(f"malformed buffer list entry {b!r}")
            sdt, shape = _part_spec(entry["tree"], part)
            dt = sdt if isinstance(b, str) else b[1]
            if dt is None or shape is None:
                raise ValueError(f"buffer {part!r} cannot be derived")
            b = [part, dt, shape]
        items.append(b)
    entry["buffers"] = items
    return entry
