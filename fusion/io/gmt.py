"""Gene-set files in the GMT format (MSigDB, Enrichr, Reactome exports) for pathway tokens.

One set per line, tab-separated: ``name <TAB> description <TAB> gene <TAB> gene ...``. Blank lines are
ignored; a duplicate set name, a line without a description or genes, or an empty name is an error
naming the file and the line number. A gene listed twice in one set is kept once (exports do that).

`read_gmt(path, genes=...)` or `restrict_gene_sets(sets, genes)` keep, in each set, only the genes
of the table (in the set's order) and drop sets that share no gene with it, with one warning that
lists every dropped set: a pathway file is usually written for a larger panel than the table's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def read_gmt(path: str | Path, genes: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``{set name: [genes]}`` in file order; with ``genes``, restricted to them (see module doc)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"gene-set file '{path}': cannot be read: {err}") from None
    sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
        name = fields[0]
        where = f"gene-set file '{path}', line {number}"
        if not name:
            raise ValueError(f"{where}: empty set name")
        if len(fields) < 2:
            raise ValueError(
                f"{where}: set '{name}' has no tab-separated description and genes "
                "(expected 'name<TAB>description<TAB>gene<TAB>gene...')"
            )
        members = list(dict.fromkeys(g for g in fields[2:] if g))
        if not members:
            raise ValueError(f"{where}: set '{name}' lists no genes")
        if name in sets:
            raise ValueError(f"{where}: duplicate set name '{name}' (first on line {first_line[name]})")
        sets[name], first_line[name] = members, number
    if not sets:
        raise ValueError(f"gene-set file '{path}': no gene sets found")
    return sets if genes is None else restrict_gene_sets(sets, genes, source=str(path))


def restrict_gene_sets(
    gene_sets: Mapping[str, Sequence[str]], genes: Iterable[str], source: str | None = None
) -> dict[str, list[str]]:
    """Each set reduced to the genes in ``genes``; sets left empty are dropped with one warning.

    Raises ValueError when no set shares a gene with ``genes`` (nothing to build tokens from).
    """
    available = set(genes)
    kept: dict[str, list[str]] = {}
    dropped: list[str] = []
    for name, members in gene_sets.items():
        inside = [g for g in dict.fromkeys(members) if g in available]
        if inside:
            kept[str(name)] = inside
        else:
            dropped.append(str(name))
    where = f"gene-set file '{source}'" if source else "gene sets"
    if not kept:
        raise ValueError(
            f"{where}: none of the {len(dropped)} sets shares a gene with the table's "
            f"{len(available)} genes (are the gene identifiers of the same kind, e.g. symbols?)"
        )
    if dropped:
        warnings.warn(
            f"{where}: {len(dropped)} set(s) share no gene with the table and are dropped: {dropped}",
            stacklevel=2,
        )
    return kept
