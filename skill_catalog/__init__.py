"""The skill catalog: atomic skills as data plus exact checkers, and a seeded composer of k-skill items."""
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.skill import Skill, get_skill, skill_sets, skills

CATALOG_VERSION = "1"
"""Bumped by hand whenever a skill's behaviour, a template or the training-text generator changes."""

__all__ = ["CATALOG_VERSION", "CatalogError", "Skill", "UserError", "get_skill", "skill_sets", "skills"]
