"""Vocabulary of anatomy and findings: terms, hierarchy, synonyms and prompt resolution.

>>> from medground.ontology import Ontology
>>> ont = Ontology.default()
>>> ont.resolve("both kidneys").ids
['kidney_left', 'kidney_right']
>>> ont.resolve("Left Kidney").ids
['kidney_left']
"""
from medground.ontology.ontology import Ontology, Resolution, anatomy_extents
from medground.ontology.terms import MODALITIES, Term, canonical_modality
from medground.ontology.text import normalize, slug


def resolve(prompt: str) -> Resolution:
    """Shortcut for ``Ontology.default().resolve(prompt)``."""
    return Ontology.default().resolve(prompt)


__all__ = ["Ontology", "anatomy_extents", "Resolution", "Term", "MODALITIES", "canonical_modality", "normalize", "resolve", "slug"]
