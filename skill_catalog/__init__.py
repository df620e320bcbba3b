"""The skill catalog: atomic skills as data plus exact checkers, and a seeded composer of k-skill items."""
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.skill import Skill, get_skill, skill_sets, skills

__all__ = ["CatalogError", "Skill", "UserError", "get_skill", "skill_sets", "skills"]
