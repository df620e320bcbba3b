"""Staged validation of a candidate checkpoint against a baseline (`emergence gate`) and monitoring history."""
