"""Serving LW-DETR through Triton: the server side (`edge-lwdetr serve`, PyTriton, its own environment since
nvidia-pytriton pins numpy<2) and a client that needs nothing beyond the base install (KServe v2 over HTTP).

    from edge_lwdetr.serving import Client

    with Client("triton://127.0.0.1:8000/lwdetr") as client:
        result = client.predict("image.jpg")[0]     # the same Result as Detector.predict
"""

from edge_lwdetr.serving.client import Client

__all__ = ["Client"]
