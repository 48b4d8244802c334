"""Field names of every index embedarena builds, in one module that imports nothing.

They follow langchain-elasticsearch's ElasticsearchStore (`text`, `vector`, `metadata`) so its
users can open our indexes directly. Kept apart from `build` and `analysis` so that both (and
`search`) read them without importing each other.
"""

from __future__ import annotations

TEXT_FIELD = "text"
VECTOR_FIELD = "vector"
META_FIELD = "metadata"
DOC_ID_FIELD = "doc_id"
#: Field holding the client-side segmented text (space-joined tokens, `whitespace` analyzer).
SEGMENTED_FIELD = "text_seg"

__all__ = ["DOC_ID_FIELD", "META_FIELD", "SEGMENTED_FIELD", "TEXT_FIELD", "VECTOR_FIELD"]
