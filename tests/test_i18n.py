"""Both languages say everything, with the same placeholders."""

import re

from easytune.i18n import catalog

PLACEHOLDER = re.compile(r"{(\w+)")


def test_catalogs_have_the_same_keys_and_placeholders():
    zh, en = catalog("zh"), catalog("en")
    assert set(zh) == set(en), set(zh) ^ set(en)
    for key in en:
        assert set(PLACEHOLDER.findall(zh[key])) == set(PLACEHOLDER.findall(en[key])), key


def test_every_plan_field_has_help_in_both_languages():
    from easytune.plan.schema import plan_fields

    for lang in ("zh", "en"):
        for f in plan_fields():
            text = catalog(lang)[f"plan.field.{f.name}"]
            assert text.strip() and "\n" not in text, f.name  # one line: it is also the plan YAML's comment
