import pytest
import torch

from kdfair_utils.models import MODELS, build_model, count_parameters


def test_lenet5_parameter_count_by_hand():
    conv1, conv2 = 3 * 6 * 25 + 6, 6 * 16 * 25 + 16
    fc1, fc2, fc3 = 16 * 5 * 5 * 120 + 120, 120 * 84 + 84, 84 * 10 + 10
    assert count_parameters(build_model("lenet5", 10)) == conv1 + conv2 + fc1 + fc2 + fc3


@pytest.mark.parametrize("name,low,high", [("resnet20", 0.26e6, 0.28e6), ("resnet56", 0.84e6, 0.87e6),
                                           ("resnet18", 11.0e6, 11.3e6)])
def test_parameter_counts_match_the_paper(name, low, high):
    assert low < count_parameters(build_model(name, 10)) < high


def test_resnet20_count_by_hand():
    """Conv 3x3 + BN per layer, 1x1 projection shortcuts at the two stage changes, fc."""
    conv = lambda i, o, k=3: i * o * k * k  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(3, 16) + bn(16)
    for planes, in_planes in ((16, 16), (32, 16), (64, 32)):
        for block in range(3):
            first_in = in_planes if block == 0 else planes
            total += conv(first_in, planes) + bn(planes) + conv(planes, planes) + bn(planes)
            if block == 0 and first_in != planes:
                total += conv(first_in, planes, 1) + bn(planes)
    total += 64 * 10 + 10
    assert count_parameters(build_model("resnet20", 10)) == total


@pytest.mark.parametrize("name", MODELS)
def test_every_model_runs_on_small_images(name):
    if name in ("resnet110", "densenet169", "resnet50"):
        pytest.skip("large; same code path as a smaller sibling")
    model = build_model(name, 7, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_lenet5_other_image_size():
    assert build_model("lenet5", 4, image_size=24)(torch.zeros(1, 3, 24, 24)).shape == (1, 4)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="resnet20"):
        build_model("vgg11", 10)
    with pytest.raises(ValueError, match="image_size 12 is too small for lenet5"):
        build_model("lenet5", 10, image_size=12)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", 1)


def test_lenet5_pools_before_relu_with_identical_values_and_gradients():
    """LeNet-5 runs ReLU after max-pooling (cheaper); the textbook order gives the same floats."""
    import torch
    from torch.nn import functional as F

    from kdfair_utils.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet5", 10, image_size=32)
    x = torch.randn(16, 3, 32, 32)

    def textbook(m, x):
        x = F.max_pool2d(F.relu(m.conv1(x)), 2)
        x = F.max_pool2d(F.relu(m.conv2(x)), 2)
        x = F.relu(m.fc2(F.relu(m.fc1(torch.flatten(x, 1)))))
        return m.fc3(x)

    grads = []
    for forward in (model, lambda x: textbook(model, x)):
        model.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach().clone(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
