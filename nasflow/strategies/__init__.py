"""Search strategies: propose architectures, keep pools; never evaluate or train themselves."""

from nasflow.strategies.evolution import (
    Candidate,
    EvolutionConfig,
    SearchResult,
    crossover,
    evolutionary_search,
    mutate,
    random_search,
    update_topk,
)

__all__ = [
    "Candidate", "EvolutionConfig", "SearchResult", "crossover", "evolutionary_search", "mutate", "random_search",
    "update_topk",
]
