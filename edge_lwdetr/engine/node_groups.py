"""The linear layers of an LW-DETR graph in named groups, for per-group INT8 sensitivity and FP16 exclusion.

The dynamo export keeps no module names on its nodes, so groups are found from the graph's structure (on the
MSDA-inlined graph, engine/precision.py):

- the ViT: linears before the projector's first Conv, split at each linear fed by a LayerNorm; a segment with an
  activation x activation MatMul is a block's attention, the next one its MLP;
- the projector: every Conv but the first (the patch embedding);
- each MSDA call i: the linears nearest its value (value projection), its sampling locations (offsets) and its
  attention weights, and the first linear fed by its output (output projection);
- the heads: the linears nearest `logits` (class) and those before `pred_boxes` back to a LayerNorm (box);
- what remains after the projector, split like the ViT: the encoder proposal head before the first decoder
  attention MatMul, then per decoder layer its self-attention and its FFN.
"""

from __future__ import annotations

from collections import deque

import onnx

LINEAR = {"MatMul", "Gemm", "Conv"}


def linear_groups(model: onnx.ModelProto, calls: list) -> dict[str, list[str]]:
    """Group name -> names of its MatMul/Gemm/Conv nodes, in graph order; every linear node is in one group."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for tensor in n.input:
            consumers.setdefault(tensor, []).append(n)
    initializers = {i.name for i in model.graph.initializer}
    linears = [n for n in nodes if n.op_type in LINEAR]
    position = {n.name: i for i, n in enumerate(nodes)}
    by_name = {n.name: n for n in nodes}
    groups: dict[str, list[str]] = {}
    owner: dict[str, str] = {}

    def claim(group: str, names) -> None:
        for name in names:
            if name not in owner:
                owner[name] = group
                groups.setdefault(group, []).append(name)

    def is_attention_matmul(n: onnx.NodeProto) -> bool:
        return n.op_type == "MatMul" and not any(t in initializers for t in n.input)

    def nearest_linears(tensor: str, through_linears: bool = False) -> list[str]:
        """The linears upstream of `tensor` at the fewest hops (or, with through_linears, all back to LayerNorms)."""
        found, seen, queue = [], set(), deque([(tensor, 0)])
        best = None
        while queue:
            current, hops = queue.popleft()
            node = producer.get(current)
            if node is None or node.name in seen or node.op_type == "LayerNormalization":
                continue
            seen.add(node.name)
            if node.op_type in LINEAR:
                if best is None or hops == best or through_linears:
                    best = hops if best is None else best
                    found.append(node.name)
                if not through_linears:
                    continue
            queue.extend((t, hops + 1) for t in node.input if t and t not in initializers)
        return found

    convs = [n for n in linears if n.op_type == "Conv"]
    projector_start = position[convs[1].name] if len(convs) > 1 else len(nodes)
    claim("patch_embed", [convs[0].name] if convs else [])
    claim("projector", [n.name for n in convs[1:]])
    for index, call in enumerate(calls):
        claim(f"decoder{index}.msda_value", nearest_linears(call.inputs[0]))
        claim(f"decoder{index}.msda_offsets", nearest_linears(call.inputs[3])[:1])
        claim(f"decoder{index}.msda_weights", nearest_linears(call.inputs[4]))
        after = _first_linear_downstream(call.output, consumers, by_name)
        claim(f"decoder{index}.msda_output", [after] if after else [])
    last_msda = max((position[name] for name in owner), default=0)
    box = [n for n in nearest_linears("pred_boxes", through_linears=True) if position[n] > last_msda]
    claim("class_head", nearest_linears("logits"))
    claim("box_head", box)

    fed_by_norm = {n.name for n in linears if _fed_by_layernorm(n, producer, initializers)}
    encoder = [n for n in linears if position[n.name] < projector_start and n.name not in owner]
    _split_blocks(encoder, fed_by_norm, is_attention_matmul, "vit", claim)
    # A decoder's attention: the activation x activation MatMul of q and k, then the first MatMul after it (its
    # value side may be folded to a constant when the queries are learned embeddings).
    scores_matmuls = [n for n in linears if position[n.name] > projector_start and is_attention_matmul(n)
                      and n.name not in owner]  # fmt: skip
    decoder_attention = []
    for scores in scores_matmuls:
        if scores.name in owner:  # the attention x value MatMul of a layer already grouped
            continue
        mixed = _first_linear_downstream(scores.output[0], consumers, by_name)
        projections = [name for t in scores.input for name in nearest_linears(t)]
        if mixed:
            projections += [name for t in by_name[mixed].input for name in nearest_linears(t) if name != scores.name]
        out = _first_linear_downstream(by_name[mixed].output[0], consumers, by_name) if mixed else None
        group = f"decoder{len(decoder_attention)}.self_attention"
        claim(group, [*projections, scores.name, *(n for n in (mixed, out) if n)])
        decoder_attention.append(scores)
    # Before the first decoder attention: the two-stage proposal head; the MLP of the reference points' sine
    # embedding (the query position) belongs to the decoder.
    selected = _downstream([n for n in nodes if n.op_type == "Sin"], consumers)
    first = position[decoder_attention[0].name] if decoder_attention else len(nodes)
    rest = [n for n in linears if position[n.name] > projector_start and n.name not in owner]
    claim("encoder_proposals", [n.name for n in rest if position[n.name] < first and n.name not in selected])
    claim("decoder.query_position", [n.name for n in rest if position[n.name] < first and n.name in selected])
    msda_outputs = [
        position[owner_name]
        for owner_name in (groups.get(f"decoder{i}.msda_output", [None])[0] for i in range(len(calls)))
        if owner_name
    ]
    for node in rest:
        layer = sum(position[node.name] > at for at in msda_outputs) - 1
        claim(f"decoder{max(layer, 0)}.ffn", [node.name])
    return groups


def _split_blocks(linears, fed_by_norm, is_attention, prefix, claim, attention="attention", mlp="mlp") -> None:
    """Segments starting at each LayerNorm-fed linear: an attention segment opens block b, the next is its MLP."""
    block, segment = -1, []

    def close() -> None:
        if segment:
            kind = attention if any(is_attention(n) for n in segment) else mlp
            claim(f"{prefix}{max(block, 0)}.{kind}", [n.name for n in segment])

    for node in linears:
        if node.name in fed_by_norm and segment:
            close()
            segment = []
        if is_attention(node) and not any(is_attention(n) for n in segment):
            block += 1
        segment.append(node)
    close()


def _fed_by_layernorm(node: onnx.NodeProto, producer, initializers) -> bool:
    """Whether the node's activation input comes from a LayerNorm through shape/elementwise ops, not a linear."""
    stack, seen = [t for t in node.input if t not in initializers][:1], set()
    while stack:
        source = producer.get(stack.pop())
        if source is None or source.name in seen or source.op_type in LINEAR:
            continue
        if source.op_type == "LayerNormalization":
            return True
        seen.add(source.name)
        stack.extend(t for t in source.input if t and t not in initializers)
    return False


def _first_linear_downstream(tensor: str, consumers, by_name) -> str | None:
    """The nearest linear fed by `tensor` (breadth first)."""
    queue, seen = deque([tensor]), set()
    while queue:
        for node in consumers.get(queue.popleft(), []):
            if node.op_type in LINEAR:
                return node.name
            if node.name not in seen:
                seen.add(node.name)
                queue.extend(node.output)
    return None


def _downstream(roots: list[onnx.NodeProto], consumers) -> set[str]:
    """Names of the nodes fed, directly or not, by `roots` (which are included)."""
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(c for out in node.output for c in consumers.get(out, []))
    return seen
