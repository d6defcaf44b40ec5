"""The names of edge-lwdetr's custom ONNX op, shared by the PyTorch model (which emits it) and the ONNX tools (which
rewrite it), without making either import the other's heavy dependencies (torch; onnx)."""

ONNX_DOMAIN = "edge_lwdetr"
ONNX_OP = "MultiScaleDeformableAttention"
