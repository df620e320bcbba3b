"""The skill catalog: atomic skills as data plus exact checkers, and a seeded composer of k-skill items."""
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.skill import Skill, get_skill, skill_sets, skills

CATALOG_VERSION = "1"
"""Bumped by hand whenever a skill's behaviour, a template or the training-text generator changes."""
SET_CATALOG_VERSIONS = {"symbolic_v2": "2"}
"""Sets whose text is versioned apart from `CATALOG_VERSION` (v2: 16 skills, held-out pairs, 1..8 slots)."""


def catalog_version(skill_set: str) -> str:
    """The catalog version a family trained on `skill_set` records."""
    return SET_CATALOG_VERSIONS.get(skill_set, CATALOG_VERSION)


__all__ = ["CATALOG_VERSION", "catalog_version", "CatalogError", "Skill", "UserError", "get_skill", "skill_sets", "skills"]
