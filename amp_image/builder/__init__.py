"""Build: options -> plan (pure) -> host checks -> diskimage-builder run."""
