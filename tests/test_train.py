import numpy as np
import pytest
import torch

from kdfair_utils.distill import KDLoss
from kdfair_utils.models import build_model
from kdfair_utils.train import TrainConfig, predict_logits, seed_everything, train_model, with_normalization


def data(n=96, size=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, classes, n)


def fresh(x, seed=0, name="lenet5"):
    seed_everything(seed)
    return with_normalization(build_model(name, 4, image_size=16), x)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_is_deterministic_per_seed():
    x, y = data()
    cfg = TrainConfig(epochs=2, batch_size=32, augment="flip_translate")
    a, b, c = fresh(x), fresh(x), fresh(x)
    for m, seed in ((a, 0), (b, 0), (c, 1)):
        train_model(m, x, y, cfg, seed=seed, progress=False)
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(c))


def test_online_teacher_equals_precomputed_teacher_logits():
    """Without augmentation the two distillation paths see identical targets."""
    x, y = data()
    teacher = fresh(x, name="resnet8")
    train_model(teacher, x, y, TrainConfig(epochs=1, batch_size=32), seed=0, progress=False)
    cfg = TrainConfig(epochs=2, batch_size=32, grad_clip=5.0)
    online, offline = fresh(x), fresh(x)
    train_model(online, x, y, cfg, seed=3, teacher=teacher, kd=KDLoss(4.0), progress=False)
    train_model(offline, x, y, cfg, seed=3, teacher_logits=predict_logits(teacher, x), kd=KDLoss(4.0),
                progress=False)
    assert torch.allclose(weights(online), weights(offline), atol=1e-5)


def test_online_teacher_with_augmentation_runs_and_teacher_is_untouched():
    x, y = data()
    teacher = fresh(x, name="resnet8")
    before = weights(teacher).clone()
    student = fresh(x)
    hist = train_model(student, x, y, TrainConfig(epochs=1, batch_size=32, augment="flip_translate"), seed=0,
                       teacher=teacher, kd=KDLoss(2.0, alpha=0.8), progress=False)
    assert torch.equal(weights(teacher), before) and not teacher.training
    assert len(hist["loss"]) == 1 and np.isfinite(hist["loss"][0])


def test_bad_training_arguments():
    x, y = data()
    m = fresh(x)
    with pytest.raises(ValueError, match="un-augmented"):
        train_model(m, x, y, TrainConfig(augment="flip"), seed=0, teacher_logits=np.zeros((96, 4)), kd=KDLoss(2.0),
                    progress=False)
    with pytest.raises(ValueError, match="either teacher or teacher_logits"):
        train_model(m, x, y, TrainConfig(), seed=0, teacher=m, teacher_logits=np.zeros((96, 4)), progress=False)
    with pytest.raises(ValueError, match="needs kd=KDLoss"):
        train_model(m, x, y, TrainConfig(), seed=0, teacher_logits=np.zeros((96, 4)), progress=False)
    with pytest.raises(ValueError, match="no teacher"):
        train_model(m, x, y, TrainConfig(), seed=0, kd=KDLoss(2.0), progress=False)
    with pytest.raises(ValueError, match="differ in length"):
        train_model(m, x, y[:10], TrainConfig(), seed=0, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs").validate()
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0.0).validate()


def test_a_diverging_run_stops_instead_of_caching_nan_weights():
    x, y = data()
    with pytest.raises(RuntimeError, match=r"train: training diverged \(mean loss nan in epoch \d\)"):
        train_model(fresh(x), x, y, TrainConfig(epochs=2, lr=1e12), seed=0, progress=False)


def test_labels_beyond_the_models_classes_are_refused_at_the_first_step():
    x, y = data()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\), got values in \[3, 6\]"):
        train_model(fresh(x), x, y + 3, TrainConfig(epochs=1), seed=0, progress=False)
