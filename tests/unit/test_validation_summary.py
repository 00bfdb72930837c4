"""What a metric row and a pushed event say of a validation's per-class metrics and
confusion matrix: a summary bounded whatever the class count; a malformed matrix (from
the internal callback) is refused naming the field, before anything is stored."""

import pytest

from shared import keys
from shared.errors import InvalidInput
from shared.services.reporting import (
    NAME_CHARS,
    TOP_CONFUSIONS,
    read_details,
    store_details,
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


class Objects(dict):
    """An object store's get/put over a dict (all read_details and store_details use)."""

    def put(self, key, body, content_type=None):
        self[key] = body

    def get(self, key):
        return self[key]


def test_details_are_read_from_the_jobs_own_object_and_only_as_recorded():
    objects = Objects()
    details = {"per_class": {"a": {"f1": 1.0}}, "confusion_matrix": [[3]]}
    ref = store_details(objects, 7, 2, details)
    objects["jobs/8/secret.json"] = b'{"per_class": "someone else\'s"}'
    # a row that names another key (a compromised trainer's) is read at its own key
    row = {"epoch": 2, "details": {**ref, "key": "jobs/8/secret.json"}}
    assert read_details(objects, 7, row) == details
    objects[keys.validation_details(7, 2)] = b'{"per_class": {}, "confusion_matrix": []}'
    assert read_details(objects, 7, row) == {}  # not the object the row recorded
