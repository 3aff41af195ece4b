"""The harness: conformance machines, worlds and operations, the exhaustive sweep, replay."""
