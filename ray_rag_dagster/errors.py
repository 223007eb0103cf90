"""Errors that name the document and the reason, so a status row or a failed run reads on its own."""


class DocumentError(Exception):
    """A document cannot be processed (corrupt, encrypted, not a PDF, ...).

    The message is one line: ``<document name>: <reason>``. It is what the status store records and
    what the Dagster run fails with; it never carries a secret or a payload.
    """

    def __init__(self, document: str, reason: str) -> None:
        self.document = document
        self.reason = reason
        super().__init__(f"{document}: {reason}")


class DocumentGone(DocumentError):
    """The source PDF was deleted or replaced while its version was being processed.

    Not a failure of the document: the run stops working on this version; the newer version (or the
    delete) is handled by its own request.
    """

    @classmethod
    def deleted(cls, document: str) -> "DocumentGone":
        return cls(document, "deleted from the inbox while being processed")

    @classmethod
    def replaced(cls, document: str, version: str) -> "DocumentGone":
        return cls(document, f"replaced while being processed (version {version} is gone)")


def one_line(value: object, limit: int = 300) -> str:
    """``value`` as one line of at most ``limit`` characters, for a reason that names what went wrong."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
