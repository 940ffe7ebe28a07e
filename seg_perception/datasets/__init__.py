"""Label sets and the synthetic street-scene generator."""
from .labels import LabelSet, get_label_set, list_label_sets

__all__ = ["LabelSet", "get_label_set", "list_label_sets"]
