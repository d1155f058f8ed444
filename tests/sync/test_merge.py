"""The merge of a report's revision DAG (PROTOCOL §14.3-§14.7).

The state is a function of the set of revisions: any order, duplication or
partition gives the same state; concurrent writes of one field keep every
value; a resolution (parents = all heads) converges everywhere.
"""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from sync.merge import ReportDag, Revision, merge_revisions
from sync.report import DELETED, ReportContent

REPORT = b"R" * 16
AUTHORS = [bytes([i]) * 16 for i in range(1, 4)]


def rid(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def rev(
    name: str, parents=(), author=AUTHORS[0], t=0, notes=(), resolves=False, **fields
) -> Revision:
    content = ReportContent(
        client_time=t,
        fields={k: (DELETED if v is None else v) for k, v in fields.items()},
        notes=tuple(notes),
        resolves=resolves,
    )
    return Revision(rid(name), REPORT, tuple(parents), author, content)


@st.composite
def dags(draw, max_size: int = 9) -> list[Revision]:
    """Random DAGs: each revision picks parents among earlier ones and writes a few fields."""
    n = draw(st.integers(1, max_size))
    revisions: list[Revision] = []
    for i in range(n):
        parents = (
            draw(st.lists(st.sampled_from(revisions), max_size=3, unique_by=lambda r: r.id))
            if revisions
            else []
        )
        fields = draw(
            st.dictionaries(
                st.sampled_from(["title", "place", "victims"]),
                st.one_of(st.sampled_from(["a", "b", "c"]), st.none()),
                max_size=2,
            )
        )
        notes = draw(st.lists(st.sampled_from(["n1", "n2"]), max_size=1))
        if not fields and not notes:
            fields = {"title": f"t{i}"}
        revisions.append(
            rev(
                f"r{i}",
                parents=[p.id for p in parents],
                author=draw(st.sampled_from(AUTHORS)),
                t=draw(st.integers(0, 10)),
                notes=notes,
                **fields,
            )
        )
    return revisions


def reference_field_values(revisions: list[Revision]) -> dict[str, set[tuple[bytes, object]]]:
    """A naive model: a write survives unless a later write of the field is reachable from it."""
    by_id = {r.id: r for r in revisions}

    def reaches(a: bytes, b: bytes) -> bool:  # a is a strict ancestor of b
        todo, seen = list(by_id[b].parents), set()
        while todo:
            x = todo.pop()
            if x == a:
                return True
            if x in seen or x not in by_id:
                continue
            seen.add(x)
            todo.extend(by_id[x].parents)
        return False

    out: dict[str, set[tuple[bytes, object]]] = {}
    names = {k for r in revisions for k in r.content.fields}
    for name in names:
        writers = [r for r in revisions if name in r.content.fields]
        out[name] = {
            (r.id, r.content.fields[name])
            for r in writers
            if not any(reaches(r.id, o.id) for o in writers if o is not r)
        }
    return out


@given(dags(), st.randoms(use_true_random=False))
def test_any_order_and_duplication_give_the_same_state(revisions, rnd) -> None:
    shuffled = revisions + rnd.sample(revisions, k=len(revisions) // 2)
    rnd.shuffle(shuffled)
    assert merge_revisions(REPORT, shuffled) == merge_revisions(REPORT, revisions)


@given(dags(), st.lists(st.integers(0, 2), min_size=9, max_size=9))
def test_any_partition_merged_in_any_grouping_gives_the_same_state(revisions, assignment) -> None:
    parts = [ReportDag(REPORT) for _ in range(3)]
    for revision, part in zip(revisions, assignment, strict=False):
        parts[part].add(revision)
    a, b, c = parts
    expected = merge_revisions(REPORT, revisions)
    assert a.merge(b).merge(c).state() == expected  # associativity ...
    assert a.merge(b.merge(c)).state() == expected
    assert c.merge(a).merge(b).state() == expected  # ... and commutativity
    assert a.merge(a).state() == a.state()  # idempotence


@given(dags())
def test_surviving_values_match_a_naive_causal_model(revisions) -> None:
    state = merge_revisions(REPORT, revisions)
    expected = reference_field_values(revisions)
    got = {f.name: {(w.revision, w.value) for w in f.writes} for f in state.fields}
    assert got == expected


@given(dags())
def test_resolution_with_all_heads_as_parents_removes_every_conflict(revisions) -> None:
    state = merge_revisions(REPORT, revisions)
    choice = {f.name: "resolved" for f in state.conflicts}
    if not choice:
        choice = {"title": "resolved"}
    resolution = rev("resolution", parents=state.heads, author=AUTHORS[2], resolves=True, **choice)
    after = merge_revisions(REPORT, [*revisions, resolution])
    assert after.conflicts == ()
    assert after.heads == (resolution.id,)
    for name in choice:
        assert after.field(name).value == "resolved"


def test_concurrent_edits_of_the_same_field_keep_every_value_with_author_and_time() -> None:
    root = rev("root", title="Raid", place="Market")
    field = rev("field", parents=[root.id], author=AUTHORS[1], t=100, place="North market")
    coord = rev("coord", parents=[root.id], author=AUTHORS[2], t=50, place="Central market")
    state = merge_revisions(REPORT, [root, field, coord])
    place = state.field("place")
    assert place.conflict
    assert {(w.value, w.author, w.client_time) for w in place.writes} == {
        ("North market", AUTHORS[1], 100),
        ("Central market", AUTHORS[2], 50),
    }
    assert state.field("title").value == "Raid"  # untouched field unaffected
    assert set(state.heads) == {field.id, coord.id}


def test_concurrent_edits_of_different_fields_merge_without_conflict() -> None:
    root = rev("root", title="Raid")
    a = rev("a", parents=[root.id], author=AUTHORS[1], place="Market")
    b = rev("b", parents=[root.id], author=AUTHORS[2], victims="3")
    state = merge_revisions(REPORT, [root, a, b])
    assert state.conflicts == ()
    assert {f.name: f.value for f in state.fields} == {
        "title": "Raid",
        "place": "Market",
        "victims": "3",
    }


def test_deletion_never_silently_wins_over_a_concurrent_edit() -> None:
    root = rev("root", place="Market")
    delete = rev("delete", parents=[root.id], place=None)
    edit = rev("edit", parents=[root.id], author=AUTHORS[1], place="Square")
    place = merge_revisions(REPORT, [root, delete, edit]).field("place")
    assert place.conflict and set(place.values) == {DELETED, "Square"}


def test_a_causally_later_deletion_is_the_value() -> None:
    root = rev("root", place="Market")
    delete = rev("delete", parents=[root.id], place=None)
    place = merge_revisions(REPORT, [root, delete]).field("place")
    assert not place.conflict and place.value is DELETED


def test_free_text_is_never_interleaved() -> None:
    root = rev("root", story="The soldiers came at dawn.")
    a = rev("a", parents=[root.id], story="The soldiers came at dawn. Two were taken.")
    b = rev("b", parents=[root.id], author=AUTHORS[1], story="Police came at dawn.")
    story = merge_revisions(REPORT, [root, a, b]).field("story")
    assert set(story.values) == {a.content.fields["story"], b.content.fields["story"]}


def test_a_write_that_saw_only_one_branch_does_not_resolve_the_other() -> None:
    root = rev("root", place="x")
    a = rev("a", parents=[root.id], place="a")
    b = rev("b", parents=[root.id], author=AUTHORS[1], place="b")
    a2 = rev("a2", parents=[a.id], place="a2")
    assert set(merge_revisions(REPORT, [root, a, b, a2]).field("place").values) == {"a2", "b"}


def test_notes_are_an_add_wins_set_from_every_branch() -> None:
    root = rev("root", title="t", notes=["first"])
    a = rev("a", parents=[root.id], notes=["from a"])
    b = rev("b", parents=[root.id], author=AUTHORS[1], notes=["from b"])
    notes = merge_revisions(REPORT, [b, a, root]).notes
    assert notes[0].text == "first"
    assert {n.text for n in notes} == {"first", "from a", "from b"}


def test_unknown_parents_are_reported_not_hidden() -> None:
    orphan = rev("orphan", parents=[rid("never seen")], title="t")
    state = merge_revisions(REPORT, [orphan])
    assert state.missing == (rid("never seen"),)


def test_two_coordinators_with_the_same_revisions_show_identical_json() -> None:
    revisions = [
        rev("root", title="a"),
        rev("x", parents=[rid("root")], title="b", author=AUTHORS[1]),
    ]
    views = [merge_revisions(REPORT, p).to_json() for p in itertools.permutations(revisions)]
    assert all(v == views[0] for v in views)
