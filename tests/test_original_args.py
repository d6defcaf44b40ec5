"""Original checkpoints trained with other arguments than the published ones: the architecture comes from `args`.

Each case builds transformers' LwDetrForObjectDetection with the configuration those arguments describe (the
reference), saves its weights in the original layout with the arguments, and loads the file. Arguments transformers
cannot express are checked against a transformers model changed the way the original code differs (the decoder
norm); arguments edge-lwdetr does not build must be refused in one line naming the argument and its value.
"""

import warnings

import pytest
import torch
from safetensors.torch import load_file

from hf_models import fails_with, save_hf_model, well_conditioned_images
from test_original_checkpoint import original_args, save_original, transformers_to_original

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.model.checkpoint import CheckpointWarning
from edge_lwdetr.model.loading import load_model
from edge_lwdetr.processing import normalize

TOLERANCE = 1e-4

# (original arguments, the transformers config they describe, input size); all start from the tiny script.
CASES = {
    "sa_nheads": (dict(sa_nheads=16), dict(decoder_self_attention_heads=16), 256),
    "ca_nheads+dec_n_points": (dict(ca_nheads=8, dec_n_points=4), dict(decoder_cross_attention_heads=8,
                                                                       decoder_n_points=4), 256),
    "window_block_indexes": (dict(window_block_indexes=[1, 3, 5]), dict(backbone=dict(window_block_indices=[1, 3, 5])),
                             256),
    "out_feature_indexes": (dict(out_feature_indexes=[2, -1]), dict(out_indices=[3, 6]), 256),
    "vit_encoder_num_layers": (dict(vit_encoder_num_layers=4, window_block_indexes=[0, 2], out_feature_indexes=[1, 3]),
                               dict(backbone=dict(num_hidden_layers=4, window_block_indices=[0, 2]),
                                    out_indices=[2, 4]), 256),
    "encoder": (dict(encoder="vit_small"), dict(backbone=dict(hidden_size=384)), 256),
    "hidden_dim+ffn+layers": (dict(hidden_dim=128, ca_nheads=8, dim_feedforward=512, dec_layers=2),
                              dict(d_model=128, decoder_cross_attention_heads=8, decoder_ffn_dim=512,
                                   decoder_layers=2), 256),
    "projector_scale": (dict(projector_scale=["P3", "P4", "P5"]), dict(projector_scale_factors=[2.0, 1.0, 0.5]), 320),
    "num_queries+num_select": (dict(num_queries=50, num_select=30), dict(num_queries=50), 256),
}  # fmt: skip


def transformers_state(hf_model, tmp_path):
    """The model's weights as the original code saves them (from transformers' on-disk names)."""
    hf_model.save_pretrained(tmp_path / "hf")
    return transformers_to_original(load_file(tmp_path / "hf" / "model.safetensors"))


def reference_and_loaded(tmp_path, args, hf_fields, size, patch=None):
    hf_model = save_hf_model("tiny", None, seed=3, **hf_fields)
    if patch:
        patch(hf_model)
    path = save_original(transformers_state(hf_model, tmp_path), tmp_path / "checkpoint.pth", args)
    loaded = load_model(path)
    images = torch.from_numpy(normalize(well_conditioned_images(loaded.model, 1, size, seed=1)))
    with torch.no_grad():
        reference = hf_model(pixel_values=images)
        logits, boxes = loaded.model(images)
    assert logits.shape == reference.logits.shape
    return loaded, (logits - reference.logits).abs().max().item(), (boxes - reference.pred_boxes).abs().max().item()


@pytest.mark.parametrize("case", list(CASES))
def test_architecture_from_training_arguments(case, tmp_path):
    overrides, hf_fields, size = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # the arguments are read: nothing is guessed
        loaded, logits, boxes = reference_and_loaded(tmp_path, original_args("tiny", **overrides), hf_fields, size)
    assert logits <= TOLERANCE and boxes <= TOLERANCE
    assert loaded.num_select == overrides.get("num_select", 100)
    assert loaded.config.border_proposals == "rank"


def test_decoder_norm_identity(tmp_path):
    def drop_norm(hf_model):
        hf_model.model.decoder.layernorm = torch.nn.Identity()  # `--decoder_norm Identity`

    args = original_args("tiny", decoder_norm="Identity")
    loaded, logits, boxes = reference_and_loaded(tmp_path, args, {}, 256, drop_norm)
    assert isinstance(loaded.model.decoder.norm, torch.nn.Identity)
    assert logits <= TOLERANCE and boxes <= TOLERANCE


def test_shapes_alone_are_a_guess(tmp_path):
    """Without `args`, `--sa_nheads 16` cannot be seen in the shapes: the loader says it guessed."""
    hf_model = save_hf_model("tiny", None, seed=3, decoder_self_attention_heads=16)
    path = save_original(transformers_state(hf_model, tmp_path), tmp_path / "bare.pth")
    with pytest.warns(CheckpointWarning, match="guessed from tensor shapes as LW-DETR-tiny"):
        loaded = load_model(path)
    assert loaded.config.sa_heads == 8 and loaded.num_select is None


REFUSED = [
    (dict(encoder="res18vd"), "--encoder res18vd"),
    (dict(projector_scale=["P4", "P6"]), "--projector_scale P4 P6"),
    (dict(projector_scale=["P5", "P3"]), "--projector_scale P5 P3"),
    (dict(projector_scale="P4"), "--projector_scale P4"),
    (dict(out_feature_indexes=[1, 3]), "--out_feature_indexes 1 3"),
    (dict(window_block_indexes=None), "--window_block_indexes None"),
    (dict(decoder_norm="BN"), "--decoder_norm BN"),
    (dict(sa_nheads=7), "--sa_nheads 7"),
    (dict(ca_nheads=12), "--ca_nheads 12"),
    (dict(num_select=100 * 91 + 1), "--num_select 9101"),
]


@pytest.mark.parametrize("overrides, fragment", REFUSED, ids=[f for _, f in REFUSED])
def test_unbuilt_arguments_are_refused(overrides, fragment, tmp_path):
    state = {"backbone.0.encoder.pos_embed": torch.zeros(1, 197, 192), "class_embed.weight": torch.zeros(91, 256)}
    path = save_original(state, tmp_path / "custom.pth", original_args("tiny", **overrides))
    with pytest.raises(EdgeLwdetrError) as error:
        load_model(path)
    message = str(error.value)
    assert "\n" not in message and fragment + ":" in message and "custom.pth" in message


def test_refusal_is_one_cli_line(tmp_path, capsys):
    state = {"backbone.0.encoder.pos_embed": torch.zeros(1, 197, 192), "class_embed.weight": torch.zeros(91, 256)}
    path = save_original(state, tmp_path / "r.pth", original_args("tiny", encoder="res50vd"))
    import cv2
    import numpy as np

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    fails_with(capsys, ["predict", "--weights", str(path), "--source", str(image)], "--encoder res50vd", "ViT")


def test_border_proposals_follow_the_checkpoint_source(tmp_path):
    """Proposals outside (0.01, 0.99) exist at P3 from 448 px (56 cells a side). The original code zeroes their
    features and boxes but still ranks them; transformers never selects them. Here they score high, so the original
    selects them: an original-layout file must follow the original, a transformers folder transformers."""
    import onnx

    from edge_lwdetr.export.onnx_export import add_metadata
    from edge_lwdetr.export.options import ExportOptions

    hf_model = save_hf_model("tiny", None, seed=3, projector_scale_factors=[2.0])
    with torch.no_grad():  # a zeroed token's encoder feature is LayerNorm(bias): make it score high for class 1
        hf_model.model.enc_output[0].bias.copy_(hf_model.model.enc_out_class_embed[0].weight[1])
    original = save_original(transformers_state(hf_model, tmp_path), tmp_path / "o.pth",
                             original_args("tiny", projector_scale=["P3"]))  # fmt: skip
    images = torch.from_numpy(normalize(torch.rand(1, 3, 448, 448, generator=torch.Generator().manual_seed(0)).numpy()))
    with torch.no_grad():
        excluded = hf_model(pixel_values=images)
        generate = hf_model.model.gen_encoder_output_proposals

        def ranked(*args, **kwargs):  # the original's selection: nothing is masked out of the top-k
            query, proposals, invalid = generate(*args, **kwargs)
            ranked.border = int(invalid.sum())
            return query, proposals, torch.zeros_like(invalid)

        hf_model.model.gen_encoder_output_proposals = ranked
        ranks = hf_model(pixel_values=images)
        assert ranked.border == 4 * 56 - 4  # the outer ring of the 56 x 56 grid
        assert (ranks.logits - excluded.logits).abs().max() > 0.1  # border proposals were selected

        for weights, reference, semantics in ((original, ranks, "rank"), (tmp_path / "hf", excluded, "exclude")):
            loaded = load_model(weights)
            assert loaded.config.border_proposals == semantics
            logits, boxes = loaded.model(images)
            assert (logits - reference.logits).abs().max().item() <= TOLERANCE
            assert (boxes - reference.pred_boxes).abs().max().item() <= TOLERANCE
            graph = onnx.ModelProto()
            add_metadata(graph, loaded, weights, ExportOptions(imgsz=448))
            assert {p.key: p.value for p in graph.metadata_props}["edge_lwdetr.border_proposals"] == semantics


def test_training_checkpoint_ema(tmp_path, capsys):
    """A `checkpoint.pth` holds `model` and `ema_model`: `model` by default (said in a warning), `ema_model` with
    --ema (said too); --ema on a file without EMA weights is refused."""
    current = save_hf_model("tiny", None, seed=3)
    averaged = save_hf_model("tiny", None, seed=4)
    path = save_original(transformers_state(current, tmp_path / "a"), tmp_path / "checkpoint.pth", original_args(),
                         ema_model=transformers_state(averaged, tmp_path / "b"), optimizer={}, epoch=3)  # fmt: skip
    images = torch.from_numpy(normalize(torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)).numpy()))
    with pytest.warns(CheckpointWarning, match="loaded 'model'.*pass --ema"):
        plain = load_model(path)
    with pytest.warns(CheckpointWarning, match="loaded the EMA weights"):
        ema = load_model(path, ema=True)
    assert (plain.weights_key, ema.weights_key) == ("model", "ema_model")
    with torch.no_grad():
        for loaded, reference in ((plain, current), (ema, averaged)):
            assert (loaded.model(images)[0] - reference(pixel_values=images).logits).abs().max() <= TOLERANCE

    bare = save_original(transformers_state(current, tmp_path / "c"), tmp_path / "release.pth", original_args())
    with pytest.raises(EdgeLwdetrError, match="release.pth holds no 'ema_model'.*drop --ema"):
        load_model(bare, ema=True)


def original_forward(hf_model, images, two_stage=True, bbox_reparam=True, lite_refpoint_refine=True):
    """The original code's inference (models/transformer.py Transformer.forward and TransformerDecoder, models/
    lwdetr.py LWDETR.forward) restated on transformers' modules, with its three switches:
    - two_stage: reference boxes from the top-scoring memory tokens (else the learned table alone);
    - bbox_reparam: boxes as centre + delta * size, size * exp(delta); else proposals are logits (inverse sigmoid,
      +inf at the border), deltas add in logit space and boxes are sigmoid(reference + delta);
    - lite_refpoint_refine: the reference is computed once; else the box head refines it after every layer and
      the outputs use the reference the last layer read.
    """
    model, decoder = hf_model.model, hf_model.model.decoder
    pixel_mask = torch.ones(images.shape[0], *images.shape[2:], dtype=torch.long)
    features = model.backbone(images, pixel_mask)
    sources = [source for source, _ in features]
    mask = torch.cat([m.flatten(1) for _, m in features], 1)
    shapes = [tuple(source.shape[2:]) for source in sources]
    memory = torch.cat([source.flatten(2).transpose(1, 2) for source in sources], 1)
    queries = model.num_queries
    learned = model.reference_point_embed.weight[:queries][None].expand(images.shape[0], -1, -1)
    tgt = model.query_feat.weight[:queries][None].expand(images.shape[0], -1, -1)

    def refine(reference, delta):
        if not bbox_reparam:
            return reference + delta
        return torch.cat([delta[..., :2] * reference[..., 2:] + reference[..., :2],
                          delta[..., 2:].exp() * reference[..., 2:]], -1)  # fmt: skip

    if two_stage:
        proposals = []
        for level, (height, width) in enumerate(shapes):
            y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
            size = torch.full_like(x, 0.05 * 2.0**level)
            proposals.append(torch.stack([x / width, y / height, size, size], -1).reshape(-1, 4))
        proposals = torch.cat(proposals)[None]
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
        if bbox_reparam:
            proposals = proposals.masked_fill(~valid, 0.0)
        else:
            proposals = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float("inf"))
        query = model.enc_output_norm[0](model.enc_output[0](memory.masked_fill(~valid, 0.0)))
        coords = refine(proposals, model.enc_out_bbox_embed[0](query))
        top = model.enc_out_class_embed[0](query).max(-1)[0].topk(queries, dim=1)[1]
        reference = refine(torch.gather(coords, 1, top[..., None].repeat(1, 1, 4)), learned)
    else:
        reference = learned
    spatial_shapes = torch.tensor(shapes)
    level_start = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    ratios = torch.ones(images.shape[0], len(shapes), 2)
    for index, layer in enumerate(decoder.layers):
        if index == 0 or not lite_refpoint_refine:
            inputs, query_pos = decoder.get_reference(reference if bbox_reparam else reference.sigmoid(), ratios)
        tgt = layer(tgt, position_embeddings=query_pos, reference_points=inputs, spatial_shapes=spatial_shapes,
                    spatial_shapes_list=shapes, level_start_index=level_start, encoder_hidden_states=memory,
                    encoder_attention_mask=mask)  # fmt: skip
        if not lite_refpoint_refine and index < len(decoder.layers) - 1:
            reference = refine(reference, hf_model.bbox_embed(tgt))
    hidden = decoder.layernorm(tgt)
    boxes = refine(reference, hf_model.bbox_embed(hidden))
    return hf_model.class_embed(hidden), boxes if bbox_reparam else boxes.sigmoid()


SWITCHES = [
    dict(),  # the published setting: the restatement must reproduce transformers itself
    dict(bbox_reparam=False),
    dict(lite_refpoint_refine=False),
    dict(bbox_reparam=False, lite_refpoint_refine=False),
    dict(two_stage=False),
    dict(two_stage=False, bbox_reparam=False),
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: "+".join(f"no_{k}" for k in s) or "published")
def test_original_switches(switches, tmp_path):
    hf_model = save_hf_model("tiny", None, seed=3)
    state = transformers_state(hf_model, tmp_path)
    if not switches.get("two_stage", True):  # the original builds no encoder heads then
        state = {k: v for k, v in state.items() if not k.startswith("transformer.enc_")}
    if not switches.get("lite_refpoint_refine", True):  # the decoder holds the box head too, saved twice
        state.update({f"transformer.decoder.{k}": v for k, v in state.items() if k.startswith("bbox_embed.")})
    path = save_original(state, tmp_path / "switches.pth", original_args("tiny", **switches))
    loaded = load_model(path)
    if switches.get("two_stage", True):
        images = torch.from_numpy(normalize(well_conditioned_images(loaded.model, 1, 256, seed=1)))
    else:  # no top-k, so no near-ties to avoid
        images = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, boxes = original_forward(hf_model, images, **switches)
        if not switches:
            reference = hf_model(pixel_values=images)
            assert (logits - reference.logits).abs().max() <= 1e-5
            assert (boxes - reference.pred_boxes).abs().max() <= 1e-5
        ours = loaded.model(images)
    assert (ours[0] - logits).abs().max().item() <= TOLERANCE
    assert (ours[1] - boxes).abs().max().item() <= TOLERANCE


def test_cli_ema(tmp_path, capsys):
    import cv2
    import numpy as np

    from edge_lwdetr.cli import main

    hf_model = save_hf_model("tiny", None, seed=3)
    state = transformers_state(hf_model, tmp_path)
    path = save_original(state, tmp_path / "checkpoint.pth", original_args(), ema_model=state)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    capsys.readouterr()
    assert main(["predict", "--weights", str(path), "--source", str(image), "--imgsz", "256", "--ema"]) == 0
    assert "loaded the EMA weights ('ema_model')" in capsys.readouterr().err
    assert main(["predict", "--weights", str(path), "--source", str(image), "--imgsz", "256"]) == 0
    assert "pass --ema" in capsys.readouterr().err
