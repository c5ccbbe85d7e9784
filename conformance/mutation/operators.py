"""Mutation operators on a module's AST: where a mutant can go (a :class:`Site`), what it
becomes (its variants), and the mutated module compiled with the original line numbers.

A site is one node inside a function body (module- and class-level code runs at import,
not in a case, so it is left out). Its variants are the operator's alternatives:

* ``binop``: ``+ -``, ``* /``, ``// /``, ``% //``, ``** *``, ``@ *``, ``& |``, ``<< >>``
  (also in augmented assignments);
* ``compare``: ``< <=``, ``> >=``, ``== !=``, ``is``/``is not``, ``in``/``not in``;
* ``constant``: a number ``n`` becomes ``n + 1``, ``n - 1``, ``0`` or ``2 n``;
* ``boolean``: ``True``/``False`` flipped, ``not x`` -> ``x``, ``and``/``or`` swapped;
* ``negation``: ``-x`` -> ``x``;
* ``return``: the returned expression becomes ``None`` (or, for ``a op b``, ``a``);
* ``axis``: an ``axis=``/``axes=`` keyword becomes ``0``, ``-1`` or its neighbour;
* ``drop``: an expression statement or an assignment becomes ``pass``.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from dataclasses import dataclass

BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
               ast.MatMult: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
               ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitXor: ast.BitOr}
CMP_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
             ast.In: ast.NotIn, ast.NotIn: ast.In}
AXIS_KEYWORDS = ("axis", "axes")
DROPPABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign)


@dataclass(frozen=True)
class Site:
    """One mutable node: ``index`` is its position in :func:`sites`' walk of the file."""

    path: str  # relative to the repository root
    index: int
    op: str
    lineno: int  # the node's line
    stmt_lineno: int  # the line of the statement holding it
    qualname: str  # the innermost enclosing function
    nvariants: int


@dataclass(frozen=True)
class Mutant:
    site: Site
    variant: int
    before: str  # the statement holding the node, as written
    after: str  # the same statement mutated (ast.unparse)

    @property
    def id(self) -> str:
        """Stable while the function's text is: file, function, the statement and its
        mutation (no line numbers)."""
        raw = "|".join((self.site.path, self.site.qualname, self.before, self.after))
        return hashlib.sha1(raw.encode()).hexdigest()[:10]

    @property
    def diff(self) -> str:
        return f"{self.site.path}:{self.site.lineno}: {self.before}  ->  {self.after}"


def _number(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _constant_values(v):
    out = []
    for w in (v + 1, v - 1, 0, 2 * v):
        w = type(v)(w)
        if w != v and w not in out:
            out.append(w)
    return out


def _variants(node, parent) -> tuple[str, list] | None:
    """The operator for ``node`` and its variants (opaque values :func:`_apply` takes)."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAPS:
        return "binop", [BINOP_SWAPS[type(node.op)]]
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMP_SWAPS:
        return "compare", [CMP_SWAPS[type(node.ops[0])]]
    if isinstance(node, ast.keyword) and node.arg in AXIS_KEYWORDS:
        v = node.value
        cur = v.value if _number(v) else None
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub) and _number(v.operand):
            cur = -v.operand.value
        alts = [a for a in (0, -1, None if cur is None else cur - 1) if a is not None
                and a != cur]
        return ("axis", alts) if alts and not isinstance(v, (ast.Tuple, ast.List)) else None
    if isinstance(node, ast.Constant) and type(node.value) is bool:
        return "boolean", [not node.value]
    if _number(node) and not (isinstance(parent, ast.keyword) and parent.arg in AXIS_KEYWORDS):
        return "constant", _constant_values(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return "boolean", ["drop-not"]
    if isinstance(node, ast.BoolOp):
        return "boolean", ["swap"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not _number(
            node.operand):
        return "negation", ["drop-minus"]
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        return "return", ["none"] + (["left"] if isinstance(node.value, ast.BinOp) else [])
    if isinstance(node, DROPPABLE) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return "drop", ["pass"]
    return None


def _apply(node, op: str, value):
    """Mutate ``node`` in place, or return its replacement."""
    if op == "binop":
        node.op = value()
    elif op == "compare":
        node.ops = [value()]
    elif op == "axis":
        node.value = ast.Constant(value) if value >= 0 else ast.UnaryOp(ast.USub(),
                                                                         ast.Constant(-value))
    elif op in ("boolean", "constant") and isinstance(node, ast.Constant):
        node.value = value
    elif value == "drop-not":
        return node.operand
    elif value == "swap":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif value == "drop-minus":
        return node.operand
    elif value == "none":
        node.value = ast.Constant(None)
    elif value == "left":
        node.value = node.value.left
    elif value == "pass":
        return ast.Pass()
    return node


def _walk(tree):
    """``(node, parent, statement, enclosing function qualname)`` for every node inside a
    function body, in a fixed order; annotations, decorators, defaults and docstrings are
    left out."""
    out = []

    def visit(node, parent, stmt, qual, in_fn):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            q = f"{qual}.{node.name}" if qual else node.name
            for s in node.body:
                visit(s, node, s, f"{q}.<locals>", True)
            return
        if isinstance(node, ast.ClassDef):
            q = f"{qual}.{node.name}" if qual else node.name
            for s in node.body:
                visit(s, node, s, q, in_fn)
            return
        if isinstance(node, ast.Lambda):
            q = f"{qual}.<lambda>" if qual else "<lambda>"
            visit(node.body, node, stmt, f"{q}.<locals>", True)
            return
        if isinstance(node, ast.arg) or (isinstance(node, ast.AnnAssign) and not in_fn):
            return
        if in_fn:
            out.append((node, parent, stmt, qual))
        for name, field in ast.iter_fields(node):
            if name in ("annotation", "returns", "decorator_list", "type_comment"):
                continue
            for child in field if isinstance(field, list) else [field]:
                if isinstance(child, ast.AST):
                    is_stmt = isinstance(child, ast.stmt)
                    visit(child, node, child if is_stmt else stmt, qual, in_fn)

    for s in tree.body:
        visit(s, tree, s, "", False)
    return out


def _owner(qual: str) -> str:
    """The function qualname (``a.<locals>.b``) from the walk's ``.<locals>`` suffix."""
    return qual[:-len(".<locals>")] if qual.endswith(".<locals>") else qual


def sites(path: str, source: str) -> list[Site]:
    """Every mutable node of a file's function bodies."""
    tree = ast.parse(source)
    out = []
    for i, (node, parent, stmt, qual) in enumerate(_walk(tree)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            continue  # a docstring
        v = _variants(node, parent)
        if v is None:
            continue
        lineno = getattr(node, "lineno", None) or getattr(parent, "lineno", stmt.lineno)
        out.append(Site(path, i, v[0], lineno, stmt.lineno, _owner(qual), len(v[1])))
    return out


def mutate(source: str, site: Site, variant: int) -> tuple[ast.Module, Mutant]:
    """The file's AST with the mutant applied, and the mutant's description."""
    tree = ast.parse(source)
    node, parent, stmt, _ = _walk(tree)[site.index]
    op, values = _variants(node, parent)
    if op != site.op:
        raise ValueError(f"mutate: site {site.index} of {site.path} is now a {op!r}, "
                         f"not a {site.op!r} (the file changed)")
    before = ast.get_source_segment(source, stmt) or ast.unparse(stmt)
    before = " ".join(line.strip() for line in before.splitlines()[:1])
    new = _apply(node, op, values[variant])
    if new is not node:
        _replace(parent, node, new)
    shown = new if stmt is node else stmt
    if hasattr(shown, "body") and isinstance(shown, ast.stmt):  # a compound's header only
        shown = copy.copy(shown)
        shown.body, shown.orelse = [ast.Pass()], []
    after = ast.unparse(shown).splitlines()[0]
    ast.fix_missing_locations(tree)
    return tree, Mutant(site, variant, before, after)


def _replace(parent, old, new):
    for name, field in ast.iter_fields(parent):
        if isinstance(field, list):
            for k, child in enumerate(field):
                if child is old:
                    field[k] = new
                    return
        elif field is old:
            setattr(parent, name, new)
            return
    raise ValueError("mutate: the node is not a child of its parent")


def function_chain(source: str, site: Site) -> list[tuple[str, int]]:
    """``(qualname, first line)`` of every function enclosing the site, outermost first
    (the first line is the first decorator's, as ``co_firstlineno`` has it)."""
    tree = ast.parse(source)
    target = _walk(tree)[site.index][0]
    chain: list[tuple[str, int]] = []

    def find(node, qual, acc):
        if node is target:
            chain.extend(acc)
            return True
        for child in ast.iter_child_nodes(node):
            q, a = qual, acc
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                name = child.name if not isinstance(child, ast.Lambda) else "<lambda>"
                q = f"{qual}.{name}" if qual else name
                first = min([d.lineno for d in getattr(child, "decorator_list", [])]
                            + [child.lineno])
                a = acc + [(q, first)]
                q = f"{q}.<locals>"
            elif isinstance(child, ast.ClassDef):
                q = f"{qual}.{child.name}" if qual else child.name
            if find(child, q, a):
                return True
        return False

    find(tree, "", [])
    return chain
