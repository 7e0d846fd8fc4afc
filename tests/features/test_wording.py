"""One plural rule for every sentence: counts, reason templates and the rep-facing reasons."""

from __future__ import annotations

from leadscore.features.events import EventFeatureTransform, EventMapping
from leadscore.features.mapping import render_sentence
from leadscore.features.wording import choose_forms, count_phrase, is_one, singular_of
from leadscore.model.explain import concept_sentence, plural


def test_singular_of_a_plural_noun_phrase_by_its_last_word() -> None:
    assert singular_of("trial logins") == "trial login"
    assert singular_of("sales touches") == "sales touch"
    assert singular_of("e-mail bounces") == "e-mail bounce"
    assert singular_of("support replies") == "support reply"
    assert singular_of("boxes") == "box"
    assert singular_of("access") == "access"  # not a plural


def test_count_phrase_and_template_forms_agree_on_one() -> None:
    assert count_phrase(1, "trial logins") == "1 trial login"
    assert count_phrase(1.0, "webinars attended", singular="webinar attended") == "1 webinar attended"
    assert count_phrase(0, "trial logins") == "0 trial logins"
    assert count_phrase(3.0, "trial logins") == "3 trial logins"
    assert choose_forms("[a login|logins]", one=True) == "a login"
    assert is_one(1.0) and is_one("1") and not is_one(2) and not is_one(None)
    assert render_sentence("{value:.0f} [reply|replies]", 1.0) == "1 reply"


def test_reasons_count_with_the_same_rule() -> None:
    """explain.plural is the features rule: a noun outside its table is made singular properly."""
    assert plural(1, "support replies") == "1 support reply"
    assert plural(1, "webinars attended") == "1 webinar attended"  # the catalogue's own singular
    assert plural(2, "sales touches") == "2 sales touches"
    assert concept_sentence("sales_touches_total", {"sales_touches_total": 1.0}) == "1 sales touch so far"


def _transform(**spec: object) -> EventFeatureTransform:
    return EventFeatureTransform(
        EventMapping.model_validate(
            {
                "name": "t",
                "tables": {
                    "leads": {"path": "l.csv", "id_column": "Id", "created_at_column": "Created"},
                    "activities": {
                        "path": "a.csv",
                        "lead_id_column": "Id",
                        "timestamp_column": "When",
                        "type_column": "What",
                        "types": {"Trial Login": {"name": "trial_login", "label": "trial logins", **spec}},
                    },
                    "outcomes": {"path": "o.csv", "lead_id_column": "Id", "date_column": "Won"},
                },
            }
        )
    )


def test_new_type_default_sentence_counts_one_in_the_singular() -> None:
    transform = _transform()
    assert transform.sentence("trial_login", {"trial_login_total": 1.0}) == "1 trial login so far"
    assert transform.sentence("trial_login", {"trial_login_total": 3.0}) == "3 trial logins so far"
    assert transform.sentence("trial_login", {"trial_login_total": 0.0}) == "No trial logins yet"
    attended = _transform(label="trials attended", singular="trial attended")
    assert attended.sentence("trial_login", {"trial_login_total": 1.0}) == "1 trial attended so far"
