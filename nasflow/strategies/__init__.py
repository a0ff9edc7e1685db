"""Search strategies over any ``SearchSpace``, and the one runner that journals and evaluates for them."""

from nasflow.strategies.evolution import (
    Candidate,
    EvolutionConfig,
    SearchResult,
    evolutionary_search,
    random_search,
    update_topk,
)

__all__ = ["Candidate", "EvolutionConfig", "SearchResult", "evolutionary_search", "random_search", "update_topk"]
