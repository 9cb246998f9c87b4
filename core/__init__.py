"""manyheads core: attention ops (reference + Triton), modules built on them, and Lightning glue."""
