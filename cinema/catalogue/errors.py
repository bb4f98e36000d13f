"""Catalogue errors in business terms."""

from __future__ import annotations

from cinema.errors import DomainError


class CatalogueError(DomainError):
    code = "catalogue_error"


class NotFound(CatalogueError):
    code = "not_found"


class InvalidLayout(CatalogueError):
    code = "invalid_layout"


class InvalidScreening(CatalogueError):
    code = "invalid_screening"
