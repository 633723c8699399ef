"""Development tools that are not part of the runtime packages (run from the repository root)."""
