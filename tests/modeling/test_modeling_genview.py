"""Tests of genview_hf.modeling.modeling_genview: the SSL wrapper's state (backbone, heads,
momentum encoder, queue), its forward passes and round trips, and the official heads. The losses are
the trainer's (tests/training/test_trainer*.py); here the model's embeddings and state."""

import pytest
import torch
from transformers import AutoModel

from genview_hf.methods import SSL_METHODS, get_method
from genview_hf.modeling import GenViewConfig, GenViewModel
from genview_hf.testing import tiny_resnet, tiny_vit
from genview_hf.training import QualityWeights
from tolerances import reduction_tolerance
from training_helpers import batch_loss, make_args, make_trainer

SSL = list(SSL_METHODS)  # every SSL row of the method table


HEADS = dict(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32, queue_size=32)


def batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        pixel_values_1=torch.randn(n, 3, size, size, generator=g),
        pixel_values_2=torch.randn(n, 3, size, size, generator=g),
        pixel_values_orig=torch.randn(n, 3, size, size, generator=g),
    )


def _tiny_backbone(kind):
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        ConvNextConfig,
        ConvNextModel,
        Dinov2Config,
        Dinov2Model,
    )

    if kind == "convnext":
        return ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
    if kind == "dinov2":
        config = Dinov2Config(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            mlp_ratio=2,
        )
        return Dinov2Model(config)
    return CLIPVisionModel(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
        )
    )


def _official_mocov3_mlp(num_layers, input_dim, mlp_dim, output_dim, last_bn=True):
    """moco-v3 moco/builder.py ``MoCo._build_mlp``, as written there."""
    from torch import nn

    mlp = []
    for layer in range(num_layers):
        dim1 = input_dim if layer == 0 else mlp_dim
        dim2 = output_dim if layer == num_layers - 1 else mlp_dim
        mlp.append(nn.Linear(dim1, dim2, bias=False))
        if layer < num_layers - 1:
            mlp.append(nn.BatchNorm1d(dim2))
            mlp.append(nn.ReLU(inplace=True))
        elif last_bn:
            mlp.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*mlp)


def _layout(module):
    """(type, in, out, bias) of each Linear and (type, features, affine) of each BatchNorm."""
    rows = []
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            rows.append(("Linear", layer.in_features, layer.out_features, layer.bias is not None))
        elif isinstance(layer, torch.nn.BatchNorm1d):
            rows.append(("BatchNorm1d", layer.num_features, layer.affine))
        else:
            rows.append((type(layer).__name__,))
    return rows


def test_unknown_method_and_pooling_are_named():
    with pytest.raises(ValueError, match="unknown method 'moco'"):
        GenViewConfig(method="moco")
    with pytest.raises(ValueError, match="unknown pooling"):
        GenViewConfig(pooling="max")


@pytest.mark.parametrize("method", ["simclr", "leoclr"])
def test_hallucinator_is_refused_where_the_loss_would_not_read_it(method):
    with pytest.raises(ValueError, match="use_hallucinator"):
        GenViewConfig(method=method, use_hallucinator=True)


def test_mocov2_runs_only_the_two_passes_its_asymmetric_loss_reads():
    backbone, _ = tiny_vit()
    # shuffle_bn off: with it the key pass runs in sub-batches (test_shuffle_bn.py)
    model = GenViewModel.from_backbone(backbone, method="mocov2", shuffle_bn=False, **HEADS)
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append("online"))
    model.momentum_backbone.register_forward_hook(lambda *args: calls.append("momentum"))
    output = model(**batch(), output_tokens=True)
    assert sorted(calls) == ["momentum", "online"]
    assert output.queries_2 is None and output.targets_1 is None  # asymmetric: q1 against k2
    assert output.tokens_1.shape == output.tokens_2.shape == (4, 16, 32)
    assert output.queue is model.queue


def test_each_method_returns_what_its_loss_reads():
    for method in SSL:
        model = GenViewModel.from_backbone(tiny_vit()[0], method=method, **HEADS).train()
        out = model(**batch())
        assert out.queries_1 is not None, method
        spec = get_method(method)
        if method == "leoclr":  # the query encoder sees the original only
            assert out.queries_2 is None and out.targets_1 is not None and out.targets_2 is not None
        elif method == "mocov2":  # one direction: the queue holds the other's negatives
            assert out.targets_2 is not None and not out.targets_2.requires_grad
        elif spec.momentum_encoder or spec.predictor:  # symmetric, against detached targets
            assert all(t is not None and not t.requires_grad for t in (out.targets_1, out.targets_2)), method
        else:  # two views through the one encoder (SimCLR)
            assert out.queries_2 is not None and out.targets_1 is None and out.targets_2 is None, method


def test_paper_head_defaults_and_no_predictor_where_the_method_has_none():
    assert (GenViewConfig(method="mocov3").proj_hidden_dim, GenViewConfig(method="mocov3").proj_dim) == (
        4096,
        256,
    )
    assert GenViewConfig(method="simsiam").pred_hidden_dim == 512
    assert GenViewConfig(method="mocov2", pred_hidden_dim=64).pred_hidden_dim == 0


def test_wrapping_keeps_the_backbone_weights_and_round_trips(tmp_path):
    backbone, _ = tiny_vit()
    reference = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = GenViewModel.from_backbone(backbone, method="mocov3", **HEADS)
    assert all(torch.equal(reference[k], v) for k, v in model.backbone.state_dict().items())
    # the momentum encoder starts equal to the online one
    for a, b in zip(model.backbone.parameters(), model.momentum_backbone.parameters()):
        assert torch.equal(a, b) and not b.requires_grad
    model.save_pretrained(tmp_path)
    loaded = GenViewModel.from_pretrained(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # ViT: CLS pooling, the unused tanh pooler is frozen (no trainable parameter without gradient)
    assert model.pooling == "cls" and not any(p.requires_grad for p in model.backbone.pooler.parameters())


def test_backbone_from_config_when_none_is_given():
    backbone, _ = tiny_resnet()
    model = GenViewModel(GenViewConfig(backbone_config=backbone.config.to_dict(), method="byol", **HEADS))
    assert type(model.backbone).__name__ == "ResNetModel"
    assert isinstance(AutoModel.from_config(model.config.backbone_config), type(model.backbone))


@pytest.mark.parametrize("method", SSL)
def test_all_ones_weights_equal_no_weights_and_other_weights_differ(method, tmp_path):
    trainer = make_trainer(make_args(tmp_path, method))
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    inputs = batch()

    def loss(weights):
        trainer.model.load_state_dict(state)  # the Hallucinator's lambda and the queue stay the same
        torch.manual_seed(0)
        if weights is None:
            return batch_loss(trainer, inputs, None)
        if method == "leoclr":  # one weight per (original, crop j) pair: the same for both crops here
            return batch_loss(trainer, inputs, QualityWeights(original_pairs=torch.stack([weights] * 2, 1)))
        return batch_loss(trainer, inputs, QualityWeights(pairs=weights))

    plain = loss(None)
    # weights of one reduce the per-pair losses as a weighted mean: 4 pairs x 16-d logits may sum in another order
    torch.testing.assert_close(
        plain, loss(torch.ones(4)), **reduction_tolerance(torch.float32, 4 * 16, plain.abs())
    )
    assert not torch.allclose(plain, loss(torch.tensor([3.0, 0.5, 0.25, 0.25])))


def test_tokens_are_detached_patch_tokens_of_each_view():
    model = GenViewModel.from_backbone(tiny_vit()[0], method="mocov3", **HEADS)
    output = model(**batch(), output_tokens=True)
    assert output.tokens_1.shape == (4, 16, 32) and not output.tokens_1.requires_grad
    assert model(**batch()).tokens_1 is None


def test_momentum_update_is_an_exponential_moving_average():
    backbone, _ = tiny_resnet()
    model = GenViewModel.from_backbone(backbone, method="byol", **HEADS)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    online = [p.clone() for p in model.backbone.parameters()]
    target = [p.clone() for p in model.momentum_backbone.parameters()]
    model.momentum_update(0.75)
    for o, t, new in zip(online, target, model.momentum_backbone.parameters()):
        torch.testing.assert_close(new, 0.75 * t + 0.25 * o)


def test_bad_batches_fail_before_the_loss():
    backbone, _ = tiny_vit()
    model = GenViewModel.from_backbone(backbone, method="leoclr", **HEADS)
    one = batch(n=1)
    with pytest.raises(ValueError, match="at least 2"):
        model(**one)
    inputs = batch()
    inputs.pop("pixel_values_orig")
    with pytest.raises(ValueError, match="pixel_values_orig"):
        model(**inputs)
    inputs = batch()
    inputs["pixel_values_2"] = inputs["pixel_values_2"][:3]
    with pytest.raises(ValueError, match="differ"):
        model(**inputs)


def test_queue_is_a_ring_buffer_of_keys():
    backbone, _ = tiny_vit()
    model = GenViewModel.from_backbone(backbone, method="mocov2", **dict(HEADS, queue_size=6))
    model.enqueue(torch.ones(4, 16))
    model.enqueue(2 * torch.ones(4, 16))
    unit = torch.full((16,), 0.25)  # keys are stored unit-normalised
    assert int(model.queue_ptr) == 2
    assert torch.allclose(model.queue[:4], unit.expand(4, 16))


@pytest.mark.parametrize("kind", ["convnext", "dinov2", "clip_vision"])
def test_other_backbone_families_train_in_stored_mode_and_round_trip(kind, tmp_path):
    model = GenViewModel.from_backbone(_tiny_backbone(kind), method="mocov3", **HEADS)
    trainer = make_trainer(make_args(tmp_path / "run", "mocov3", quality_mode="stored"), model=model)
    masks = torch.rand(4, 32, 32)
    inputs = dict(batch(), masks_1=masks, masks_2=masks.flip(-1))
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    assert torch.isfinite(loss)
    weights = trainer.quality_weights(inputs, trainer.model(**batch(), output_tokens=True)).pairs
    assert weights.shape == (4,) and torch.allclose(weights.mean(), torch.tensor(1.0))
    model.backbone.save_pretrained(tmp_path / "backbone")
    assert type(AutoModel.from_pretrained(tmp_path / "backbone")) is type(model.backbone)


def test_mocov3_heads_are_the_official_ones():
    model = GenViewModel.from_backbone(tiny_vit()[0], method="mocov3", **HEADS)  # ViT: MoCo_ViT
    assert _layout(model.projector) == _layout(_official_mocov3_mlp(3, 32, 32, 16))
    assert _layout(model.predictor) == _layout(_official_mocov3_mlp(2, 16, 32, 16))
    # its ResNet-50 recipe (MoCo_ResNet): 2-layer projector, predictor without the last BN
    r50 = GenViewModel.from_backbone(
        tiny_resnet()[0], method="mocov3", proj_layers=2, pred_last_bn=False, **HEADS
    )
    assert _layout(r50.projector) == _layout(_official_mocov3_mlp(2, 16, 32, 16))
    assert _layout(r50.predictor) == _layout(_official_mocov3_mlp(2, 16, 32, 16, last_bn=False))


def test_simsiam_predictor_output_layer_keeps_its_bias():
    # simsiam/builder.py: Linear(dim, pred_dim, bias=False), BN, ReLU, Linear(pred_dim, dim)
    model = GenViewModel.from_backbone(tiny_vit()[0], method="simsiam", **HEADS)
    assert _layout(model.predictor) == [
        ("Linear", 16, 32, False), ("BatchNorm1d", 32, True), ("ReLU",), ("Linear", 32, 16, True)
    ]  # fmt: skip


def test_mocov3_freezes_the_random_patch_projection_where_there_is_one():
    # moco-v3 vits.py: stop_grad_conv1 sets requires_grad False on patch_embed.proj
    model = GenViewModel.from_backbone(tiny_vit()[0], method="mocov3", **HEADS)
    projection = model.backbone.embeddings.patch_embeddings.projection
    assert not any(p.requires_grad for p in projection.parameters())
    others = [
        p for n, p in model.backbone.named_parameters() if "patch_embeddings" not in n and "pooler" not in n
    ]
    assert others and all(p.requires_grad for p in others)
    unfrozen = GenViewModel.from_backbone(
        tiny_vit()[0], method="mocov3", freeze_patch_projection=False, **HEADS
    )
    assert all(p.requires_grad for p in unfrozen.backbone.embeddings.patch_embeddings.parameters())
    mocov2 = GenViewModel.from_backbone(tiny_vit()[0], method="mocov2", **HEADS)
    assert all(p.requires_grad for p in mocov2.backbone.embeddings.patch_embeddings.parameters())
    # a ResNet has no patch projection: the default leaves it alone, asking for it is an error
    resnet = GenViewModel.from_backbone(tiny_resnet()[0], method="mocov3", **HEADS)
    assert all(p.requires_grad for p in resnet.backbone.parameters())
    with pytest.raises(ValueError, match="patch projection"):
        GenViewModel.from_backbone(tiny_resnet()[0], method="mocov3", freeze_patch_projection=True, **HEADS)
