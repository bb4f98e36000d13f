"""Catalogue errors in business terms."""

from __future__ import annotations


class CatalogueError(Exception):
    code = "catalogue_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CatalogueError):
    code = "not_found"


class InvalidLayout(CatalogueError):
    code = "invalid_layout"


class InvalidScreening(CatalogueError):
    code = "invalid_screening"
