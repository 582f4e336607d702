"""The model catalog (``models.toml``) and the one validator every entry point uses."""

from imagegate.catalog.model import Model, NumberRange, Option, ReferenceRule
from imagegate.catalog.registry import Catalog, load_catalog
from imagegate.catalog.validate import build_request, effective, validate, warnings_for

__all__ = [
    "Catalog",
    "Model",
    "NumberRange",
    "Option",
    "ReferenceRule",
    "build_request",
    "effective",
    "load_catalog",
    "validate",
    "warnings_for",
]
