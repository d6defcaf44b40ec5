"""Serving LW-DETR through Triton: the server side (`edge-lwdetr serve`, PyTriton, its own environment since
nvidia-pytriton pins numpy<2) and a client (gRPC through tritonclient, or HTTP with the standard library).

    from edge_lwdetr.serving import Client

    with Client("triton://127.0.0.1:8001/lwdetr") as client:   # gRPC; triton+http://127.0.0.1:8000/lwdetr: HTTP
        result = client.predict("image.jpg")[0]                 # the same Result as Detector.predict

`Detector("triton://...")` and `edge-lwdetr run --model triton://...` use the same client as a backend.
"""

from edge_lwdetr.serving.client import Client

__all__ = ["Client"]
