"""The `dataswarm` command line: one entry point over the node, coordinator and tools."""
