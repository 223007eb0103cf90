"""Document ids: a person can read them (the Dagster partition keys), they are stable and unique per source
key, and only ids of that shape pass into filter expressions, Pinecone id prefixes and object prefixes."""

from __future__ import annotations

import re

import pytest

from ray_rag_dagster.ids import OldStateError, check_current_ids, document_id_for, safe_document_id


@pytest.mark.parametrize(
    ("source_key", "slug"),
    [
        ("input/Protocol V3 (Lilly).pdf", "protocol-v3-lilly"),
        ("input/EliLilly_NCT03421379_Diabetes.pdf", "elililly-nct03421379-diabetes"),
        ("input/Étude clinique — n°2.PDF", "etude-clinique-n2"),
        ("input/Straße ﬁnal.pdf", "strasse-final"),
        ("input/it's \"quoted\" #1 @ site.pdf", "it-s-quoted-1-site"),
        ("input/batch/protocol-0001.pdf", "protocol-0001"),
        ("input/📄 📄.pdf", "document"),
        ("input/临床方案.pdf", "document"),
        ("input/###.pdf", "document"),
        ("input/" + "long name " * 10 + ".pdf", "long-name-long-name-long-name-long-name"),  # capped, no "-" left at the cut
    ],
)
def test_id_is_a_slug_of_the_file_name_and_a_short_hash(source_key: str, slug: str) -> None:
    document_id = document_id_for(source_key)
    name, digest = document_id.rsplit("-", 1)
    assert name == slug and re.fullmatch(r"[0-9a-f]{8}", digest)
    assert safe_document_id(document_id) == document_id


def test_ids_are_stable_and_unique_per_source_key() -> None:
    # Pinned: a changed id would orphan every document already in a state folder or index.
    assert document_id_for("input/Protocol V3 (Lilly).pdf") == "protocol-v3-lilly-6f660877"
    # The same file name in two folders, or differing only in case: same slug, different documents.
    assert document_id_for("input/site-a/protocol.pdf") != document_id_for("input/site-b/protocol.pdf")
    assert document_id_for("input/Protocol.pdf") != document_id_for("input/protocol.pdf")
    keys = [f"input/batch-{batch}/protocol-{number:04d}.pdf" for batch in range(5) for number in range(2000)]
    assert len({document_id_for(key) for key in keys}) == len(keys)


@pytest.mark.parametrize(
    "not_an_id",
    [
        "doc_0123456789ab",  # the older shape
        "protocol-0a1b2c3d' OR '1'='1",
        "protocol#v1-0a1b2c3d",
        "protocol@v1-0a1b2c3d",
        "../status-0a1b2c3d",
        "Protocol-0a1b2c3d",
        "protocol--v3-0a1b2c3d",
        "-0a1b2c3d",
        "protocol-0a1b2c3",
        "protocol-0a1b2c3g",
        "protocol-0a1b2c3d\n",
        "a" * 41 + "-0a1b2c3d",
        "",
    ],
)
def test_anything_else_is_refused(not_an_id: str) -> None:
    with pytest.raises(ValueError, match="not a document id"):
        safe_document_id(not_an_id)


def test_state_with_old_ids_is_refused_with_the_way_out() -> None:
    check_current_ids([])
    check_current_ids([document_id_for("input/a.pdf"), document_id_for("input/b.pdf")])
    with pytest.raises(OldStateError, match=r"2 document id\(s\) of an older shape \(e\.g\. 'doc_0123456789ab'\)") as error:
        check_current_ids([document_id_for("input/a.pdf"), "doc_0123456789ab", "doc_ba9876543210"])
    assert "`ray-rag reset`" in str(error.value) and "keeps the inbox PDFs" in str(error.value)
