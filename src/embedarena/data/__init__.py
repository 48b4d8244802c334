"""Readers and writers for every input format, with errors that name file and line/row."""

from embedarena.data.types import Corpus, Query, QuerySet

__all__ = ["Corpus", "Query", "QuerySet"]
