"""`sealbox desk --lang`, and the language taken from the locale when none is given."""

from __future__ import annotations

import pytest

from clients.desk.app import LANGUAGES, language_of, translations


@pytest.mark.parametrize(
    ("choice", "environ", "expected"),
    [
        ("ru", {}, "ru"),
        ("RU", {"LANG": "en_GB.UTF-8"}, "ru"),
        ("ru-KG", {}, "ru"),
        ("en", {"LANG": "ru_RU.UTF-8"}, "en"),
        (None, {"LANG": "ru_RU.UTF-8"}, "ru"),
        (None, {"LC_ALL": "ru_KG.UTF-8", "LANG": "en_US.UTF-8"}, "ru"),
        (None, {"LC_MESSAGES": "en_US.UTF-8", "LANG": "ru_RU.UTF-8"}, "en"),
        (None, {"LANG": "ky_KG.UTF-8"}, "en"),  # no Kyrgyz catalog yet: English, not an error
        (None, {"LANG": "C"}, "en"),
        (None, {}, "en"),
    ],
)
def test_the_language_is_the_choice_else_the_locale_else_english(choice, environ, expected):
    assert language_of(choice, environ) == expected


@pytest.mark.parametrize("choice", ["ky", "de", "xx", "../../etc"])
def test_a_language_without_a_catalog_is_refused_by_name(choice):
    with pytest.raises(ValueError, match="no catalog"):
        language_of(choice, {})


def test_every_offered_language_has_a_catalog_that_translates():
    for lang in LANGUAGES:
        catalog = translations(lang)
        if lang != "en":
            assert catalog.gettext("Reports") != "Reports", lang
