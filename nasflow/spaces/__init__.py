"""Search spaces: declarations of what can be searched (not training loops, not strategies)."""
