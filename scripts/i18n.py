#!/usr/bin/env python3
"""Extract, merge and compile hbw-sync's message catalogs, with no gettext package installed.

    python scripts/i18n.py extract   # hbw_sync/**/*.py -> hbw_sync/locale/hbw_sync.pot
    python scripts/i18n.py merge     # .pot -> locale/<lang>/LC_MESSAGES/hbw_sync.po (keeps translations)
    python scripts/i18n.py compile   # .po -> .mo beside it (committed: a fresh clone and pip install need no step)
    python scripts/i18n.py all       # the three, in order
    python scripts/i18n.py check     # exit 1 if a catalog misses or leaves empty a string, or its .mo is stale

Why our own ~250 lines instead of Babel or xgettext: the rules are ours. Besides ``_()``, ``N_()`` and
``ngettext()``, a person reads click's ``help=``/``short_help=`` texts and the docstrings of commands,
which xgettext does not know to take (and which ``cli_common.translate_help`` looks up at run time
under the same key, ``inspect.cleandoc`` of the text). The .mo writer follows CPython's
``Tools/i18n/msgfmt.py``; output is deterministic, so a test can compare it with the committed file.
The same functions back ``tests/test_i18n.py``.
"""
from __future__ import annotations

import ast
import inspect
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hbw_sync"
LOCALE = PACKAGE / "locale"
POT = LOCALE / "hbw_sync.pot"
LANGUAGES = ("fr",)
PLURAL_FORMS = {"fr": "nplurals=2; plural=(n > 1);"}
FUNCS = {"_", "N_"}


@dataclass
class Entry:
    msgid: str
    plural: str | None = None
    msgstr: list[str] = field(default_factory=lambda: [""])
    refs: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.msgid, self.plural)

    def translated(self) -> bool:
        return all(s for s in self.msgstr)


def _const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_command_decorator(d: ast.AST) -> bool:
    f = d.func if isinstance(d, ast.Call) else d
    return isinstance(f, ast.Attribute) and f.attr in ("command", "group")


def extract_source(src: str, ref: str) -> list[Entry]:
    """Every marked string of one module, in source order."""
    tree = ast.parse(src)
    uses_click = "click" in src
    out: list[Entry] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name in FUNCS and node.args and _const(node.args[0]):
                out.append(Entry(_const(node.args[0]), refs=[f"{ref}:{node.lineno}"]))
            elif name in ("ngettext", "N_plural") and len(node.args) >= 2 and _const(node.args[0]) and _const(node.args[1]):
                out.append(Entry(_const(node.args[0]), _const(node.args[1]), ["", ""], [f"{ref}:{node.lineno}"]))
            if uses_click:
                for kw in node.keywords:
                    if kw.arg in ("help", "short_help") and _const(kw.value):
                        out.append(Entry(inspect.cleandoc(_const(kw.value)), refs=[f"{ref}:{node.lineno}"]))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and uses_click:
            doc = ast.get_docstring(node, clean=False)
            if doc and any(_is_command_decorator(d) for d in node.decorator_list):
                out.append(Entry(help_key(doc), refs=[f"{ref}:{node.lineno}"]))
    for e in out:
        if re.search(r"\{[^{}]*\}", e.msgid):
            e.flags.add("python-brace-format")
    return [e for e in out if e.msgid.strip()]


def help_key(text: str) -> str:
    """The catalog key of a click help text: what ``cli_common.translate_help`` looks up."""
    return inspect.cleandoc(text).split("\f")[0].rstrip()


def extract(package: Path = PACKAGE) -> dict[tuple[str, str | None], Entry]:
    """Every marked string in the package, merged by msgid (references accumulate)."""
    entries: dict[tuple[str, str | None], Entry] = {}
    for path in sorted(package.rglob("*.py")):
        ref = path.relative_to(package.parent).as_posix()
        for e in extract_source(path.read_text(encoding="utf-8"), ref):
            # References name the file, not the line: a line number would change the catalog (and
            # conflict in merges) at every edit above a string.
            e.refs = [ref]
            if e.key in entries:
                if ref not in entries[e.key].refs:
                    entries[e.key].refs.append(ref)
                entries[e.key].flags |= e.flags
            else:
                entries[e.key] = e
    return entries


# -- .po reading and writing --------------------------------------------------------------------

def _quote(s: str) -> str:
    body = s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    if "\n" not in body.rstrip("\n") or len(body) < 70:
        return '"' + body.replace("\n", "\\n") + '"'
    parts = body.split("\n")
    lines = [p + "\\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return '""\n' + "\n".join('"' + line + '"' for line in lines)


def _unquote(s: str) -> str:
    s = s.strip()
    assert s.startswith('"') and s.endswith('"'), s
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}[m.group(1)], s[1:-1])


def write_po(path: Path, entries: list[Entry], header: str) -> None:
    chunks = [header]
    for e in entries:
        lines = [f"#: {r}" for r in e.refs]
        if e.flags:
            lines.append("#, " + ", ".join(sorted(e.flags)))
        lines.append("msgid " + _quote(e.msgid))
        if e.plural is not None:
            lines.append("msgid_plural " + _quote(e.plural))
            lines += [f"msgstr[{i}] " + _quote(s) for i, s in enumerate(e.msgstr)]
        else:
            lines.append("msgstr " + _quote(e.msgstr[0]))
        chunks.append("\n".join(lines))
    path.write_text("\n\n".join(chunks) + "\n", encoding="utf-8")


def read_po(path: Path) -> tuple[str, list[Entry]]:
    """(header block text, entries); the header is the first entry, with msgid ""."""
    text = path.read_text(encoding="utf-8")
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    header, entries = "", []
    for block in blocks:
        e = Entry("")
        cur: tuple[str, int] | None = None
        vals: dict[tuple[str, int], str] = {}
        for line in block.splitlines():
            if line.startswith("#:"):
                e.refs += line[2:].split()
            elif line.startswith("#,"):
                e.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                assert cur is not None
                vals[cur] += _unquote(line)
            else:
                kw, _sp, rest = line.partition(" ")
                m = re.fullmatch(r"msgstr\[(\d)\]", kw)
                cur = ("msgstr", int(m.group(1))) if m else (kw, 0)
                vals[cur] = _unquote(rest)
        if vals.get(("msgid", 0)) == "":
            header = block
            continue
        e.msgid = vals[("msgid", 0)]
        e.plural = vals.get(("msgid_plural", 0))
        n = max([i for (k, i) in vals if k == "msgstr"] + [0]) + 1
        e.msgstr = [vals.get(("msgstr", i), "") for i in range(n)]
        entries.append(e)
    return header, entries


def _header(lang: str | None) -> str:
    lines = ['msgid ""', 'msgstr ""', '"Project-Id-Version: hbw-sync\\n"', '"MIME-Version: 1.0\\n"',
             '"Content-Type: text/plain; charset=UTF-8\\n"', '"Content-Transfer-Encoding: 8bit\\n"']
    if lang:
        lines += [f'"Language: {lang}\\n"', f'"Plural-Forms: {PLURAL_FORMS[lang]}\\n"']
    return "\n".join(lines)


def po_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "hbw_sync.po"


def merge(template: dict[tuple[str, str | None], Entry], old: list[Entry]) -> list[Entry]:
    """The template's entries, with the translations ``old`` had for them; strings gone from the code drop out."""
    known = {e.key: e for e in old}
    out = []
    for key, t in template.items():
        e = Entry(t.msgid, t.plural, list(t.msgstr), list(t.refs), set(t.flags))
        if key in known and len(known[key].msgstr) == len(e.msgstr):
            e.msgstr = known[key].msgstr
        out.append(e)
    return out


# -- .mo ------------------------------------------------------------------------------------------

def mo_bytes(header: str, entries: list[Entry]) -> bytes:
    """GNU .mo bytes of the translated entries (CPython's msgfmt.py layout, keys sorted)."""
    head_vals = re.findall(r'^"(.*)"$', header, re.M)
    messages = {b"": "".join(_unquote(f'"{v}"') for v in head_vals).encode()}
    for e in entries:
        if not e.translated():
            continue
        if e.plural is None:
            messages[e.msgid.encode()] = e.msgstr[0].encode()
        else:
            messages[e.msgid.encode() + b"\0" + e.plural.encode()] = b"\0".join(s.encode() for s in e.msgstr)
    keys = sorted(messages)
    ids = strs = b""
    offsets = []
    for k in keys:
        offsets.append((len(ids), len(k), len(strs), len(messages[k])))
        ids += k + b"\0"
        strs += messages[k] + b"\0"
    keystart = 7 * 4 + 16 * len(keys)
    valuestart = keystart + len(ids)
    koffsets: list[int] = []
    voffsets: list[int] = []
    for o1, l1, o2, l2 in offsets:
        koffsets += [l1, o1 + keystart]
        voffsets += [l2, o2 + valuestart]
    out = struct.pack("Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + len(keys) * 8, 0, 0)
    out += struct.pack(f"{len(koffsets)}i", *koffsets) + struct.pack(f"{len(voffsets)}i", *voffsets)
    return out + ids + strs


# -- commands ---------------------------------------------------------------------------------------

def cmd_extract() -> None:
    POT.parent.mkdir(parents=True, exist_ok=True)
    write_po(POT, list(extract().values()), _header(None))


def cmd_merge() -> None:
    template = extract()
    for lang in LANGUAGES:
        p = po_path(lang)
        p.parent.mkdir(parents=True, exist_ok=True)
        old = read_po(p)[1] if p.exists() else []
        write_po(p, merge(template, old), _header(lang))


def cmd_compile() -> None:
    for lang in LANGUAGES:
        header, entries = read_po(po_path(lang))
        po_path(lang).with_suffix(".mo").write_bytes(mo_bytes(header, entries))


def problems(lang: str) -> list[str]:
    """What keeps the catalog of ``lang`` from being complete and in step with the code."""
    out = []
    p = po_path(lang)
    if not p.exists():
        return [f"{p} is missing"]
    header, entries = read_po(p)
    have = {e.key: e for e in entries}
    for key, t in extract().items():
        e = have.get(key)
        if e is None:
            out.append(f"{lang}: not in the catalog: {t.msgid!r} ({t.refs[0]})")
        elif not e.translated():
            out.append(f"{lang}: not translated: {t.msgid!r} ({t.refs[0]})")
        else:
            for s in e.msgstr:
                if placeholders(s) != placeholders(t.msgid) and placeholders(s) != placeholders(t.plural or ""):
                    out.append(f"{lang}: placeholders differ: {t.msgid!r} -> {s!r}")
    mo = p.with_suffix(".mo")
    if not mo.exists() or mo.read_bytes() != mo_bytes(header, entries):
        out.append(f"{mo} is stale: run python scripts/i18n.py compile")
    return out


def placeholders(s: str) -> list[str]:
    """The ``{name...}`` fields of a str.format string, sorted (``{{`` escapes are not fields)."""
    return sorted(m.group(1) for m in re.finditer(r"(?<!\{)\{([^{}]*)\}", s.replace("{{", "").replace("}}", "")))


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else "all"
    if what in ("extract", "all"):
        cmd_extract()
    if what in ("merge", "all"):
        cmd_merge()
    if what in ("compile", "all"):
        cmd_compile()
    if what in ("check", "all"):
        found = [x for lang in LANGUAGES for x in problems(lang)]
        for x in found:
            print(x)
        if what == "check" and found:
            return 1
        if what == "all":
            print(f"{len(found)} problem(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
