"""What a metric row and a pushed event say of a validation's per-class metrics and
confusion matrix: a summary bounded whatever the class count; a malformed matrix (from
the internal callback) is refused naming the field, before anything is stored."""

import pytest

from shared.errors import InvalidInput
from shared.services.reporting import (
    NAME_CHARS,
    TOP_CONFUSIONS,
    stored_details_size,
    validation_summary,
)


def test_the_most_frequent_mistakes_come_first_and_are_capped():
    n = 40
    cm = [[50 if t == p else (t * n + p) % 7 for p in range(n)] for t in range(n)]
    cm[3][5] = 90  # the worst mistake, above even the diagonal's counts
    names = {f"{'x' * 300}{i}": {"f1": 0.5} for i in range(n)}
    summary = validation_summary({"per_class": names, "confusion_matrix": cm})
    assert summary["classes"] == n and len(summary["top_confusions"]) == TOP_CONFUSIONS
    first = summary["top_confusions"][0]
    assert first["count"] == 90 and first["true"] == ("x" * 300 + "3")[:NAME_CHARS]
    counts = [c["count"] for c in summary["top_confusions"]]
    assert counts == sorted(counts, reverse=True) and all(
        len(c["true"]) <= NAME_CHARS for c in summary["top_confusions"]
    )


def test_without_names_the_classes_are_their_indices_and_a_perfect_matrix_has_no_mistakes():
    assert validation_summary({"confusion_matrix": [[2, 0], [1, 3]]})["top_confusions"] == [
        {"true": "1", "predicted": "0", "count": 1}
    ]
    assert validation_summary({"confusion_matrix": [[2, 0], [0, 3]]})["top_confusions"] == []
    assert validation_summary({"per_class": {"a": {}, "b": {}}}) == {"classes": 2}
    assert validation_summary({}) == {}


@pytest.mark.parametrize(
    ("details", "field"),
    [
        ({"confusion_matrix": [[1, 2]]}, "confusion_matrix"),  # not square
        ({"confusion_matrix": [[1, -1], [0, 1]]}, "confusion_matrix"),
        ({"confusion_matrix": [[1, "2"], [0, 1]]}, "confusion_matrix"),
        ({"confusion_matrix": "[[1]]"}, "confusion_matrix"),
        ({"per_class": ["a", "b"]}, "per_class"),
    ],
)
def test_a_malformed_validation_is_refused_naming_its_field(details, field):
    with pytest.raises(InvalidInput) as refused:
        validation_summary(details)
    assert refused.value.field == field


def test_the_size_of_a_rows_details_is_its_objects_or_its_own():
    assert stored_details_size({"details": {"key": "k", "size": 1234, "sha256": "0" * 64}}) == 1234
    assert stored_details_size({"confusion_matrix": [[1]]}) == len('{"confusion_matrix":[[1]]}')
    assert stored_details_size({"accuracy": 0.5}) == 0
