"""Streaming inference: sources -> preprocess -> infer -> postprocess -> sinks, with the stages overlapped."""
