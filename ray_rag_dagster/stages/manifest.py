"""What a stage returns: a reference to its output in object storage and a few counts.

This is all that flows through Dagster; payloads stay in the object store.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class DocumentRef(BaseModel):
    document_id: str
    version: str  # content hash of the source PDF
    source_key: str  # object key of the PDF in the inbox, e.g. ``input/protocol.pdf``

    @property
    def name(self) -> str:
        return self.source_key.rsplit("/", 1)[-1]


class StageOutput(BaseModel):
    stage: str
    document: DocumentRef
    key: str  # object key of the stage's output
    uri: str
    counts: dict[str, float] = Field(default_factory=dict)
    details: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0  # this stage
    # seconds, tokens and cost_usd of this stage and every stage before it, for this document
    totals: dict[str, float] = Field(default_factory=dict)
