"""Sealbox Desk's catalogs stay honest: every string the pages and Python sources mark for
gettext has a real Russian translation, with the same placeholders; the committed .mo is what
the committed .po compiles to, and messages.pot is current.

When one fails after a template or source change, regenerate as clients/desk/locale/README.md
says (extract, `pybabel update`, translate, `pybabel compile`) and commit .pot, .po and .mo.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

import clients.desk

DESK = Path(clients.desk.__file__).parent
LOCALE = DESK / "locale"
TRANSLATED = ("ru",)
"""Languages whose catalog must be complete (English is the source language)."""

Key = str | tuple[str, ...]

# %(name)s, %d, %% and {name}: what a translation must carry over unchanged.
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]|\{[^{}]*\}")
# `sealbox status`: command names and other code quoted in backticks.
CODE = re.compile(r"`[^`]+`")


def extracted() -> dict[Key, list[str]]:
    """Every message marked in clients/desk (templates and .py), as `pybabel extract` with
    clients/desk/locale/babel.cfg finds them: id (a tuple for plurals) -> where it is used."""
    with (LOCALE / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(LOCALE / "babel.cfg"))
    found: dict[Key, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(DESK), method_map, options_map
    ):
        key: Key = tuple(message) if isinstance(message, list | tuple) else message
        if isinstance(key, tuple):
            key = tuple(k for k in key if k)  # extraction pads absent plural forms with ""
            if len(key) == 1:
                key = key[0]
        found.setdefault(key, []).append(f"{filename}:{lineno}")
    return found


def _key(message_id: str | tuple[str, ...] | list[str]) -> Key:
    return tuple(message_id) if isinstance(message_id, list | tuple) else message_id


def _catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def _po(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "messages.po"


def _placeholders(text: str) -> Counter[str]:
    return Counter(PLACEHOLDER.findall(text))


def test_extraction_finds_the_desk_s_strings() -> None:
    found = extracted()
    assert len(found) > 100
    assert "Reports" in found  # a template string
    assert any(where.endswith(".py") or ".py:" in where for w in found.values() for where in w)
    assert ("%(num)d finding needs your attention.", "%(num)d findings need your attention.") in (
        found
    )


def test_the_catalog_template_is_current() -> None:
    fresh = set(extracted())
    committed = {_key(m.id) for m in _catalog(LOCALE / "messages.pot") if m.id}
    assert sorted(map(str, fresh - committed)) == [], "strings missing from messages.pot"
    assert sorted(map(str, committed - fresh)) == [], "strings messages.pot holds that are gone"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_string_has_a_real_translation(lang: str) -> None:
    catalog = _catalog(_po(lang), lang)
    found = extracted()
    problems: list[str] = []
    for key, where in sorted(found.items(), key=lambda kv: str(kv[0])):
        message = catalog.get(key[0] if isinstance(key, tuple) else key)
        if message is None:
            problems.append(f"untranslated {key!r} ({where[0]})")
            continue
        if message.fuzzy:
            problems.append(f"fuzzy {key!r} ({where[0]})")
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if isinstance(key, tuple):
            if _key(message.id) != key:
                problems.append(f"plural forms differ from the source for {key!r}")
            if len(forms) != catalog.num_plurals:
                problems.append(f"{key!r} has {len(forms)} forms, not {catalog.num_plurals}")
        if not all(f.strip() for f in forms):
            problems.append(f"empty translation of {key!r} ({where[0]})")
        sources = key if isinstance(key, tuple) else (key,)
        wanted = _placeholders(sources[-1])
        code = set(CODE.findall(sources[-1]))
        for form in forms:
            if _placeholders(form) != wanted:
                problems.append(f"placeholders of {form!r} differ from {sources[-1]!r}")
            if not code <= set(CODE.findall(form)):
                problems.append(f"{form!r} lost {sorted(code - set(CODE.findall(form)))}")
    assert problems == [], "\n".join(problems)
    # Nothing stale in the .po either: it is updated from the template it translates.
    listed = {_key(m.id) for m in catalog if m.id}
    assert sorted(map(str, listed - set(found))) == [], "run `pybabel update` on the catalog"


def test_russian_has_three_plural_forms() -> None:
    catalog = _catalog(_po("ru"), "ru")
    assert catalog.num_plurals == 3
    header = dict(catalog.mime_headers)
    assert header["Plural-Forms"].startswith("nplurals=3;")
    assert header["Content-Type"] == "text/plain; charset=utf-8"
    finding = catalog.get("%(num)d finding needs your attention.")
    assert finding is not None
    # 1, 2-4, 5+ (and 11-14) take the three forms, as the compiled catalog evaluates them.
    from clients.desk.app import translations

    plural = translations("ru").plural  # type: ignore[attr-defined]
    assert [plural(n) for n in (1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 111, 112)] == [
        0, 1, 1, 2, 2, 2, 2, 0, 1, 2, 2, 2,
    ]  # fmt: skip


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_committed_mo_is_the_compiled_po(lang: str) -> None:
    po = _catalog(_po(lang), lang)
    compiled = io.BytesIO()
    write_mo(compiled, po)
    compiled.seek(0)
    mo_path = _po(lang).with_suffix(".mo")
    assert mo_path.exists(), f"compile it: pybabel compile -d {LOCALE}"
    with mo_path.open("rb") as f:
        committed = read_mo(f)

    def pairs(catalog: Catalog) -> dict[object, object]:
        return {_key(m.id): _key(m.string) for m in catalog if m.id}

    assert pairs(committed) == pairs(read_mo(compiled)), f"recompile: pybabel compile -d {LOCALE}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_desk_loads_the_catalog_it_serves(lang: str) -> None:
    from clients.desk.app import translations

    loaded = translations(lang)
    catalog = _catalog(_po(lang), lang)
    reports = catalog.get("Reports")
    assert reports is not None
    assert loaded.gettext("Reports") == reports.string != "Reports"
    assert (
        loaded.ngettext(
            "%(num)d finding needs your attention.", "%(num)d findings need your attention.", 3
        )
        == catalog.get("%(num)d finding needs your attention.").string[1]
    )  # type: ignore[union-attr]


def test_a_language_without_a_compiled_catalog_falls_back_to_english() -> None:
    """The Desk loads compiled catalogs only (babel falls back to NullTranslations), so a
    language missing its .mo would show English: `LANGUAGES` must list complete ones only."""
    from clients.desk.app import translations

    assert translations("ru").gettext("Reports") != "Reports"
    assert translations("xx").gettext("Reports") == "Reports"
