"""agents.search.problem."""
